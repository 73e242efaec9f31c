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
// MMAs instead of both warpgroups' at once.
// With `persistent` a CTA per SM walks the launch's tiles (every gridDim.x-th block of the virtual grid grid_*, in
// the order the hardware would launch them), and the ring runs on across them: the next tile's Q, first two K and
// first V are issued as soon as the current tile's last P V is, so that its loads land under that P V and the
// epilogue instead of after a new CTA's start. Key tiles go last first, as in the other kernels; masks, NaN rules,
// lse and tile orders are theirs (kernel_wgmma.cuh: issue_scores, softmax_scores, pack_p, rescale_rows,
// store_rows). A wait that never completes traps instead of hanging the launch.
#pragma once

#include "kernels/cuda/cuda_common.h"
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

// One query tile of the launch as the pipelined kernel works it: which tile, and its key tiles (last one first).
struct PipelinedJob {
  TileOf t;
  int n_end, tiles;  // key tiles n_end - tiles .. n_end - 1
  const uint16_t *k, *v;  // the job's sequence's first key row of its K/V head (the division by the group once)
  __device__ bool empty() const { return t.m0 >= t.len_q; }  // an m-block past its sequence: nothing to do
};
template <int kDQK, int kDV>
__device__ __forceinline__ PipelinedJob pipelined_job(const KernelArgs& args, int block_m, int block_n, int v,
                                                      dim3 grid) {
  const uint3 b = make_uint3(unsigned(v) % grid.x, unsigned(v) / grid.x % grid.y, unsigned(v) / (grid.x * grid.y));
  PipelinedJob j;
  j.t = tile_at(args, block_m, b, grid);
  const KeyBlocks k = j.empty() ? KeyBlocks{0, 0}
                                : tile_key_blocks(j.t.m0, j.t.len_q, j.t.len_k, j.t.off, args.causal != 0,
                                                  args.window_left, block_m, block_n);
  j.n_end = k.end, j.tiles = k.end > k.begin ? k.end - k.begin : 0;
  const int64_t kv_row = int64_t(j.t.k_start) * args.hkv + j.t.head / args.group;
  j.k = args.k + kv_row * kDQK, j.v = args.v + kv_row * kDV;
  return j;
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

  // This CTA's blocks v of the grid `grid`: its own one, or (persistent) every gridDim.x-th of the virtual grid.
  const bool persistent = args.persistent != 0;
  const dim3 grid = persistent ? dim3(args.grid_x, args.grid_y, args.grid_z) : gridDim;
  const int first = persistent ? int(blockIdx.x) : int(blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z));
  const int end = persistent ? int(grid.x * grid.y * grid.z) : first + 1, stride = persistent ? int(gridDim.x) : 1;
  PipelinedJob job = pipelined_job<kDQK, kDV>(args, kBlockM, kBlockN, first, grid);
  if (!persistent && job.empty()) return;  // uniform over the CTA, before any barrier

  if (threadIdx.x == 0) ring.init(kThreads, kThreads);  // every thread fills and reads
  __syncthreads();  // the last CTA-wide barrier: from here the warpgroups meet only at the mbarriers

  const int tid = threadIdx.x, group = tid / 128, warp = (tid / 32) % 4, lane = tid % 32;
  // Turn t of this warpgroup in a tile of `tiles` key tiles: 0 is key tile 0's scores, t in [1, tiles) tile t's
  // scores with tile t - 1's P V, `tiles` the last P V. With pingpong each waits for the other warpgroup's turn
  // before it (barriers 1 and 2).
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
  // The ring: key tile i of a job is the CTA's key tile c0 + i (c0: the key tiles of its jobs before), which sets
  // its stage and parities; Q's use q_use likewise.
  const auto stage_of = [](int c) { return ws::stage_of(c, kStages); };
  const auto full_parity = [](int c) { return ws::full_parity(c, kStages); };
  // This thread's share of key tile i (ring position c) of job j: K (part 0) or V (part 1), once both warpgroups
  // have released the stage's tile before it (for a stage's first use, the phase before the first, passed).
  const auto load_tile = [&](const PipelinedJob& j, int c, int i, int part) {
    const int stage = stage_of(c), n0 = (j.n_end - 1 - i) * kBlockN;
    tma_sm90::mbarrier_wait_bounded(ring.empty(stage, part), ws::empty_parity(c, kStages));
    if (part == 0) {
      const int64_t stride = int64_t(args.hkv) * kDQK;
      const uint16_t* g = j.k + n0 * stride;
      load_slabs_by_rows<kBlockN, kDQK, kThreads>(ring.k(stage), g, stride, j.t.len_k - n0, tid);
    } else {
      const int64_t stride = int64_t(args.hkv) * kDV;
      const uint16_t* g = j.v + n0 * stride;
      load_slabs_by_rows<kBlockN, kDV, kThreads>(ring.v(stage), g, stride, j.t.len_k - n0, tid);
    }
    tma_sm90::mbarrier_arrive_on_copies(ring.full(stage, part));
  };
  // A job's first loads: Q (once both warpgroups are done with the last one's), K(0) and K(1) (the first two turns'
  // scores), V(0); the copies of each go out without waiting.
  const auto first_loads = [&](const PipelinedJob& j, int c0, int q_use) {
    tma_sm90::mbarrier_wait_bounded(ring.q_empty(), ws::q_empty_parity(q_use));
    const uint16_t* gQ = args.q + (int64_t(j.t.q_start + j.t.m0) * args.hq + j.t.head) * kDQK;
    load_slabs_by_rows<kBlockM, kDQK, kThreads>(ring.q, gQ, int64_t(args.hq) * kDQK, j.t.len_q - j.t.m0, tid);
    tma_sm90::mbarrier_arrive_on_copies(ring.q_full());
    load_tile(j, c0, 0, 0);
    if (j.tiles > 1) load_tile(j, c0 + 1, 1, 0);
    load_tile(j, c0, 0, 1);
  };

  int c0 = 0, q_use = 0;
  bool loaded = false;  // job's first loads are out (issued under the job before it)
  for (int v = first; v < end; v += stride) {
    const int tiles = job.tiles, m0 = job.t.m0, len_k = job.t.len_k, off = job.t.off;
    const int next_v = v + stride;
    float o[kORegs];
#pragma unroll
    for (int e = 0; e < kORegs; ++e) o[e] = 0.f;
    float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.f, 0.f};
    // This thread's two rows (index in the sequence): accumulator elements with bit 1 clear, then set.
    const int row_q[2] = {m0 + 64 * group + acc_row(warp, lane, 0), m0 + 64 * group + acc_row(warp, lane, 2)};
    const auto end_turn = [&](int turn) {
      if (pingpong && ws::hands_turn_over(group, turn, tiles + 1)) hand_over();
    };
    PipelinedJob next = job;

    if (tiles > 0) {
      if (!loaded) first_loads(job, c0, q_use);
      // Key tile 0's scores and softmax, with nothing else of this job in flight.
      uint32_t p[kBlockN / 16][4];
      float s[kBlockN / 2], alpha[2];
      tma_sm90::mbarrier_wait_copies_landed(ring.q_full(), ws::q_full_parity(q_use));
      tma_sm90::mbarrier_wait_copies_landed(ring.full(stage_of(c0), 0), full_parity(c0));
      if (pingpong && ws::opens_first_turn(group)) hand_over();
      begin_turn();
      issue_scores<kBlockM, kBlockN, kDQK, Element>(s, ring.q, ring.k(stage_of(c0)), group);
      wgmma_commit();
      end_turn(0);
      wgmma_wait<0>();
      fence_registers(s);
      tma_sm90::mbarrier_arrive(ring.empty(stage_of(c0), 0));
      if (tiles == 1) tma_sm90::mbarrier_arrive(ring.q_empty());  // the job's last scores
      softmax_scores<kBlockM, kBlockN>(args, s, row_max, row_sum, alpha, row_q, (job.n_end - 1) * kBlockN, m0, len_k,
                                       off, lane);
      pack_p<kBlockN, Element>(s, p);  // (O is still zero: nothing to rescale)

      // Turn i + 1: S(i + 1) and P(i) V(i) in flight together; key tile i + 1's softmax under the P V.
      for (int i = 0; i + 1 < tiles; ++i) {
        const int c = c0 + i;
        tma_sm90::mbarrier_wait_copies_landed(ring.full(stage_of(c + 1), 0), full_parity(c + 1));
        tma_sm90::mbarrier_wait_copies_landed(ring.full(stage_of(c), 1), full_parity(c));
        begin_turn();
        issue_scores<kBlockM, kBlockN, kDQK, Element>(s, ring.q, ring.k(stage_of(c + 1)), group);
        wgmma_commit();
        // (issue_pv fences first: without it ptxas put a fence here itself, with branches between the scores' fence and
        // the P V)
        issue_pv<kBlockN, kDV, Element>(o, p, ring.v(stage_of(c)));
        wgmma_commit();
        end_turn(i + 1);
        // K(i + 2) into the stage K(i) left (released after S(i), a turn ago) and V(i + 1) into the stage V(i - 1)
        // left (released at the end of the turn before): the next turn's operands, a whole turn to land.
        if (i + 2 < tiles) load_tile(job, c + 2, i + 2, 0);
        load_tile(job, c + 1, i + 1, 1);

        wgmma_wait<1>();  // S(i + 1), committed first; the P V still in flight, reading p and adding into o
        fence_registers(s);
        tma_sm90::mbarrier_arrive(ring.empty(stage_of(c + 1), 0));
        if (i + 2 == tiles) tma_sm90::mbarrier_arrive(ring.q_empty());  // the job's last scores
        softmax_scores<kBlockM, kBlockN>(args, s, row_max, row_sum, alpha, row_q, (job.n_end - 2 - i) * kBlockN, m0,
                                         len_k, off, lane);
        fence_registers(s);
        // V(i + 1)'s `empty` wait again (passed above; that barrier's next phase needs this thread's own release of
        // V(i + 1), a turn later): a loop ptxas cannot move the wait for the P V above, so the softmax stays
        // under the P V (without it, every exponential came after the wait in the SASS).
        tma_sm90::mbarrier_wait_bounded(ring.empty(stage_of(c + 1), 1), ws::empty_parity(c + 1, kStages));
        wgmma_wait<0>();
        fence_registers(o);
        tma_sm90::mbarrier_arrive(ring.empty(stage_of(c), 1));
        pack_p<kBlockN, Element>(s, p);
        rescale_rows(o, alpha);
      }

      // The last P V; under it (persistent) the next job's first loads.
      const int last = c0 + tiles - 1;
      tma_sm90::mbarrier_wait_copies_landed(ring.full(stage_of(last), 1), full_parity(last));
      begin_turn();
      issue_pv<kBlockN, kDV, Element>(o, p, ring.v(stage_of(last)));
      wgmma_commit();
      end_turn(tiles);
      loaded = false;
      if (next_v < end) {
        next = pipelined_job<kDQK, kDV>(args, kBlockM, kBlockN, next_v, grid);
        if (next.tiles > 0) first_loads(next, c0 + tiles, q_use + 1), loaded = true;
      }
      wgmma_wait<0>();
      fence_registers(o);
      tma_sm90::mbarrier_arrive(ring.empty(stage_of(last), 1));
      c0 += tiles, ++q_use;
    } else if (next_v < end) {
      next = pipelined_job<kDQK, kDV>(args, kBlockM, kBlockN, next_v, grid);
    }
    if (!job.empty())
      store_rows<kORegs, Element>(args, o, row_sum, row_max, row_q, job.t.len_q, job.t.q_start, job.t.head, lane);
    job = next;
  }
}

// The launcher flash_prefill.h declares: the grid and tile list of the other Hopper kernels; with `persistent`,
// that grid becomes the virtual one, walked by a CTA per SM or by the number of CTAs asked for (at most one a
// tile).
template <int kHeadDimQK, int kHeadDimV, DType kDType>
void launch_flash_prefill_wgmma_pipelined(const FlashPrefillParams& p, int max_seqlen_q, cudaStream_t stream) {
  using Element = typename ElementOf<kDType>::type;
  using Tile = WgmmaPipelinedTile<kHeadDimQK, kHeadDimV>;
  constexpr auto kKernel = flash_prefill_wgmma_pipelined_kernel<kHeadDimQK, kHeadDimV, Element>;
  KernelArgs args = kernel_args(p);
  allow_dynamic_smem<kKernel>(Tile::kSmemBytes);
  Tensor order;  // the longest-first tile list; freed at return, stream-ordered after the kernel reads it
  const int32_t* cu = p.cu_seqlens_q_host;  // its own tile order: the compact list for a varlen batch (config.h)
  bool lengths_differ = false;
  for (int b = 1; b < p.batch && !lengths_differ; ++b) lengths_differ = cu[b + 1] - cu[b] != cu[1] - cu[0];
  const int own_order = lengths_differ ? kPipelinedVarlenOrder : 0;
  dim3 grid = launch_grid(p, own_order, Tile::kBlockM, Tile::kBlockN, max_seqlen_q, order, args, stream);
  if (p.persistent != 0) {
    const int ctas = p.persistent < 0 ? current_device_sm_count() : p.persistent;
    const int64_t blocks = int64_t(grid.x) * grid.y * grid.z;
    MLARUN_CHECK(blocks <= int64_t(INT32_MAX), "flash_prefill: ", blocks, " tiles are more than a persistent ",
                 "launch counts (2^31 - 1)");
    args.persistent = 1, args.grid_x = int(grid.x), args.grid_y = int(grid.y), args.grid_z = int(grid.z);
    grid = dim3(unsigned(std::min<int64_t>(blocks, std::max(ctas, 1))));
  }
  kKernel<<<grid, Tile::kThreads, Tile::kSmemBytes, stream>>>(args);
  MLARUN_CUDA_CHECK(cudaGetLastError());
}

}  // namespace mlarun::ops::cuda::flash
