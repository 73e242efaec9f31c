// The frame the warp-specialized wgmma attend kernels share (attend_wgmma_ws.cu: two computing warpgroups, each on
// its own; attend_wgmma_seesaw.cu: two that split the tiles between them and swap their probabilities): warpgroup 0
// loads, warpgroups 1 and 2 compute, and they meet only at mbarriers.
//   The loader, per piece, loads the q rows and then each 64-token step's cached rows by cp.async into the
//   two-stage ring (the shared row loader, one row per two threads, the block table read per row). For each stage
//   its threads wait for their own copies, fence them for the async proxy (wgmma) and arrive on the stage's `full`
//   mbarrier; it refills a stage once both computing warpgroups have arrived on its `empty` one. q has its own pair
//   (q_full, q_empty) per piece.
// Phases run on across a CTA's pieces (ws_ring.h has the parities; tests/kernels/test_ws_ring.cpp plays
// the kernels' threads out on the CPU against a model of mbarriers). setmaxnreg moves the loader's registers to the
// computing warpgroups. A wait that never completes traps instead of hanging the launch.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/mla_decode/attend_common.cuh"
#include "kernels/cuda/mla_decode/attend_wgmma_rows.cuh"
#include "kernels/cuda/mla_decode/config.h"
#include "kernels/cuda/mla_decode/wgmma_lanes.h"
#include "kernels/cuda/ws_ring.h"
#include "kernels/cuda/mma_sm80.cuh"
#include "kernels/cuda/tma_sm90.cuh"
#include "kernels/cuda/wgmma_sm90.cuh"
#include "kernels/cuda/wgmma_sm90_mma.cuh"
#include "runtime/cuda_check.h"

namespace mlarun::ops::cuda::mla {

constexpr int kWsLoaders = 128;  // warpgroup 0
constexpr int kWsComputers = kWsThreads - kWsLoaders;

// The CTA's mbarriers, after the ring: full[stage], empty[stage], q_full, q_empty, then the computing side's own.
struct WsBarriers {
  uint32_t base;
  __device__ __forceinline__ uint32_t full(int stage) const { return base + 8 * stage; }
  __device__ __forceinline__ uint32_t empty(int stage) const { return base + 8 * (kWgStages + stage); }
  __device__ __forceinline__ uint32_t q_full() const { return base + 8 * (2 * kWgStages); }
  __device__ __forceinline__ uint32_t q_empty() const { return base + 8 * (2 * kWgStages + 1); }
  __device__ __forceinline__ uint32_t extra(int i) const { return base + 8 * (kWsBarriers + i); }
};
static_assert(2 * kWgStages + 2 == kWsBarriers, "config.h counts the barriers");

// Shared memory: q and the ring in 1024-byte aligned slabs, the barriers, then `exchange` floats of the computing
// side's own (aligned to 16 bytes).
struct WsSmem {
  uint32_t q_u32, ring_u32;
  unsigned char *q, *ring;
  WsBarriers bars;
  float* exchange;
};
constexpr size_t ws_smem_bytes(int extra_barriers, int exchange_floats) {
  return kWgSmemBytes + size_t(kWsBarriers + extra_barriers) * 8 + 8 + size_t(exchange_floats) * 4;
}

// Warpgroup 0: every piece's q rows and cached tiles, in the order the computing warpgroups take them.
__device__ __forceinline__ void ws_load_pieces(const AttendArgs& a, const WsSmem& sm, int row0) {
  constexpr int kRowChunks = kHeadDimQK / 8;  // 16-byte pieces of a q row: 72
  const int tid = threadIdx.x;
  const int piece_end = a.part_piece_begin[blockIdx.x + 1];
  int n = 0, np = 0;  // tiles and pieces loaded so far
  for (int pi = a.part_piece_begin[blockIdx.x]; pi < piece_end; ++pi) {
    const PieceView pv = piece_view(a, pi);
    if (row0 >= pv.rows) continue;  // as the computing warpgroups do
    const int num_steps = (pv.num_tiles + 1) / 2;
    for (int it = 0; it < num_steps; ++it, ++n) {
      const int stage = ws::stage_of(n, kWgStages);
      // The stage's previous tile's readers are done.
      tma_sm90::mbarrier_wait_bounded(sm.bars.empty(stage), ws::empty_parity(n, kWgStages));
      load_kv_rows<Format::Bf16, kWgBlockN, kWsLoaders>(a, sm.ring + stage * kWgStageBytes, pv.seq,
                                                        pv.tok_begin + it * kWgBlockN, pv.tok_end, SlabRows{});
      if (it == 0) {  // the piece's q rows (zeros past the sequence's rows), once the last piece's scores are done
        tma_sm90::mbarrier_wait_bounded(sm.bars.q_empty(), ws::q_empty_parity(np));
        const uint16_t* q_src = a.q + (int64_t(pv.q_begin) * a.num_heads + row0) * kHeadDimQK;
        for (int c = tid; c < kWgRows * kRowChunks; c += kWsLoaders) {
          const int r = c / kRowChunks, off = (c % kRowChunks) * 16;
          unsigned char* dst = SlabRows{}(sm.q, r, off);
          if (row0 + r < pv.rows)
            cp_async_16(dst, reinterpret_cast<const unsigned char*>(q_src + r * kHeadDimQK) + off);
          else
            *reinterpret_cast<uint4*>(dst) = make_uint4(0u, 0u, 0u, 0u);
        }
      }
      cp_async_commit();
      cp_async_wait<0>();                // this thread's copies have landed
      wgmma_sm90::fence_async_smem();   // ... where the tensor cores will read them
      if (it == 0) tma_sm90::mbarrier_arrive(sm.bars.q_full());
      tma_sm90::mbarrier_arrive(sm.bars.full(stage));
    }
    np += num_steps > 0;  // a piece without steps (the scheduler makes none) needs no q
  }
}

// S = Q . K^T of the 64 tokens in the stage at `stage_u32` (36 m64n64k16 from shared memory), waited for.
__device__ __forceinline__ void ws_scores(float (&s)[kWgBlockN / 2], uint32_t q_u32, uint32_t stage_u32) {
  using namespace wgmma_sm90;
#pragma unroll
  for (int e = 0; e < kWgBlockN / 2; ++e) s[e] = 0.f;
  wgmma_fence();
#pragma unroll
  for (int slab = 0; slab < kWgSlabs; ++slab)
#pragma unroll
    for (int k = 0; k < 4; ++k)
      Mma<kWgBlockN>::ss<0>(s, wg::q_desc(q_u32, slab, k), wg::k_desc(stage_u32, slab, k, 0), slab + k > 0);
  wgmma_commit();
  wgmma_wait<0>();
  fence_registers(s);
}

// The kernel: barriers set up by one thread, then the warpgroups part for good. `Computers` gives the computing
// side: run(a, smem, row0) for warpgroups 1 and 2, kExtraBarriers mbarriers of its own (128 arrivals each: one
// warpgroup's threads) and kExchangeFloats floats of shared memory.
template <class Computers>
__global__ void __launch_bounds__(kWsThreads, 1) ws_attend_kernel(const AttendArgs a) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const uint32_t raw_u32 = mma_sm80::smem_u32(smem_raw);
  WsSmem sm;
  sm.q_u32 = (raw_u32 + wgmma_sm90::kAtomBytes - 1) & ~(wgmma_sm90::kAtomBytes - 1);  // slabs: 1024-byte aligned
  sm.ring_u32 = sm.q_u32 + uint32_t(kWgQBytes);
  sm.q = smem_raw + (sm.q_u32 - raw_u32);
  sm.ring = sm.q + kWgQBytes;
  sm.bars = WsBarriers{sm.ring_u32 + uint32_t(kWgStages * kWgStageBytes)};
  const uint32_t exchange_u32 = (sm.bars.extra(Computers::kExtraBarriers) + 15) & ~15u;
  sm.exchange = reinterpret_cast<float*>(smem_raw + (exchange_u32 - raw_u32));
  const int row0 = blockIdx.y * kWgRows;

  if (threadIdx.x == 0) {
    for (int stage = 0; stage < kWgStages; ++stage) {
      tma_sm90::mbarrier_init(sm.bars.full(stage), kWsLoaders);
      tma_sm90::mbarrier_init(sm.bars.empty(stage), kWsComputers);
    }
    tma_sm90::mbarrier_init(sm.bars.q_full(), kWsLoaders);
    tma_sm90::mbarrier_init(sm.bars.q_empty(), kWsComputers);
    for (int i = 0; i < Computers::kExtraBarriers; ++i) tma_sm90::mbarrier_init(sm.bars.extra(i), 128);
  }
  __syncthreads();  // the last CTA-wide barrier: from here the warpgroups meet only at the mbarriers

  if (threadIdx.x < kWsLoaders) {
    wgmma_sm90::setmaxnreg_dec<kWsLoaderRegs>();
    ws_load_pieces(a, sm, row0);
  } else {
    wgmma_sm90::setmaxnreg_inc<kWsMathRegs>();
    Computers::run(a, sm, row0);
  }
}

template <class Computers>
void launch_ws_attend(const MlaDecodeParams& p, const WorkspaceLayout& w, cudaStream_t stream) {
  MLARUN_CHECK(p.kv_format == Format::Bf16, "mla_decode: the wgmma attend kernels read bf16 rows, not ",
               mla_kv_format_name(p.kv_format));
  constexpr size_t kSmem = ws_smem_bytes(Computers::kExtraBarriers, Computers::kExchangeFloats);
  static_assert(kSmem <= 227 * 1024, "227 KB of shared memory per CTA");
  allow_dynamic_smem<ws_attend_kernel<Computers>>(kSmem);
  ws_attend_kernel<Computers><<<attend_grid(p, w), kWsThreads, kSmem, stream>>>(attend_args(p, w));
  MLARUN_CUDA_CHECK(cudaGetLastError());
}

}  // namespace mlarun::ops::cuda::mla
