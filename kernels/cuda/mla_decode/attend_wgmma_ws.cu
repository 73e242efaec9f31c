// The MLA decode attend kernel on wgmma with warp specialization (AttendKernel::WgmmaWarpSpecialized, sm_90a):
// attend_wgmma.cu's unsplit kernel (64 rows x 64 cached tokens a step, each computing warpgroup scores all 64
// tokens with m64n64k16 and multiplies P, from registers, by its 256 of the 512 latent columns), with its two
// warpgroups no longer in step. Why: ncu showed that kernel's warps with nothing to issue most of the time, the two
// warpgroups waiting at the same CTA-wide barriers in turn with the loads, so the tensor cores idle through every
// softmax. Here
//   warpgroup 0 loads: per piece the q rows, then each step's cached tile into a two-stage ring, half a stage at
//            a time (attend_wgmma_ws.cuh: cp.async, one row per two threads, the block table read per row; each
//            half's `full` mbarrier completes when its copies land);
//   warpgroups 1 and 2 compute: each scores a step's tile half by half as the halves land, and arrives on both
//            halves' `empty` after its last MMA reading the stage, which is what the loader waits for before
//            refilling it. Nothing else joins them, so one's softmax can run while the other's MMAs hold the
//            tensor cores.
// q gets a pair of barriers of its own (q_full, q_empty) per piece. Schedule, masks, softmax
// (attend_wgmma_rows.cuh), partials and whole-piece outputs are the other attend kernels'. bf16 rows.
#include <cuda_runtime.h>

#include "kernels/cuda/mla_decode/attend_common.cuh"
#include "kernels/cuda/mla_decode/attend_wgmma_rows.cuh"
#include "kernels/cuda/mla_decode/attend_wgmma_ws.cuh"
#include "kernels/cuda/mla_decode/mla_decode.h"
#include "kernels/cuda/mla_decode/wgmma_lanes.h"
#include "kernels/cuda/ws_ring.h"
#include "kernels/cuda/tma_sm90.cuh"
#include "kernels/cuda/wgmma_sm90.cuh"
#include "kernels/cuda/wgmma_sm90_mma.cuh"

namespace mlarun::ops::cuda {
namespace {

using namespace mla;
using namespace wgmma_sm90;

// Warpgroups 1 and 2 (`group` 0 and 1 here): the unsplit wgmma kernel's steps, each warpgroup on its own.
struct OwnSteps {
  static constexpr bool kPairedLoads = false;
  static constexpr int kEmptyArrivals = kWsComputers;  // both warpgroups read all of every stage
  static constexpr int kTileBytes = 0, kExtraBarriers = 0, kExchangeFloats = 0;

  static __device__ __forceinline__ void run(const AttendArgs& a, const WsSmem& smem, int row0) {
    const int tid = threadIdx.x - kWsLoaders, lane = tid & 31, warp = (tid >> 5) & 3, group = tid >> 7;
    const int piece_end = a.part_piece_begin[blockIdx.x + 1];
    const int r_lo = acc_row(warp, lane, 0), r_hi = acc_row(warp, lane, 2);  // this thread's two rows (S and O)
    const WsBarriers& bars = smem.bars;
    int n = 0, np = 0;  // tiles and pieces taken so far
    for (int pi = a.part_piece_begin[blockIdx.x]; pi < piece_end; ++pi) {
      const PieceView pv = piece_view(a, pi);
      if (row0 >= pv.rows) continue;  // uniform over the CTA
      const int num_steps = (pv.num_tiles + 1) / 2;  // 64-token steps over the scheduler's 32-token tiles

      WgSoftmax sm;
      sm.start(a, pv, row0, r_lo, r_hi);
      float o[128];
#pragma unroll
      for (int e = 0; e < 128; ++e) o[e] = 0.f;
      if (num_steps > 0) ws_wait_q(bars, np);

      for (int it = 0; it < num_steps; ++it, ++n) {
        const int stage = ws::stage_of(n, kWgStages);
        const uint32_t stage_u32 = smem.ring_u32 + uint32_t(stage * kWgStageBytes);
        float s[kWgBlockN / 2];
        ws_scores<false>(s, smem.q_u32, smem, stage, n);
        if (it + 1 == num_steps) tma_sm90::mbarrier_arrive(bars.q_empty());  // the piece's last read of q

        float mx[2], alpha[2], m_use[2];
        sm.row_max(s, pv.tok_begin + it * kWgBlockN, lane, a.scale_log2, mx);
        sm.advance(mx, alpha, m_use);
        uint32_t p[kWgBlockN / 16][4];
        sm.probabilities(s, m_use, p);
        rescale_o(o, alpha);

        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) Mma<256>::rs<1>(o, p[kk], wg::v_desc(stage_u32, group, kk), 1);
        wgmma_commit();
        wgmma_wait<0>();
        fence_registers(o);
        tma_sm90::mbarrier_arrive(bars.empty(stage, kLoHalf));  // this warpgroup's last read of the stage is done
        tma_sm90::mbarrier_arrive(bars.empty(stage, kHiHalf));
      }
      np += num_steps > 0;  // a piece without steps (the scheduler makes none) reads no q: zeros and -inf below

      // The piece's result: final rows when it is its sequence's only piece, else a partial. Each warpgroup saw
      // every token, so its row sums are whole.
      const float lsum[2] = {quad_sum(sm.l[0]), quad_sum(sm.l[1])};
      finish_wg_rows(a, pi, pv, piece_is_whole(a, pv), row0, r_lo, r_hi, group, lane, lsum, sm.m, o);
    }
  }
};

}  // namespace

namespace mla {

void launch_mla_decode_attend_wgmma_ws(const MlaDecodeParams& p, const WorkspaceLayout& w, cudaStream_t stream) {
  launch_ws_attend<OwnSteps>(p, w, stream);
}

}  // namespace mla
}  // namespace mlarun::ops::cuda
