// The frame the warp-specialized wgmma attend kernels share (attend_wgmma_ws.cu: two computing warpgroups, each on
// its own; attend_wgmma_seesaw.cu: two that split the tiles between them and swap their probabilities): warpgroup 0
// loads, warpgroups 1 and 2 compute, and they meet only at mbarriers.
//   The ring has two stages of 64 cached rows, and each stage two halves with barriers of their own: lo, slabs 0-3
//   (latent columns 0-255, the V of computing warpgroup 1), and hi, slabs 4-8 (columns 256-511, warpgroup 2's V,
//   and k_pe). Why halves: a half is refilled as soon as its last reader is done with it, and scores start on the
//   half that has landed, so loads run under the MMAs instead of between them (the seesaw, measured with whole
//   stages, had its computing warps waiting on `full` 42 % of their time: a pair of steps held both stages).
//   The loader, per piece, loads the q rows and the cached rows half by half (cp.async, one row per two threads,
//   the block table read per row) in the order the computing side releases them (Computers::kPairedLoads: lo(n),
//   hi(n + 1), hi(n), lo(n + 1) for the seesaw's pairs; else lo(n), hi(n)). It never waits for its own copies: the
//   hardware arrives on the half's `full` once they land (cp.async.mbarrier.arrive.noinc), and the thread arrives
//   once more itself after its plain stores (zeros past the piece's tokens, NaN for a block outside the pool) and
//   a proxy fence. A half's `empty` is arrived on by the warpgroups that read it (Computers::kEmptyArrivals).
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

// A stage's halves (see above).
enum RingHalf { kLoHalf = 0, kHiHalf = 1 };
constexpr int kHiSlab0 = 4;  // the first slab of the hi half

// The CTA's mbarriers: full[stage][half], empty[stage][half], q_full, q_empty, then the computing side's own.
struct WsBarriers {
  uint32_t base;
  __device__ __forceinline__ uint32_t full(int stage, int half) const { return base + 8 * (2 * stage + half); }
  __device__ __forceinline__ uint32_t empty(int stage, int half) const {
    return base + 8 * (2 * kWgStages + 2 * stage + half);
  }
  __device__ __forceinline__ uint32_t q_full() const { return base + 8 * (4 * kWgStages); }
  __device__ __forceinline__ uint32_t q_empty() const { return base + 8 * (4 * kWgStages + 1); }
  __device__ __forceinline__ uint32_t extra(int i) const { return base + 8 * (kWsBarriers + i); }
};
static_assert(4 * kWgStages + 2 == kWsBarriers, "config.h counts the barriers");
// Arrivals that complete a `full` (or q_full) phase: each loading thread's copies landing, and the thread itself.
constexpr int kWsFullArrivals = 2 * kWsLoaders;

// Shared memory: q and the ring in 1024-byte aligned slabs, `tile_bytes` of the computing side's own (1024-byte
// aligned: wgmma operands), the barriers, then `exchange` floats of the computing side's own (aligned to 16 bytes).
struct WsSmem {
  uint32_t q_u32, ring_u32, tile_u32;
  unsigned char *q, *ring, *tile;
  WsBarriers bars;
  float* exchange;
};
constexpr size_t ws_smem_bytes(int extra_barriers, int exchange_floats, size_t tile_bytes) {
  return kWgSmemBytes + tile_bytes + size_t(kWsBarriers + extra_barriers) * 8 + 8 + size_t(exchange_floats) * 4;
}

// One loading thread's share of slabs [kSlab0, kSlab1) of the 64 rows of tokens [tok0, tok0 + 64) (load_kv_rows'
// rules: NaN for a block outside the pool, zeros past tok_end).
template <int kSlab0, int kSlab1>
__device__ __forceinline__ void ws_load_half_rows(const AttendArgs& a, unsigned char* stage, int seq, int tok0,
                                                  int tok_end) {
  load_kv_row_chunks<Format::Bf16, kWgBlockN, kWsLoaders, 8 * kSlab0, 8 * (kSlab1 - kSlab0)>(a, stage, seq, tok0,
                                                                                           tok_end, SlabRows{});
}

// A loading thread's two arrivals on a `full` barrier: its copies, when they land; its plain stores, now.
__device__ __forceinline__ void ws_publish(uint32_t full) {
  tma_sm90::mbarrier_arrive_on_copies(full);
  wgmma_sm90::fence_async_smem();  // the stores, for the tensor cores
  tma_sm90::mbarrier_arrive(full);
}

// Warpgroup 0: every piece's q rows and cached rows, half a stage at a time, in the order the computing side
// releases the halves (kPaired: the seesaw's pairs of steps).
template <bool kPaired>
__device__ __forceinline__ void ws_load_pieces(const AttendArgs& a, const WsSmem& sm, int row0) {
  const int tid = threadIdx.x;
  const int piece_end = a.part_piece_begin[blockIdx.x + 1];
  int n = 0, np = 0;  // tiles and pieces loaded so far
  for (int pi = a.part_piece_begin[blockIdx.x]; pi < piece_end; ++pi) {
    const PieceView pv = piece_view(a, pi);
    if (row0 >= pv.rows) continue;  // as the computing warpgroups do
    const int num_steps = (pv.num_tiles + 1) / 2;
    // Half `half` of the piece's step `it` (tile n + it), once the stage's previous tile's readers of it are done.
    const auto load_half = [&](int it, int half) {
      const int tile = n + it, stage = ws::stage_of(tile, kWgStages);
      tma_sm90::mbarrier_wait_bounded(sm.bars.empty(stage, half), ws::empty_parity(tile, kWgStages));
      unsigned char* rows = sm.ring + stage * kWgStageBytes;
      const int tok0 = pv.tok_begin + it * kWgBlockN;
      if (half == kLoHalf)
        ws_load_half_rows<0, kHiSlab0>(a, rows, pv.seq, tok0, pv.tok_end);
      else
        ws_load_half_rows<kHiSlab0, kWgSlabs>(a, rows, pv.seq, tok0, pv.tok_end);
      ws_publish(sm.bars.full(stage, half));
    };
    for (int it = 0; it < num_steps; it += kPaired ? 2 : 1) {
      load_half(it, kLoHalf);
      if (it == 0) {  // the piece's q rows (zeros past the sequence's rows), once the last piece's scores are done
        tma_sm90::mbarrier_wait_bounded(sm.bars.q_empty(), ws::q_empty_parity(np));
        load_q_rows<kWsLoaders>(a, pv, row0, sm.q, tid);
        ws_publish(sm.bars.q_full());
      }
      if (kPaired && it + 1 < num_steps) {  // in the order the seesaw releases them (attend_wgmma_seesaw.cu)
        load_half(it + 1, kHiHalf);
        load_half(it, kHiHalf);
        load_half(it + 1, kLoHalf);
      } else {
        load_half(it, kHiHalf);
      }
    }
    n += num_steps;
    np += num_steps > 0;  // a piece without steps (the scheduler makes none) needs no q
  }
  cp_async_commit();  // no copy of this thread's still in flight when it exits
  cp_async_wait<0>();
}

// Until half `half` of `stage`, holding tile n, has landed (then fenced for the tensor cores: the loader's copies
// reach its `full` without a fence of the loader's own).
__device__ __forceinline__ void ws_wait_full(const WsBarriers& bars, int stage, int half, int n) {
  tma_sm90::mbarrier_wait_copies_landed(bars.full(stage, half), ws::full_parity(n, kWgStages));
}

// Until the q rows of the CTA's piece number np have landed (fenced as above).
__device__ __forceinline__ void ws_wait_q(const WsBarriers& bars, int np) {
  tma_sm90::mbarrier_wait_copies_landed(bars.q_full(), ws::q_full_parity(np));
}

// Issues S (+)= Q . K^T over slabs [kSlab0, kSlab1) of the stage at `stage_u32` (m64n64k16 from shared memory);
// kZero: the first MMA overwrites s.
template <int kSlab0, int kSlab1, bool kZero>
__device__ __forceinline__ void ws_issue_scores(float (&s)[kWgBlockN / 2], uint32_t q_u32, uint32_t stage_u32) {
  using namespace wgmma_sm90;
  wgmma_fence();
#pragma unroll
  for (int slab = kSlab0; slab < kSlab1; ++slab)
#pragma unroll
    for (int k = 0; k < 4; ++k)
      Mma<kWgBlockN>::ss<0>(s, wg::q_desc(q_u32, slab, k), wg::k_desc(stage_u32, slab, k, 0),
                            !(kZero && slab == kSlab0 && k == 0));
  wgmma_commit();
}

// S = Q . K^T of tile n, in `stage`, issued half by half as each lands (kHiFirst: the hi half first), waited for.
template <bool kHiFirst>
__device__ __forceinline__ void ws_scores(float (&s)[kWgBlockN / 2], uint32_t q_u32, const WsSmem& sm, int stage,
                                          int n) {
  const uint32_t stage_u32 = sm.ring_u32 + uint32_t(stage * kWgStageBytes);
#pragma unroll
  for (int e = 0; e < kWgBlockN / 2; ++e) s[e] = 0.f;
  if (kHiFirst) {
    ws_wait_full(sm.bars, stage, kHiHalf, n);
    ws_issue_scores<kHiSlab0, kWgSlabs, true>(s, q_u32, stage_u32);
    ws_wait_full(sm.bars, stage, kLoHalf, n);
    ws_issue_scores<0, kHiSlab0, false>(s, q_u32, stage_u32);
  } else {
    ws_wait_full(sm.bars, stage, kLoHalf, n);
    ws_issue_scores<0, kHiSlab0, true>(s, q_u32, stage_u32);
    ws_wait_full(sm.bars, stage, kHiHalf, n);
    ws_issue_scores<kHiSlab0, kWgSlabs, false>(s, q_u32, stage_u32);
  }
  wgmma_sm90::wgmma_wait<0>();
  wgmma_sm90::fence_registers(s);
}

// The kernel: barriers set up by one thread, then the warpgroups part for good. `Computers` gives the computing
// side: run(a, smem, row0) for warpgroups 1 and 2; kPairedLoads (the loader's order, above); kEmptyArrivals (the
// threads that release each half of a stage); kTileBytes of shared memory for wgmma operands of its own;
// kExtraBarriers mbarriers of its own (128 arrivals each: one warpgroup's threads) and kExchangeFloats floats.
template <class Computers>
__global__ void __launch_bounds__(kWsThreads, 1) ws_attend_kernel(const AttendArgs a) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const uint32_t raw_u32 = mma_sm80::smem_u32(smem_raw);
  WsSmem sm;
  sm.q_u32 = (raw_u32 + wgmma_sm90::kAtomBytes - 1) & ~(wgmma_sm90::kAtomBytes - 1);  // slabs: 1024-byte aligned
  sm.ring_u32 = sm.q_u32 + uint32_t(kWgQBytes);
  sm.tile_u32 = sm.ring_u32 + uint32_t(kWgStages * kWgStageBytes);
  sm.q = smem_raw + (sm.q_u32 - raw_u32);
  sm.ring = sm.q + kWgQBytes;
  sm.tile = sm.ring + kWgStages * kWgStageBytes;
  sm.bars = WsBarriers{sm.tile_u32 + uint32_t(Computers::kTileBytes)};
  const uint32_t exchange_u32 = (sm.bars.extra(Computers::kExtraBarriers) + 15) & ~15u;
  sm.exchange = reinterpret_cast<float*>(smem_raw + (exchange_u32 - raw_u32));
  const int row0 = blockIdx.y * kWgRows;

  if (threadIdx.x == 0) {
    for (int stage = 0; stage < kWgStages; ++stage)
      for (int half = 0; half < 2; ++half) {
        tma_sm90::mbarrier_init(sm.bars.full(stage, half), kWsFullArrivals);
        tma_sm90::mbarrier_init(sm.bars.empty(stage, half), Computers::kEmptyArrivals);
      }
    tma_sm90::mbarrier_init(sm.bars.q_full(), kWsFullArrivals);
    tma_sm90::mbarrier_init(sm.bars.q_empty(), kWsComputers);
    for (int i = 0; i < Computers::kExtraBarriers; ++i) tma_sm90::mbarrier_init(sm.bars.extra(i), 128);
  }
  __syncthreads();  // the last CTA-wide barrier: from here the warpgroups meet only at the mbarriers

  if (threadIdx.x < kWsLoaders) {
    wgmma_sm90::setmaxnreg_dec<kWsLoaderRegs>();
    ws_load_pieces<Computers::kPairedLoads>(a, sm, row0);
  } else {
    wgmma_sm90::setmaxnreg_inc<kWsMathRegs>();
    Computers::run(a, sm, row0);
  }
}

template <class Computers>
void launch_ws_attend(const MlaDecodeParams& p, const WorkspaceLayout& w, cudaStream_t stream) {
  MLARUN_CHECK(p.kv_format == Format::Bf16, "mla_decode: the wgmma attend kernels read bf16 rows, not ",
               mla_kv_format_name(p.kv_format));
  static_assert(Computers::kTileBytes % wgmma_sm90::kAtomBytes == 0, "the ring's end stays 1024-byte aligned");
  constexpr size_t kSmem =
      ws_smem_bytes(Computers::kExtraBarriers, Computers::kExchangeFloats, size_t(Computers::kTileBytes));
  static_assert(kSmem <= 227 * 1024, "227 KB of shared memory per CTA");
  allow_dynamic_smem<ws_attend_kernel<Computers>>(kSmem);
  ws_attend_kernel<Computers><<<attend_grid(p, w), kWsThreads, kSmem, stream>>>(attend_args(p, w));
  MLARUN_CUDA_CHECK(cudaGetLastError());
}

}  // namespace mlarun::ops::cuda::mla
