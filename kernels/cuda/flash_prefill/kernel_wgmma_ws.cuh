// The Hopper flash prefill kernel with warp specialization (FlashPrefillParams::warp_specialized, sm_90a), the next
// step of stage B in NOTES.md: kernel_wgmma.cuh's two computing warpgroups (64 query rows each, S = Q K^T and
// O += P V on wgmma, the softmax in registers: softmax_tile and store_rows there), fed by a third warpgroup.
// Why: ncu on the wgmma kernel at 192/128 found no eligible warp in 58 % of the cycles, its loads and its softmax
// waiting in turn with the GEMMs behind two CTA-wide barriers per key tile. Here
//   warpgroup 0 loads Q once, then K and V of each key tile (last one first, as before) by cp.async into a
//            two-stage ring, K and V of a stage each with a `full` and an `empty` mbarrier. It never waits for its
//            own copies: the hardware arrives on `full` for each loading thread once its copies have landed
//            (cp.async.mbarrier.arrive.noinc), so both stages' loads can be in flight at once;
//   warpgroups 1 and 2 compute: each waits for a stage's K, scores, releases K (the loader refills it while the
//            softmax and P V run), waits for V, and releases V after its P V. Nothing else joins them, so one's
//            softmax can run while the other's GEMMs hold the tensor cores.
// The parities come from kernels/cuda/ws_ring.h (the decode kernels' protocol with one piece; played out on the CPU
// by tests/kernels/test_ws_ring.cpp). setmaxnreg moves the loader's registers to the computing
// warpgroups; a wait that never completes traps. Masks, NaN rules, lse and tile orders are the wgmma kernel's.
#pragma once

#include "kernels/cuda/flash_prefill/kernel_wgmma.cuh"
#include "kernels/cuda/flash_prefill/kv_ring.cuh"
#include "kernels/cuda/tma_sm90.cuh"
#include "kernels/cuda/ws_ring.h"

namespace mlarun::ops::cuda::flash {

template <int kDQK, int kDV, typename Element>
__global__ void __launch_bounds__(WgmmaWsTile<kDQK, kDV>::kThreads, 1)
    flash_prefill_wgmma_ws_kernel(const KernelArgs args) {
  using namespace wgmma_sm90;
  using W = WgmmaWsTile<kDQK, kDV>;
  constexpr int kBlockM = W::kBlockM, kBlockN = W::kBlockN, kStages = W::kStages, kLoaders = 128;
  constexpr int kORegs = kDV / 2;
  constexpr int kLoaderUnroll = W::kLoaderUnroll;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const KvRing<W> ring(smem_u32(smem_raw));

  const TileOf t = tile_of(args, kBlockM);  // the tile, as stage A picks it
  if (t.m0 >= t.len_q) return;               // uniform over the CTA, before any barrier
  const int head = t.head, q_start = t.q_start, len_q = t.len_q, m0 = t.m0, k_start = t.k_start, len_k = t.len_k,
            off = t.off, kv_head = head / args.group;
  const KeyBlocks blocks =
      tile_key_blocks(m0, len_q, len_k, off, args.causal != 0, args.window_left, kBlockM, kBlockN);
  const int n_begin = blocks.begin, n_end = blocks.end, tiles = n_end > n_begin ? n_end - n_begin : 0;

  if (threadIdx.x == 0) ring.init(kLoaders, 256);  // full: per loading thread, once its copies land
  __syncthreads();  // the last CTA-wide barrier: from here the warpgroups meet only at the mbarriers

  if (threadIdx.x < kLoaders) {  // warpgroup 0: Q before the first tile, then K and V tile by tile
    setmaxnreg_dec<W::kLoaderRegs>();
    const int tid = threadIdx.x;
    const int64_t q_stride = int64_t(args.hq) * kDQK, k_stride = int64_t(args.hkv) * kDQK,
                  v_stride = int64_t(args.hkv) * kDV;
    const uint16_t* gK = args.k + (int64_t(k_start) * args.hkv + kv_head) * kDQK;
    const uint16_t* gV = args.v + (int64_t(k_start) * args.hkv + kv_head) * kDV;
    if (tiles > 0) {  // (rows past the tile are zero-filled by the copies themselves: no plain stores to fence)
      const uint16_t* gQ = args.q + (int64_t(q_start + m0) * args.hq + head) * kDQK;
      load_slabs<kBlockM, kDQK, kLoaders, kLoaderUnroll>(ring.q, gQ, q_stride, len_q - m0, tid);
      tma_sm90::mbarrier_arrive_on_copies(ring.q_full());
    }
    for (int i = 0; i < tiles; ++i) {
      const int stage = ws::stage_of(i, kStages), n0 = (n_end - 1 - i) * kBlockN;
      tma_sm90::mbarrier_wait_bounded(ring.empty(stage, 0), ws::empty_parity(i, kStages));
      load_slabs<kBlockN, kDQK, kLoaders, kLoaderUnroll>(ring.k(stage), gK + int64_t(n0) * k_stride, k_stride,
                                                         len_k - n0, tid);
      tma_sm90::mbarrier_arrive_on_copies(ring.full(stage, 0));
      tma_sm90::mbarrier_wait_bounded(ring.empty(stage, 1), ws::empty_parity(i, kStages));
      load_slabs<kBlockN, kDV, kLoaders, kLoaderUnroll>(ring.v(stage), gV + int64_t(n0) * v_stride, v_stride,
                                                        len_k - n0, tid);
      tma_sm90::mbarrier_arrive_on_copies(ring.full(stage, 1));
    }
    cp_async_commit();  // no copy of this thread's still in flight when it exits
    cp_async_wait_all();
  } else {
    // Warpgroups 1 and 2: rows [64 group, 64 group + 64) of the tile.
    setmaxnreg_inc<W::kMathRegs>();
    const int tid = threadIdx.x - kLoaders, group = tid / 128, warp = (tid / 32) % 4, lane = tid % 32;
    float o[kORegs];
#pragma unroll
    for (int e = 0; e < kORegs; ++e) o[e] = 0.f;
    float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.f, 0.f};
    const int row_q[2] = {m0 + 64 * group + acc_row(warp, lane, 0), m0 + 64 * group + acc_row(warp, lane, 2)};
    if (tiles > 0) tma_sm90::mbarrier_wait_copies_landed(ring.q_full(), ws::q_full_parity(0));
    for (int i = 0; i < tiles; ++i) {
      const int stage = ws::stage_of(i, kStages), n0 = (n_end - 1 - i) * kBlockN;
      tma_sm90::mbarrier_wait_copies_landed(ring.full(stage, 0), ws::full_parity(i, kStages));
      float s[kBlockN / 2];
      scores_tile<kBlockM, kBlockN, kDQK, Element>(s, ring.q, ring.k(stage), group);
      tma_sm90::mbarrier_arrive(ring.empty(stage, 0));  // this warpgroup is done with the stage's K

      uint32_t p[kBlockN / 16][4];
      softmax_tile<kBlockM, kBlockN, kORegs, Element>(args, s, o, p, row_max, row_sum, row_q, n0, m0, len_k, off,
                                                      lane);

      tma_sm90::mbarrier_wait_copies_landed(ring.full(stage, 1), ws::full_parity(i, kStages));
      issue_pv<kBlockN, kDV, Element>(o, p, ring.v(stage));
      wgmma_commit();
      wgmma_wait<0>();
      fence_registers(o);
      tma_sm90::mbarrier_arrive(ring.empty(stage, 1));  // ... and with its V
    }
    store_rows<kORegs, Element>(args, o, row_sum, row_max, row_q, len_q, q_start, head, lane);
  }
}

template <int kHeadDimQK, int kHeadDimV, DType kDType>
void launch_flash_prefill_wgmma_ws(const FlashPrefillParams& p, int max_seqlen_q, cudaStream_t stream) {
  using Element = typename ElementOf<kDType>::type;
  launch_on_tiles<WgmmaWsTile<kHeadDimQK, kHeadDimV>, flash_prefill_wgmma_ws_kernel<kHeadDimQK, kHeadDimV, Element>>(
      p, max_seqlen_q, stream);
}

}  // namespace mlarun::ops::cuda::flash
