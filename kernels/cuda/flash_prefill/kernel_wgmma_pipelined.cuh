// The pipelined Hopper flash prefill kernel (FlashPrefillParams::pipelined, sm_90a): two warpgroups of 64 query rows
// each, as in kernel_wgmma.cuh, each of which keeps the tensor cores fed by itself. Key tile i + 1's scores and
// tile i's P V are issued together; tile i + 1's softmax runs while that P V is in flight, and the output is
// rescaled once it has landed (FlashAttention-3's intra-warpgroup pipelining).
// Why this shape: ncu on the wgmma kernel (one 8-warp CTA per SM) found no eligible warp in 58 % of the cycles, its
// loads, softmax and GEMMs waiting in turn behind two CTA-wide barriers per key tile. The warp-specialized kernel
// (kernel_wgmma_ws.cuh) takes the loads off the computing warps, but a third warpgroup leaves each thread 168
// registers at launch, and holding S, P and O at once at 128 keys a tile needs about 200: ptxas spilled and
// serialized the wgmma there (NOTES.md). Two warpgroups get 255, so here the computing warps load:
//   the ring   Q, and K and V of two key tiles, in kv_ring.cuh's stages; each thread copies its share of a tile by
//              cp.async and the hardware arrives on the tile's `full` mbarrier once that thread's copies have landed
//              (rows past the sequence are zero-filled by the copies), so no thread waits for its own loads;
//   a turn     (tile i, for i from 0) waits for K(i + 1) and V(i), issues S(i + 1) = Q K(i + 1)^T and
//              O += P(i) V(i); then loads K(i + 2) into K(i)'s stage and V(i + 1) into V(i - 1)'s, each once both
//              warpgroups have released it on its `empty` mbarrier; then waits for S(i + 1), releases K(i + 1),
//              runs its softmax, waits for the P V, releases V(i), packs P(i + 1) and rescales O.
// The warpgroups meet only at the mbarriers, and a warpgroup waits for the other only when that one is a turn
// behind; or, with `pingpong` (KernelArgs), they take turns at issuing their MMAs as well (FlashAttention-3's
// ping-pong: a named barrier per warpgroup, ws_ring.h's turn rules), so that one's softmax runs under the other's
// MMAs instead of both warpgroups' at once. Key tiles go last first, as in the other kernels; masks, NaN rules, lse and tile orders are theirs
// (kernel_wgmma.cuh: issue_scores, softmax_scores, pack_p, rescale_rows, store_rows). A wait that never completes
// traps instead of hanging the launch.
#pragma once

#include "kernels/cuda/flash_prefill/kernel_wgmma.cuh"
#include "kernels/cuda/flash_prefill/kv_ring.cuh"
#include "kernels/cuda/tma_sm90.cuh"
#include "kernels/cuda/ws_ring.h"

namespace mlarun::ops::cuda::flash {

// Named barrier kId (1..15; 0 is __syncthreads') of kThreads threads, a multiple of 32: sync waits until that many
// have arrived or synced, arrive counts this warp in and goes on. Compile-time ids, so ptxas reserves only these.
template <int kId, int kThreads>
__device__ __forceinline__ void named_barrier_sync() {
  asm volatile("bar.sync %0, %1;\n" ::"n"(kId), "n"(kThreads) : "memory");
}
template <int kId, int kThreads>
__device__ __forceinline__ void named_barrier_arrive() {
  asm volatile("bar.arrive %0, %1;\n" ::"n"(kId), "n"(kThreads) : "memory");
}

template <int kDQK, int kDV, typename Element>
__global__ void __launch_bounds__(WgmmaPipelinedTile<kDQK, kDV>::kThreads, 1)
    flash_prefill_wgmma_pipelined_kernel(const KernelArgs args) {
  using namespace wgmma_sm90;
  using W = WgmmaPipelinedTile<kDQK, kDV>;
  constexpr int kBlockM = W::kBlockM, kBlockN = W::kBlockN, kStages = W::kStages, kThreads = W::kThreads;
  constexpr int kORegs = kDV / 2;
  static_assert(kStages == 2, "the turn's loads go to the stages tiles i and i - 1 left");
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const KvRing<W> ring(smem_u32(smem_raw));

  const TileOf t = tile_of(args, kBlockM);  // the tile, as stage A picks it
  if (t.m0 >= t.len_q) return;               // uniform over the CTA, before any barrier
  const int head = t.head, q_start = t.q_start, len_q = t.len_q, m0 = t.m0, k_start = t.k_start, len_k = t.len_k,
            off = t.off, kv_head = head / args.group;
  const KeyBlocks blocks =
      tile_key_blocks(m0, len_q, len_k, off, args.causal != 0, args.window_left, kBlockM, kBlockN);
  const int n_end = blocks.end, tiles = blocks.end > blocks.begin ? blocks.end - blocks.begin : 0;

  if (threadIdx.x == 0) ring.init(kThreads, kThreads);  // every thread fills and reads
  __syncthreads();  // the last CTA-wide barrier: from here the warpgroups meet only at the mbarriers

  const int tid = threadIdx.x, group = tid / 128, warp = (tid / 32) % 4, lane = tid % 32;
  // Turn t of this warpgroup: 0 is tile 0's scores, t in [1, tiles) tile t's scores with tile t - 1's P V, `tiles`
  // the last P V. With pingpong each waits for the other warpgroup's turn before it (barriers 1 and 2).
  const bool pingpong = args.pingpong != 0;
  const auto hand_over = [&] {  // arrive on the other warpgroup's barrier
    if (group == 0)
      named_barrier_arrive<2, kThreads>();
    else
      named_barrier_arrive<1, kThreads>();
  };
  const auto begin_turn = [&] {
    if (!pingpong) return;
    if (group == 0)
      named_barrier_sync<1, kThreads>();
    else
      named_barrier_sync<2, kThreads>();
  };
  const auto end_turn = [&](int turn) {
    if (pingpong && ws::hands_turn_over(group, turn, tiles + 1)) hand_over();
  };
  const int64_t k_stride = int64_t(args.hkv) * kDQK, v_stride = int64_t(args.hkv) * kDV;
  const uint16_t* gK = args.k + (int64_t(k_start) * args.hkv + kv_head) * kDQK;
  const uint16_t* gV = args.v + (int64_t(k_start) * args.hkv + kv_head) * kDV;
  const auto first_key = [&](int i) { return (n_end - 1 - i) * kBlockN; };  // of key tile i (last one first)
  // This thread's share of key tile i's K (part 0) or V (part 1), once both warpgroups have released the stage's
  // tile before it (for a stage's first use, the phase before the first, which has passed).
  const auto load_tile = [&](int i, int part) {
    const int stage = ws::stage_of(i, kStages), n0 = first_key(i);
    tma_sm90::mbarrier_wait_bounded(ring.empty(stage, part), ws::empty_parity(i, kStages));
    if (part == 0)
      load_slabs_by_rows<kBlockN, kDQK, kThreads>(ring.k(stage), gK + n0 * k_stride, k_stride, len_k - n0, tid);
    else
      load_slabs_by_rows<kBlockN, kDV, kThreads>(ring.v(stage), gV + n0 * v_stride, v_stride, len_k - n0, tid);
    tma_sm90::mbarrier_arrive_on_copies(ring.full(stage, part));
  };

  float o[kORegs];
#pragma unroll
  for (int e = 0; e < kORegs; ++e) o[e] = 0.f;
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.f, 0.f};
  // This thread's two rows (index in the sequence): accumulator elements with bit 1 clear, then set.
  const int row_q[2] = {m0 + 64 * group + acc_row(warp, lane, 0), m0 + 64 * group + acc_row(warp, lane, 2)};

  if (tiles > 0) {
    // Q, K(0) and K(1) (the first two turns' scores), V(0); the copies of each go out without waiting.
    const uint16_t* gQ = args.q + (int64_t(q_start + m0) * args.hq + head) * kDQK;
    load_slabs_by_rows<kBlockM, kDQK, kThreads>(ring.q, gQ, int64_t(args.hq) * kDQK, len_q - m0, tid);
    tma_sm90::mbarrier_arrive_on_copies(ring.q_full());
    load_tile(0, 0);
    if (tiles > 1) load_tile(1, 0);
    load_tile(0, 1);

    // Tile 0's scores and softmax, with nothing else in flight.
    uint32_t p[kBlockN / 16][4];
    float s[kBlockN / 2], alpha[2];
    tma_sm90::mbarrier_wait_copies_landed(ring.q_full(), ws::q_full_parity(0));
    tma_sm90::mbarrier_wait_copies_landed(ring.full(0, 0), ws::full_parity(0, kStages));
    if (pingpong && ws::opens_first_turn(group)) hand_over();
    begin_turn();
    issue_scores<kBlockM, kBlockN, kDQK, Element>(s, ring.q, ring.k(0), group);
    wgmma_commit();
    end_turn(0);
    wgmma_wait<0>();
    fence_registers(s);
    tma_sm90::mbarrier_arrive(ring.empty(0, 0));
    softmax_scores<kBlockM, kBlockN>(args, s, row_max, row_sum, alpha, row_q, first_key(0), m0, len_k, off, lane);
    pack_p<kBlockN, Element>(s, p);  // (O is still zero: nothing to rescale)

    // Turn i: S(i + 1) and P(i) V(i) in flight together; tile i + 1's softmax under the P V.
    for (int i = 0; i + 1 < tiles; ++i) {
      const int next = ws::stage_of(i + 1, kStages), stage = ws::stage_of(i, kStages);
      tma_sm90::mbarrier_wait_copies_landed(ring.full(next, 0), ws::full_parity(i + 1, kStages));
      tma_sm90::mbarrier_wait_copies_landed(ring.full(stage, 1), ws::full_parity(i, kStages));
      begin_turn();
      issue_scores<kBlockM, kBlockN, kDQK, Element>(s, ring.q, ring.k(next), group);
      wgmma_commit();
      wgmma_fence();  // (ptxas put one here itself, with branches between the scores' fence and the P V)
#pragma unroll
      for (int kk = 0; kk < kBlockN / 16; ++kk)
        Mma<kDV>::template rs<1, Element>(o, p[kk], wg::v_desc(ring.v(stage), kBlockN, kk), 1);
      wgmma_commit();
      end_turn(i + 1);
      // K(i + 2) into the stage K(i) left (released after S(i), a turn ago), V(i + 1) into the one V(i - 1) left
      // (released at the end of the turn before): the tiles the next two turns wait for.
      if (i + 2 < tiles) load_tile(i + 2, 0);

      wgmma_wait<1>();  // S(i + 1), committed first; the P V still in flight, reading p and adding into o
      fence_registers(s);
      tma_sm90::mbarrier_arrive(ring.empty(next, 0));
      softmax_scores<kBlockM, kBlockN>(args, s, row_max, row_sum, alpha, row_q, first_key(i + 1), m0, len_k, off,
                                       lane);
      fence_registers(s);
      load_tile(i + 1, 1);
      wgmma_wait<0>();
      fence_registers(o);
      tma_sm90::mbarrier_arrive(ring.empty(stage, 1));
      pack_p<kBlockN, Element>(s, p);
      rescale_rows(o, alpha);
    }

    // The last tile's P V.
    const int last = ws::stage_of(tiles - 1, kStages);
    tma_sm90::mbarrier_wait_copies_landed(ring.full(last, 1), ws::full_parity(tiles - 1, kStages));
    begin_turn();
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; ++kk)
      Mma<kDV>::template rs<1, Element>(o, p[kk], wg::v_desc(ring.v(last), kBlockN, kk), 1);
    wgmma_commit();
    end_turn(tiles);
    wgmma_wait<0>();
    fence_registers(o);
  }
  store_rows<kORegs, Element>(args, o, row_sum, row_max, row_q, len_q, q_start, head, lane);
}

template <int kHeadDimQK, int kHeadDimV, DType kDType>
void launch_flash_prefill_wgmma_pipelined(const FlashPrefillParams& p, int max_seqlen_q, cudaStream_t stream) {
  using Element = typename ElementOf<kDType>::type;
  launch_on_tiles<WgmmaPipelinedTile<kHeadDimQK, kHeadDimV>,
                  flash_prefill_wgmma_pipelined_kernel<kHeadDimQK, kHeadDimV, Element>>(p, max_seqlen_q, stream);
}

}  // namespace mlarun::ops::cuda::flash
