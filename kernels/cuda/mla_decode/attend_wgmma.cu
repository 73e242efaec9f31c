// The MLA decode attend kernel on Hopper's warpgroup MMA (wgmma, sm_90a), FlashMLA's shape of the problem: a CTA
// takes 64 (query token, head) rows of one sequence's piece and streams its cached rows 64 tokens at a time.
//   scores  S[64 x 64] = Q . K^T over 576: 36 wgmma m64n64k16, Q and the cached tile both K-major in nine
//           128-byte-swizzled slabs of 64 columns (kernels/cuda/wgmma_sm90.cuh); each of the two warpgroups
//           computes all of S, so the softmax needs nothing from the other;
//   softmax online, base 2, fp32, in registers: a thread holds two rows x 16 tokens, a row's four threads (one
//           quad) exchange maxima by shuffles, the row sums are added over the quad once per piece;
//   P.V     O[64 x 512] += P . V: P from registers (the score accumulators are the A fragments), V the same
//           slabs read N-major; warpgroup g owns columns [256 g, 256 g + 256) (128 fp32 accumulators a thread).
// The cached tiles come by cp.async into a two-stage ring (placed into the slabs as they land), published to the
// tensor cores by fence.proxy.async and one barrier per step; a step's MMAs are waited for before that barrier, so
// the stage they read is free for the loads issued after it, which go out while the tensor cores compute the
// step's scores. Schedule, masks, partials and whole-piece outputs are the other attend kernels'. bf16 rows
// (quantized rows run attend_mma.cu). The wgmma probe (kernels/cuda/wgmma_probe.h) checks its building blocks
// first. On an H100 the split variant decodes 128 heads 2.6x faster than the 32-row kernel: AttendKernel::Auto's
// choice from 64 bf16 rows up (NOTES.md in this folder).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>

#include <cuda_runtime_api.h>

#include "kernels/cuda/mla_decode/attend_common.cuh"
#include "kernels/cuda/mla_decode/attend_wgmma_rows.cuh"
#include "kernels/cuda/mla_decode/mla_decode.h"
#include "kernels/cuda/mla_decode/wgmma_lanes.h"
#include "kernels/cuda/mma_sm80.cuh"
#include "kernels/cuda/wgmma_sm90.cuh"
#include "kernels/cuda/wgmma_sm90_mma.cuh"
#include "runtime/cuda_check.h"

namespace mlarun::ops::cuda {
namespace {

using namespace mla;
using namespace wgmma_sm90;

constexpr Format kF = Format::Bf16;

// kSplit: each warpgroup scores only its half of the step's 64 tokens (m64n32k16), the two exchange their row
// maxima and write P into one shared slab; P.V takes a warpgroup's own half of P from its registers and, after the
// barrier that publishes the slab, the other half from there: a third fewer MMAs per step than every warpgroup
// scoring all 64 tokens, for two more barriers.
template <bool kSplit>
__global__ void __launch_bounds__(kWgThreads, 1) mla_decode_attend_wgmma_kernel(const AttendArgs a) {
  constexpr int kScoreN = kSplit ? kWgBlockN / 2 : kWgBlockN;  // tokens a warpgroup scores
  constexpr int kSRegs = kScoreN / 2;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const uint32_t raw_u32 = mma_sm80::smem_u32(smem_raw);
  const uint32_t q_u32 = (raw_u32 + kAtomBytes - 1) & ~(kAtomBytes - 1);  // slabs need 1024-byte alignment
  const uint32_t ring_u32 = q_u32 + uint32_t(kWgQBytes);
  const uint32_t p_u32 = ring_u32 + uint32_t(kWgStages * kWgStageBytes);  // kSplit: P [64 rows x 64 tokens]
  unsigned char* q_s = smem_raw + (q_u32 - raw_u32);
  unsigned char* ring = q_s + kWgQBytes;
  unsigned char* p_s = ring + kWgStages * kWgStageBytes;
  float* max_s = reinterpret_cast<float*>(p_s + kWgSlabBytes);  // kSplit: [2 warpgroups][64 rows]
  float* sum_s = max_s + 2 * kWgRows;                            // kSplit: [2][64] row sums at the end

  const int tid = threadIdx.x, lane = tid & 31, warp = (tid >> 5) & 3, group = tid >> 7;
  const int row0 = blockIdx.y * kWgRows;
  const int piece_end = a.part_piece_begin[blockIdx.x + 1];
  const int r_lo = acc_row(warp, lane, 0), r_hi = acc_row(warp, lane, 2);  // this thread's two rows (S and O)
  const int tok_lane = wg::score_tok0(kSplit, group);  // the first of the step's tokens this warpgroup scores

  for (int pi = a.part_piece_begin[blockIdx.x]; pi < piece_end; ++pi) {
    const PieceView pv = piece_view(a, pi);
    const int rows = pv.rows;
    if (row0 >= rows) continue;  // uniform over the CTA
    const int num_steps = (pv.num_tiles + 1) / 2;  // 64-token steps over the scheduler's 32-token tiles

    // Step 0's cached tile and the q rows (zeros past the sequence's rows): one commit group.
    load_kv_rows<kF, kWgBlockN, kWgThreads>(a, ring, pv.seq, pv.tok_begin, pv.tok_end, SlabRows{});
    load_q_rows<kWgThreads>(a, pv, row0, q_s, tid);
    cp_async_commit();

    WgSoftmax sm;
    sm.start(a, pv, row0, r_lo, r_hi);
    float o[128];
#pragma unroll
    for (int e = 0; e < 128; ++e) o[e] = 0.f;

    for (int it = 0; it < num_steps; ++it) {
      cp_async_wait<0>();  // this thread's pieces of step it (and of q) have landed
      fence_async_smem();  // ... where the tensor cores will read them
      __syncthreads();     // everyone's; and both warpgroups are done with step it - 1, so its stage is free
      const uint32_t stage_u32 = ring_u32 + uint32_t((it % kWgStages) * kWgStageBytes);
      const int tok0 = pv.tok_begin + it * kWgBlockN + tok_lane;  // token of this warpgroup's score column 0

      float s[kSRegs];
#pragma unroll
      for (int e = 0; e < kSRegs; ++e) s[e] = 0.f;
      wgmma_fence();
#pragma unroll
      for (int slab = 0; slab < kWgSlabs; ++slab)
#pragma unroll
        for (int k = 0; k < 4; ++k)
          Mma<kScoreN>::template ss<0>(s, wg::q_desc(q_u32, slab, k), wg::k_desc(stage_u32, slab, k, tok_lane),
                                       slab + k > 0);
      wgmma_commit();
      // The next step's loads are issued while the tensor cores compute the scores: they fill the other stage,
      // whose last readers (step it - 1's P.V) were waited for before the barrier above.
      if (it + 1 < num_steps)
        load_kv_rows<kF, kWgBlockN, kWgThreads>(a, ring + ((it + 1) % kWgStages) * kWgStageBytes, pv.seq,
                                                pv.tok_begin + (it + 1) * kWgBlockN, pv.tok_end, SlabRows{});
      cp_async_commit();
      if (const int ahead = (a.l2_prefetch_tiles + 1) / 2; ahead > 0 && it + 1 + ahead < num_steps)  // in steps
        prefetch_kv_rows_l2<kF, kWgBlockN, kWgThreads>(a, pv.seq, pv.tok_begin + (it + 1 + ahead) * kWgBlockN,
                                                       pv.tok_end);
      wgmma_wait<0>();
      fence_registers(s);

      // Online softmax of the thread's two rows.
      float mx[2];
      sm.row_max(s, tok0, lane, a.scale_log2, mx);
      if constexpr (kSplit) {  // the other warpgroup's maxima over its tokens
        if ((lane & 3) == 0) max_s[group * kWgRows + r_lo] = mx[0], max_s[group * kWgRows + r_hi] = mx[1];
        __syncthreads();
        mx[0] = fmaxf(mx[0], max_s[(1 - group) * kWgRows + r_lo]);
        mx[1] = fmaxf(mx[1], max_s[(1 - group) * kWgRows + r_hi]);
      }
      float alpha[2], m_use[2];
      sm.advance(mx, alpha, m_use);
      uint32_t p[kScoreN / 16][4];
      sm.probabilities(s, m_use, p);
      if constexpr (kSplit) {  // this warpgroup's 32 token columns of the shared P slab (K-major for P.V)
#pragma unroll
        for (int kk = 0; kk < kScoreN / 16; ++kk)
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            const int r = (i & 1) ? r_hi : r_lo, col = tok_lane + acc_col(lane, wg::p_element(kk, i));
            *reinterpret_cast<uint32_t*>(p_s + wg::p_offset(r, col)) = p[kk][i];
          }
        fence_async_smem();
      }
      rescale_o(o, alpha);

      // P.V, this warpgroup's 256 columns. Split: its own tokens' half from the P in its registers first, so the
      // tensor cores have work while the barrier waits for the other warpgroup's half of the P slab.
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < kScoreN / 16; ++kk) {
        const int v_kk = kSplit ? wg::split_pv_kstep(group, kk) : kk;
        Mma<256>::rs<1>(o, p[kk], wg::v_desc(stage_u32, group, v_kk), 1);
      }
      if constexpr (kSplit) {
        __syncthreads();  // P complete for the tensor cores
#pragma unroll
        for (int i = kScoreN / 16; i < kWgBlockN / 16; ++i) {
          const int kk = wg::split_pv_kstep(group, i);
          Mma<256>::ss<1>(o, wg::p_desc(p_u32, kk), wg::v_desc(stage_u32, group, kk), 1);
        }
      }
      wgmma_commit();
      wgmma_wait<0>();  // before the next step's barrier frees this stage (and P)
      fence_registers(o);
    }
    cp_async_wait<0>();  // only an empty group can be pending here

    // The piece's result: final rows when it is its sequence's only piece, else a partial (as the other kernels).
    const bool whole = piece_is_whole(a, pv);
    float lsum[2] = {quad_sum(sm.l[0]), quad_sum(sm.l[1])};
    if constexpr (kSplit) {  // the other warpgroup's share of the row sums (its tokens)
      if ((lane & 3) == 0) sum_s[group * kWgRows + r_lo] = lsum[0], sum_s[group * kWgRows + r_hi] = lsum[1];
      __syncthreads();
      lsum[0] += sum_s[(1 - group) * kWgRows + r_lo];
      lsum[1] += sum_s[(1 - group) * kWgRows + r_hi];
    }
    finish_wg_rows(a, pi, pv, whole, row0, r_lo, r_hi, group, lane, lsum, sm.m, o);
    __syncthreads();  // q, the ring, P and the row buffers are rewritten by the next piece
  }
}

}  // namespace

namespace mla {

void launch_mla_decode_attend_wgmma(const MlaDecodeParams& p, const WorkspaceLayout& w, cudaStream_t stream) {
  MLARUN_CHECK(p.kv_format == Format::Bf16, "mla_decode: the wgmma attend kernel reads bf16 rows, not ",
               mla_kv_format_name(p.kv_format));
  const AttendArgs a = attend_args(p, w);
  const dim3 grid = attend_grid(p, w);
  if (p.attend == AttendKernel::WgmmaSplit) {
    allow_dynamic_smem<mla_decode_attend_wgmma_kernel<true>>(kWgSplitSmemBytes);
    mla_decode_attend_wgmma_kernel<true><<<grid, kWgThreads, kWgSplitSmemBytes, stream>>>(a);
  } else {
    allow_dynamic_smem<mla_decode_attend_wgmma_kernel<false>>(kWgSmemBytes);
    mla_decode_attend_wgmma_kernel<false><<<grid, kWgThreads, kWgSmemBytes, stream>>>(a);
  }
  MLARUN_CUDA_CHECK(cudaGetLastError());
}

}  // namespace mla
}  // namespace mlarun::ops::cuda
