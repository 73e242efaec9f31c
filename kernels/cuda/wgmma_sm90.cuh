// Hopper's warpgroup MMA (wgmma, sm_90a) as the kernels that move to it use it: the 128-byte swizzle and the
// shared-memory matrix descriptors of the layouts below, the fences around the asynchronous MMA, and the
// instructions themselves (wgmma_sm90_mma.cuh: m64nNk16, bf16 in, fp32 accumulators, A from shared memory or
// from registers). The layout arithmetic is plain constexpr code, checked on the CPU by
// tests/kernels/test_wgmma_layout.cpp; the instructions are checked on a GPU by the wgmma probe
// (kernels/cuda/wgmma_probe.cu, tests/kernels/test_gpu_wgmma_probe.cpp) before any kernel relies on them.
//
// The one layout used, a "slab": a [rows x 64] bf16 matrix, 128 bytes per row, 1024-byte aligned, with the
// 128-byte swizzle: inside every 8-row, 1024-byte atom the 16-byte chunk c of row r is stored at chunk c ^ (r % 8)
// (the hardware applies the same XOR to address bits 4-6 from bits 7-9 when it reads). A wider matrix is a
// sequence of slabs of 64 columns each. The same slabs serve both operand orders:
//   K-major   (the 64 columns are K; rows are M or N, for example q rows or cached tokens in Q . K^T): one
//             descriptor per 16-column k-step, start = slab + 32 k bytes, stride between 8-row groups (SBO) 1024,
//             leading offset unused (1);
//   N-major   (the 64 columns are N, rows are K, for example cached tokens as V in P . V): start = slab + 128 k0
//             bytes for the k-step at row k0, SBO 1024 (the next 8 rows), LBO = the distance between consecutive
//             slabs (the next 64 columns of N).
// These are wgmma's canonical 128-byte-swizzled layouts, K-major and MN-major.
#pragma once

#include <cstdint>

#include "kernels/host_device.h"

namespace mlarun::ops::cuda::wgmma_sm90 {

constexpr uint32_t kSlabCols = 64;       // bf16 columns per slab row: 128 bytes, the swizzle's width
constexpr uint32_t kSlabRowBytes = 128;
constexpr uint32_t kAtomBytes = 1024;    // 8 rows: the swizzle's period and the slab alignment

// Shared-memory byte address (absolute, or relative to a 1024-byte aligned base) after the 128-byte swizzle.
MLARUN_HOST_DEVICE constexpr uint32_t swizzle128(uint32_t addr) { return addr ^ ((addr >> 3) & 0x70u); }
// Unswizzled byte offset of element (row, col) in a slab, col < 64.
MLARUN_HOST_DEVICE constexpr uint32_t slab_offset(uint32_t row, uint32_t col) { return row * kSlabRowBytes + col * 2; }

// Descriptor of a 128-byte-swizzled operand at shared-memory address `addr` (bits: start >> 4 in 0-13, leading
// byte offset >> 4 in 16-29, stride byte offset >> 4 in 32-45, base offset 0 in 49-51, swizzle mode 1 in 62-63).
MLARUN_HOST_DEVICE constexpr uint64_t sw128_desc(uint32_t addr, uint32_t lbo_bytes, uint32_t sbo_bytes) {
  return uint64_t((addr & 0x3FFFFu) >> 4) | (uint64_t((lbo_bytes >> 4) & 0x3FFFu) << 16) |
         (uint64_t((sbo_bytes >> 4) & 0x3FFFu) << 32) | (uint64_t(1) << 62);
}
// The descriptor of the operand `bytes` (a multiple of 16) further on in shared memory: only the start field (bits
// 0-13, the address >> 4) moves, and while both addresses stay under 256 KB (all of shared memory) it cannot carry
// out of the field, so the low word alone is added to. A kernel makes one descriptor per operand outside its
// k-loops and steps it by compile-time offsets: one add per MMA instead of the mask, shift and OR of sw128_desc.
MLARUN_HOST_DEVICE constexpr uint64_t desc_advance(uint64_t desc, uint32_t bytes) {
  return (desc & ~uint64_t(0xFFFFFFFFu)) | uint32_t(uint32_t(desc) + (bytes >> 4));
}
// K-major k-step `k16` (columns 16 k16 .. + 16) of the slab at `slab` (1024-byte aligned).
MLARUN_HOST_DEVICE constexpr uint64_t k_major_desc(uint32_t slab, uint32_t k16) {
  return sw128_desc(slab + 32 * k16, 16, kAtomBytes);
}
// N-major k-step at slab row `k0` (a multiple of 8) of the slabs starting at `slab`, `slab_stride` bytes apart.
MLARUN_HOST_DEVICE constexpr uint64_t n_major_desc(uint32_t slab, uint32_t k0, uint32_t slab_stride) {
  return sw128_desc(slab + kSlabRowBytes * k0, slab_stride, kAtomBytes);
}

// Accumulator element e of an m64nN fp32 wgmma result held by `lane` of warp `warp` (0..3) of the warpgroup:
// row and column (the m16n8 layout of each warp's 16 rows, repeated every 8 columns: e = 4 j + i for n8 tile j).
MLARUN_HOST_DEVICE constexpr int acc_row(int warp, int lane, int e) {
  return 16 * warp + (lane >> 2) + ((e >> 1) & 1) * 8;
}
MLARUN_HOST_DEVICE constexpr int acc_col(int lane, int e) { return 8 * (e >> 2) + (lane & 3) * 2 + (e & 1); }
// An accumulator used as the next product's register A operand (P in P.V): register i of k-step kk holds the
// thread's accumulator elements e and e + 1 for e = acc_to_a(kk, i), that is n8 tiles 2 kk and 2 kk + 1 in the
// order (row lo, k lo), (row hi, k lo), (row lo, k hi), (row hi, k hi) of the A fragment.
MLARUN_HOST_DEVICE constexpr int acc_to_a(int kk, int i) { return 8 * kk + 4 * (i >> 1) + 2 * (i & 1); }

#if defined(__CUDACC__)
// wgmma exists on sm_90a only; elsewhere these compile to a trap (nothing calls them there).
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define MLARUN_WGMMA_ASM(...) asm volatile(__VA_ARGS__)
#define MLARUN_HAS_WGMMA 1
#else
#define MLARUN_WGMMA_ASM(...) __trap()
#define MLARUN_HAS_WGMMA 0
#endif

// Before the first wgmma that reads registers another instruction wrote (accumulators, A fragments).
__device__ __forceinline__ void wgmma_fence() { MLARUN_WGMMA_ASM("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { MLARUN_WGMMA_ASM("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
// Until at most kPending committed groups of this warpgroup are in flight.
template <int kPending>
__device__ __forceinline__ void wgmma_wait() {
  MLARUN_WGMMA_ASM("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}
// Shared memory written by ordinary stores or cp.async, read next by wgmma (the async proxy): each writing
// thread fences after its writes land, before the barrier that publishes them.
__device__ __forceinline__ void fence_async_smem() {
  MLARUN_WGMMA_ASM("fence.proxy.async.shared::cta;\n" ::: "memory");
}
// Warp specialization: a warpgroup gives registers back to the CTA's pool (dec) or takes them from it (inc), every
// thread of the warpgroup at once; kRegs per thread, a multiple of 8 in [24, 256]. ptxas allocates the code after
// each one within its count.
template <int kRegs>
__device__ __forceinline__ void setmaxnreg_dec() {
  static_assert(kRegs >= 24 && kRegs <= 256 && kRegs % 8 == 0, "setmaxnreg takes a multiple of 8 in [24, 256]");
  MLARUN_WGMMA_ASM("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}
template <int kRegs>
__device__ __forceinline__ void setmaxnreg_inc() {
  static_assert(kRegs >= 24 && kRegs <= 256 && kRegs % 8 == 0, "setmaxnreg takes a multiple of 8 in [24, 256]");
  MLARUN_WGMMA_ASM("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}
// Keeps the compiler from moving reads or writes of accumulators across a wgmma / wait.
template <int kN>
__device__ __forceinline__ void fence_registers(float (&d)[kN]) {
#pragma unroll
  for (int i = 0; i < kN; ++i) asm volatile("" : "+f"(d[i])::"memory");
}
#endif  // __CUDACC__

}  // namespace mlarun::ops::cuda::wgmma_sm90
