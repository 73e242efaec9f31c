// Hopper's tensor memory accelerator (TMA) and transaction barriers as the MLA decode and flash prefill kernels
// would use them (issues 18 and 19 ask for loads by TMA into an mbarrier-fenced ring): a 2D tiled copy of a box of
// a row-major bf16 matrix (a tensor map made on the host by kernels/cuda/tma_map.h) into shared memory with the
// 128-byte swizzle, which is exactly wgmma_sm90.cuh's slab layout, so a landed box is a wgmma operand as it stands;
// and the mbarrier that counts the bytes in: one thread arms it with the bytes it expects, the copies complete
// transactions on it, and every consumer waits on its phase. Copies and wgmma both work in the async proxy, so no
// proxy fence stands between a landed box and the MMA that reads it. Checked on a GPU by the wgmma probe
// (WgmmaProbe.ScoresFromPagedKeysByTma), before any kernel relies on it.
#pragma once

#include <cuda.h>

#include <cstdint>

#include "kernels/cuda/wgmma_sm90.cuh"

namespace mlarun::ops::cuda::tma_sm90 {

#if defined(__CUDACC__)
// TMA and these mbarrier forms exist on sm_90 and later; elsewhere they compile to a trap (nothing calls them).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define MLARUN_TMA_ASM(...) asm volatile(__VA_ARGS__)
#else
#define MLARUN_TMA_ASM(...) __trap()
#endif

// One thread initialises the barrier at shared-memory address `bar` (8-byte aligned) for `count` arrivals per
// phase, then makes the initialisation visible to the async proxy; a __syncthreads follows before anyone uses it.
__device__ __forceinline__ void mbarrier_init(uint32_t bar, uint32_t count) {
  MLARUN_TMA_ASM("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
  MLARUN_TMA_ASM("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  MLARUN_TMA_ASM("fence.proxy.async.shared::cta;\n" ::: "memory");
}
// One arrival that also announces `bytes` more of transactions this phase waits for (the copies' sizes).
__device__ __forceinline__ void mbarrier_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
  MLARUN_TMA_ASM("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
// One arrival, with release semantics: this thread's earlier writes to shared memory (stores, and cp.async copies
// it has waited for) are visible to whoever sees the phase complete.
__device__ __forceinline__ void mbarrier_arrive(uint32_t bar) {
  MLARUN_TMA_ASM("mbarrier.arrive.release.cta.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
// One arrival that the hardware makes for this thread once all of its earlier cp.async copies have landed (at once
// if none is pending); the thread goes on without waiting. `noinc`: it counts as one of the phase's `count`
// arrivals. This is how a cp.async loader hands a stage to wgmma readers without waiting for its own copies.
__device__ __forceinline__ void mbarrier_arrive_on_copies(uint32_t bar) {
  MLARUN_TMA_ASM("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
}
// Until the phase with parity `phase` (0 for the first) has completed: its arrivals made and its bytes landed.
__device__ __forceinline__ void mbarrier_wait(uint32_t bar, uint32_t phase) {
  MLARUN_TMA_ASM(
      "{\n"
      ".reg .pred done;\n"
      "wait_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra wait_%=;\n"
      "}\n" ::"r"(bar),
      "r"(phase)
      : "memory");
}
// mbarrier_wait that gives up after `tries` polls (each polls for a while in hardware) and traps, so a barrier
// that never completes (wrong byte count, a copy that never lands) fails the launch instead of hanging it: what a
// probe wants.
__device__ __forceinline__ void mbarrier_wait_or_trap(uint32_t bar, uint32_t phase, uint32_t tries) {
  uint32_t done = 0;
  for (uint32_t i = 0; i < tries && !done; ++i)
    MLARUN_TMA_ASM(
        "{\n"
        ".reg .pred p;\n"
        "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        "selp.u32 %0, 1, 0, p;\n"
        "}\n"
        : "=r"(done)
        : "r"(bar), "r"(phase)
        : "memory");
  if (!done) __trap();
}
// Polls before mbarrier_wait_bounded gives up. Each poll waits in hardware for a while, so this is seconds: far
// beyond any legitimate wait of the warp-specialized kernels (one tile's or piece's work), short of a hung test run.
constexpr uint32_t kStuckPolls = 1u << 22;
// The warp-specialized kernels' wait: a protocol that never completes a phase traps instead of hanging the launch.
__device__ __forceinline__ void mbarrier_wait_bounded(uint32_t bar, uint32_t phase) {
  mbarrier_wait_or_trap(bar, phase, kStuckPolls);
}
// mbarrier_wait_bounded on a barrier that cp.async copies arrive on (mbarrier_arrive_on_copies), then a proxy fence
// so that the tensor cores (the async proxy) read what landed.
__device__ __forceinline__ void mbarrier_wait_copies_landed(uint32_t bar, uint32_t phase) {
  mbarrier_wait_bounded(bar, phase);
  MLARUN_TMA_ASM("fence.proxy.async.shared::cta;\n" ::: "memory");
}
// The box at element (col, row) of the tensor map `map` (a __grid_constant__ kernel parameter or other global
// memory) into shared memory at `dst` (1024-byte aligned for the 128-byte swizzle), completing its bytes on `bar`.
__device__ __forceinline__ void tma_load_2d(uint32_t dst, const CUtensorMap* map, uint32_t bar, int col, int row) {
  MLARUN_TMA_ASM(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::
          "r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(col), "r"(row), "r"(bar)
      : "memory");
}
#endif  // __CUDACC__

}  // namespace mlarun::ops::cuda::tma_sm90
