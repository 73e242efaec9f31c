// The MLA decode attend kernel on wgmma in FlashMLA's "seesaw" shape (AttendKernel::WgmmaSeesaw, sm_90a), on the
// warp-specialized frame of attend_wgmma_ws.cuh (a loading warpgroup, a two-stage ring of 64-token steps handed over
// on mbarriers). Why: the two computing warpgroups of attend_wgmma_ws.cu both score every token (13.6 MFLOP of
// tensor work a step, a third of it computed twice), and the split kernel, which does not, runs its warpgroups in
// lockstep through the softmax. Here the steps go in pairs (n, n + 1), and no score is computed twice:
//   A (warpgroup 1, output columns 0-255) scores step n and runs its softmax against the running maximum m:
//        m_A, alpha_A = 2^(m - m_A), P_n; publishes m_A and alpha_A; O_A = O_A alpha_A + P_n V_n[A's columns]
//        (P from registers);
//   B (warpgroup 2, columns 256-511) scores step n + 1 meanwhile, then takes m_A: m_B = max(m_A, its scores),
//        beta = 2^(m_A - m_B), P_n+1 against m_B; publishes beta and m_B, writes P_n+1 to shared memory;
//        O_B = O_B alpha_A beta + P_n+1 V_n+1[B's columns] (from registers);
//   A then rescales by beta, writes P_n beta to shared memory and adds P_n+1 V_n+1[A's columns]; B adds
//        (P_n beta) V_n[B's columns]. Both now hold m_B.
// Each warpgroup's softmax runs while the other's MMAs hold the tensor cores. A's P tile (64 rows x 64 tokens, bf16)
// goes into slab 8 of its step's stage: the rope part of the cached rows, which only that step's scores read. B's
// has 8 KB of its own; B writes the next one only after scores that needed a lo half A releases once its product
// from the last one is done, so it needs no barrier. The stages' halves (frame:
// attend_wgmma_ws.cuh) go back to the loader as their readers finish, the lo halves (A's columns) by A, the hi
// halves (B's columns, k_pe, A's P) by B: step n's lo half after A's first product, step n + 1's hi half after B's,
// the other two at the end of the pair; the loader refills them in that order, and A scores a tile lo half first,
// B hi half first, so the next pair's scores start on what lands first. Row sums are kept per warpgroup and added
// once per piece. An odd step count ends with a step of A's alone (B adds P_n V_n for its columns). Signals between
// A and B are mbarriers of 128 arrivals (one warpgroup): a_ready and p_a_ready per step A scores, b_ready per
// pair, and l_a / l_b for the row sums at the end of a piece; the parities count those uses
// (tests/kernels/test_ws_ring.cpp plays every thread's sequence out on the CPU). Schedule, masks, partials and
// whole-piece outputs are the other attend kernels'. bf16 rows.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>

#include "kernels/cuda/mla_decode/attend_common.cuh"
#include "kernels/cuda/mla_decode/attend_wgmma_rows.cuh"
#include "kernels/cuda/mla_decode/attend_wgmma_ws.cuh"
#include "kernels/cuda/mla_decode/mla_decode.h"
#include "kernels/cuda/mla_decode/wgmma_lanes.h"
#include "kernels/cuda/ws_ring.h"
#include "kernels/cuda/mma_sm80.cuh"
#include "kernels/cuda/tma_sm90.cuh"
#include "kernels/cuda/wgmma_sm90.cuh"
#include "kernels/cuda/wgmma_sm90_mma.cuh"

namespace mlarun::ops::cuda {
namespace {

using namespace mla;
using namespace wgmma_sm90;

// The seesaw's own mbarriers (WsBarriers::extra) and exchange rows (64 floats each).
enum SeesawBarrier { kAReady, kBReady, kPAReady, kLAReady, kLBReady, kSeesawBarriers };
enum SeesawRows { kMA, kAlphaA, kMB, kBeta, kLA, kLB, kSeesawRowArrays };

__device__ __forceinline__ void arrive(const WsBarriers& bars, int which) {
  tma_sm90::mbarrier_arrive(bars.extra(which));
}
__device__ __forceinline__ void wait(const WsBarriers& bars, int which, int use) {
  tma_sm90::mbarrier_wait_bounded(bars.extra(which), ws::use_parity(use));
}

// The thread's two rows' values to / from an exchange array (one quad writes each row).
__device__ __forceinline__ void put_rows(float* rows, int lane, int r_lo, int r_hi, const float (&v)[2]) {
  if ((lane & 3) == 0) rows[r_lo] = v[0], rows[r_hi] = v[1];
}
__device__ __forceinline__ void get_rows(const float* rows, int r_lo, int r_hi, float (&v)[2]) {
  v[0] = rows[r_lo], v[1] = rows[r_hi];
}

// P (the A fragments of one step, bf16) times `scale` per row into the P tile at `tile` (slab 8 of a stage,
// K-major over the step's 64 tokens), fenced for the tensor cores.
__device__ __forceinline__ void store_p(unsigned char* tile, const uint32_t (&p)[kWgBlockN / 16][4], int lane, int r_lo,
                                        int r_hi, const float (&scale)[2]) {
#pragma unroll
  for (int kk = 0; kk < kWgBlockN / 16; ++kk)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int h = i & 1, r = h ? r_hi : r_lo, col = acc_col(lane, wg::p_element(kk, i));
      const float2 v = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&p[kk][i]));
      *reinterpret_cast<uint32_t*>(tile + wg::p_offset(r, col)) =
          mma_sm80::pack2<__nv_bfloat16>(v.x * scale[h], v.y * scale[h]);
    }
  fence_async_smem();
}

// O[64 x this warpgroup's 256 columns] += P . V of one step, P from registers or from a P tile.
__device__ __forceinline__ void pv_from_registers(float (&o)[128], const uint32_t (&p)[kWgBlockN / 16][4],
                                                  uint32_t stage_u32, int group) {
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) Mma<256>::rs<1>(o, p[kk], wg::v_desc(stage_u32, group, kk), 1);
  wgmma_commit();
}
__device__ __forceinline__ void pv_from_tile(float (&o)[128], uint32_t p_u32, uint32_t stage_u32, int group) {
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) Mma<256>::ss<1>(o, wg::p_desc(p_u32, kk), wg::v_desc(stage_u32, group, kk), 1);
  wgmma_commit();
}

struct Seesaw {
  static constexpr bool kPairedLoads = true;
  static constexpr int kEmptyArrivals = 128;  // lo halves are A's alone to release, hi halves B's
  static constexpr int kTileBytes = int(kWgSlabBytes);  // B's P tile
  static constexpr int kExtraBarriers = kSeesawBarriers, kExchangeFloats = kSeesawRowArrays * kWgRows;

  static __device__ __forceinline__ void run(const AttendArgs& a, const WsSmem& smem, int row0) {
    const int tid = threadIdx.x - kWsLoaders, lane = tid & 31, warp = (tid >> 5) & 3, group = tid >> 7;
    const bool is_a = group == 0;
    const int piece_end = a.part_piece_begin[blockIdx.x + 1];
    const int r_lo = acc_row(warp, lane, 0), r_hi = acc_row(warp, lane, 2);  // the same rows in A and B
    const WsBarriers& bars = smem.bars;
    float* const x = smem.exchange;
    // Steps, pieces with q, steps A scored (a_ready, p_a_ready), pairs (b_ready), pieces ended (l_a, l_b).
    int n = 0, np = 0, na = 0, nb = 0, ne = 0;
    for (int pi = a.part_piece_begin[blockIdx.x]; pi < piece_end; ++pi) {
      const PieceView pv = piece_view(a, pi);
      if (row0 >= pv.rows) continue;  // uniform over the CTA
      const int num_steps = (pv.num_tiles + 1) / 2;

      WgSoftmax sm;
      sm.start(a, pv, row0, r_lo, r_hi);
      float o[128];
#pragma unroll
      for (int e = 0; e < 128; ++e) o[e] = 0.f;
      if (num_steps > 0) {
        ws_wait_q(bars, np);
        if (!is_a && num_steps == 1) tma_sm90::mbarrier_arrive(bars.q_empty());  // B scores nothing here
      }
      const int last_scored = is_a ? (num_steps - 1) & ~1 : num_steps - 1 - (num_steps & 1);  // by this warpgroup

      for (int it = 0; it < num_steps; it += 2, n += 2) {
        const bool pair = it + 1 < num_steps;
        const int s0 = ws::stage_of(n, kWgStages), s1 = ws::stage_of(n + 1, kWgStages);
        const uint32_t st0 = smem.ring_u32 + uint32_t(s0 * kWgStageBytes);
        const uint32_t st1 = smem.ring_u32 + uint32_t(s1 * kWgStageBytes);
        const int tok0 = pv.tok_begin + it * kWgBlockN;
        float s[kWgBlockN / 2], mx[2], alpha[2], m_use[2];
        uint32_t p[kWgBlockN / 16][4];
        if (is_a) {
          ws_scores<false>(s, smem.q_u32, smem, s0, n);  // lo first: the loader's first half of the pair
          if (it == last_scored) tma_sm90::mbarrier_arrive(bars.q_empty());
          sm.row_max(s, tok0, lane, a.scale_log2, mx);
          sm.advance(mx, alpha, m_use);  // m = m_A, l scaled by alpha_A
          sm.probabilities(s, m_use, p);
          put_rows(x + kMA * kWgRows, lane, r_lo, r_hi, sm.m);
          put_rows(x + kAlphaA * kWgRows, lane, r_lo, r_hi, alpha);
          arrive(bars, kAReady);
          rescale_o(o, alpha);
          pv_from_registers(o, p, st0, 0);
          float beta[2] = {1.f, 1.f};
          if (pair) {
            wait(bars, kBReady, nb);
            get_rows(x + kBeta * kWgRows, r_lo, r_hi, beta);
            get_rows(x + kMB * kWgRows, r_lo, r_hi, sm.m);
          }
          wgmma_wait<0>();
          fence_registers(o);
          tma_sm90::mbarrier_arrive(bars.empty(s0, kLoHalf));  // A's last read of step n's lo half
          // P_n against m_B, for B's columns, into slab 8 (k_pe) of step n's stage: the hi half, which B releases
          // after reading it. (B's P tile has shared memory of its own: the lo half is A's to release.)
          store_p(smem.ring + (wg::p_tile_of_stage(st0) - smem.ring_u32), p, lane, r_lo, r_hi, beta);
          arrive(bars, kPAReady);
          if (pair) {
            rescale_o(o, beta);
            sm.l[0] *= beta[0], sm.l[1] *= beta[1];
            ws_wait_full(bars, s1, kLoHalf, n + 1);  // (landed: B scored it)
            pv_from_tile(o, smem.tile_u32, st1, 0);
            wgmma_wait<0>();
            fence_registers(o);
            tma_sm90::mbarrier_arrive(bars.empty(s1, kLoHalf));  // the last read of step n + 1's lo half (B's P too)
          }
        } else {
          float alpha_a[2];
          if (pair) {
            ws_scores<true>(s, smem.q_u32, smem, s1, n + 1);  // hi first: the loader's second half of the pair
            if (it + 1 == last_scored) tma_sm90::mbarrier_arrive(bars.q_empty());
            sm.row_max(s, tok0 + kWgBlockN, lane, a.scale_log2, mx);
          }
          wait(bars, kAReady, na);
          get_rows(x + kAlphaA * kWgRows, r_lo, r_hi, alpha_a);
          get_rows(x + kMA * kWgRows, r_lo, r_hi, sm.m);  // B's m was A's before this step: now m_A
          sm.l[0] *= alpha_a[0], sm.l[1] *= alpha_a[1];
          if (pair) {
            sm.advance(mx, alpha, m_use);  // m = m_B, alpha = beta, l scaled by it
            sm.probabilities(s, m_use, p);
            put_rows(x + kBeta * kWgRows, lane, r_lo, r_hi, alpha);
            put_rows(x + kMB * kWgRows, lane, r_lo, r_hi, sm.m);
            const float one[2] = {1.f, 1.f};
            // Over the last pair's P tile: A has read it, since these scores needed a lo half A released after.
            store_p(smem.tile, p, lane, r_lo, r_hi, one);
            arrive(bars, kBReady);
            alpha_a[0] *= alpha[0], alpha_a[1] *= alpha[1];
          }
          rescale_o(o, alpha_a);
          if (pair) pv_from_registers(o, p, st1, 1);
          wait(bars, kPAReady, na);
          ws_wait_full(bars, s0, kHiHalf, n);  // (landed: A scored it)
          pv_from_tile(o, wg::p_tile_of_stage(st0), st0, 1);
          if (pair) {
            wgmma_wait<1>();  // the product from registers
            tma_sm90::mbarrier_arrive(bars.empty(s1, kHiHalf));  // B's last read of step n + 1's hi half
          }
          wgmma_wait<0>();
          fence_registers(o);
          tma_sm90::mbarrier_arrive(bars.empty(s0, kHiHalf));  // the last read of step n's hi half (A's P too)
        }
        ++na;
        nb += pair;
      }
      n -= (num_steps & 1);  // an odd count's last "pair" was one step
      np += num_steps > 0;

      // Row sums: each warpgroup's share, against the same final m. B writes its share only once it has A's (so A
      // has read B's last one) and lets A go on only then (so A's next share cannot overwrite this one unread).
      const float mine[2] = {quad_sum(sm.l[0]), quad_sum(sm.l[1])};
      float other[2], lsum[2];
      if (is_a) {
        put_rows(x + kLA * kWgRows, lane, r_lo, r_hi, mine);
        arrive(bars, kLAReady);
        wait(bars, kLBReady, ne);
        get_rows(x + kLB * kWgRows, r_lo, r_hi, other);
      } else {
        wait(bars, kLAReady, ne);
        get_rows(x + kLA * kWgRows, r_lo, r_hi, other);
        put_rows(x + kLB * kWgRows, lane, r_lo, r_hi, mine);
        arrive(bars, kLBReady);
      }
      ++ne;
      lsum[0] = mine[0] + other[0], lsum[1] = mine[1] + other[1];
      finish_wg_rows(a, pi, pv, piece_is_whole(a, pv), row0, r_lo, r_hi, group, lane, lsum, sm.m, o);
    }
  }
};

}  // namespace

namespace mla {

void launch_mla_decode_attend_wgmma_seesaw(const MlaDecodeParams& p, const WorkspaceLayout& w, cudaStream_t stream) {
  launch_ws_attend<Seesaw>(p, w, stream);
}

}  // namespace mla
}  // namespace mlarun::ops::cuda
