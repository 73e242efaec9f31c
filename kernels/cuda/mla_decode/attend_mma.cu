// The MLA decode attend kernel on tensor cores (bf16 caches): the SIMT kernel's CTA tiling, schedule, masks and
// partials (attend.cu), with both products on mma.sync m16n8k16 (bf16 in, fp32 accumulators). Per tile of
// kBlockN = 32 cached rows, for the CTA's kRowsPerCta = 32 (query token, head) rows:
//   scores  S[32 x 32] = Q . K^T over 576: warp w computes the 16 x 8 tile (rows 16 (w / 4), tokens 8 (w % 4)),
//           36 k-steps, Q and K fragments by ldmatrix from the bf16 q tile and the cp.async ring, into smem;
//   softmax online, base 2, fp32, exactly the SIMT kernel's (warp w owns rows w + 8j, one token per lane); P is
//           rounded to bf16 for the product, the row sums l stay fp32 (FlashAttention's convention);
//   P.V     O[32 x 512] += P . V: warp w owns columns [64 w, 64 w + 64), both m16 row tiles, 2 k-steps of 16
//           tokens; V fragments by ldmatrix.trans straight from the cached rows.
// Every cached row is read from memory once per CTA and serves all 32 rows. Off by default until a GPU has run
// its tests: MlaDecodeParams::tensor_cores (NOTES.md in this folder).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cmath>

#include <cuda_runtime_api.h>

#include "kernels/cuda/mla_decode/attend_common.cuh"
#include "kernels/cuda/mla_decode/mla_decode.h"
#include "kernels/cuda/mla_decode/mma_lanes.h"
#include "kernels/cuda/mma_sm80.cuh"
#include "runtime/cuda_check.h"

namespace mlarun::ops::cuda {
namespace {

using namespace mla;
using namespace mma_sm80;
using Bf16Row = RowOf<Format::Bf16>;

__global__ void __launch_bounds__(kThreads, 1) mla_decode_attend_mma_kernel(const AttendArgs a) {
  extern __shared__ __align__(16) unsigned char smem[];
  uint16_t* q_s = reinterpret_cast<uint16_t*>(smem);                              // [32][kMmaQStride] bf16
  unsigned char* kv_s = smem + kSmemMmaQBytes;                                    // [stages][32] cached rows
  float* s_s = reinterpret_cast<float*>(kv_s + kSmemKvBytes);                     // [32][kMmaSStride] scores
  uint16_t* p_s = reinterpret_cast<uint16_t*>(smem + kSmemMmaQBytes + kSmemKvBytes + kSmemMmaSBytes);  // [32][40]
  float* alpha_s = reinterpret_cast<float*>(reinterpret_cast<unsigned char*>(p_s) + kSmemMmaPBytes);  // [32]
  float* inv_l_s = alpha_s + kRowsPerCta;                                                            // [32]

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int row0 = blockIdx.y * kRowsPerCta;
  const int piece_end = a.part_piece_begin[blockIdx.x + 1];
  // The lanes' ldmatrix addresses and accumulator elements (mma_lanes.h, checked on the CPU by emulation).
  const int s_m = lanes::score_row0(warp), s_n = lanes::score_tok0(warp), pv_col0 = lanes::pv_col0(warp);
  const uint32_t q_lane = smem_u32(q_s + (s_m + lanes::a_row(lane)) * kMmaQStride + lanes::a_col(lane));
  const int k_lane_off = (s_n + lanes::k_tok(lane)) * Bf16Row::kSmemStride + lanes::k_col(lane) * 2;  // bytes
  const uint32_t p_lane = smem_u32(p_s + lanes::a_row(lane) * kMmaPStride + lanes::a_col(lane));
  const int v_lane_off = lanes::v_tok(lane) * Bf16Row::kSmemStride + (pv_col0 + lanes::v_col(lane)) * 2;  // bytes

  for (int pi = a.part_piece_begin[blockIdx.x]; pi < piece_end; ++pi) {
    const PieceView pv = piece_view(a, pi);
    const int q_begin = pv.q_begin, rows = pv.rows;
    if (row0 >= rows) continue;  // uniform over the CTA

    load_kv_tile<Format::Bf16>(a, kv_s, pv.seq, pv.tok_begin, pv.tok_end);
    cp_async_commit();

    // q rows [row0, row0 + 32) as stored (bf16), zeros past the sequence's rows.
    const uint16_t* q_src = a.q + (int64_t(q_begin) * a.num_heads + row0) * kHeadDimQK;
    for (int c = tid; c < kRowsPerCta * (kHeadDimQK / 8); c += kThreads) {
      const int r = c / (kHeadDimQK / 8), col = (c % (kHeadDimQK / 8)) * 8;
      const uint4 v = row0 + r < rows ? __ldg(reinterpret_cast<const uint4*>(q_src + r * kHeadDimQK + col))
                                      : make_uint4(0u, 0u, 0u, 0u);
      *reinterpret_cast<uint4*>(q_s + r * kMmaQStride + col) = v;
    }

    SoftmaxRows softmax;  // this warp's rows
    softmax.start(a, pv, row0, warp);
    float acc[2][kMmaColsPerWarp / 8][4];  // [m16 tile][n8 tile][fragment]
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int nt = 0; nt < kMmaColsPerWarp / 8; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[mt][nt][e] = 0.f;

    for (int it = 0; it < pv.num_tiles; ++it) {
      const int tok0 = pv.tok_begin + it * kBlockN;
      const unsigned char* kv = ring_tile<Format::Bf16>(a, kv_s, it, pv);  // tile `it` (and q_s) visible to all
      const uint32_t kv_u32 = smem_u32(kv);

      // S tile of this warp: 36 k-steps of 16 over the 576 values, two per iteration.
      float sc[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll 3
      for (int k = 0; k < kHeadDimQK; k += 32) {
        uint32_t qa0[4], qa1[4], kb[4];
        ldmatrix_x4(qa0, q_lane + k * 2);
        ldmatrix_x4(qa1, q_lane + (k + 16) * 2);
        ldmatrix_x4(kb, kv_u32 + k_lane_off + k * 2);
        mma_16816<__nv_bfloat16>(sc, qa0, kb[0], kb[1]);
        mma_16816<__nv_bfloat16>(sc, qa1, kb[2], kb[3]);
      }
#pragma unroll
      for (int e = 0; e < 4; ++e)
        s_s[(s_m + lanes::c_row(lane, e)) * kMmaSStride + s_n + lanes::c_col(lane, e)] = sc[e];
      __syncthreads();  // the 32 x 32 scores are complete

      // The SIMT kernel's online softmax; P rounded to bf16 for the product.
#pragma unroll
      for (int j = 0; j < kScoreRowsPerWarp; ++j) {
        const int r = warp + kWarps * j;
        float alpha;
        const float p = softmax.step(j, s_s[r * kMmaSStride + lane], tok0, lane, a.scale_log2, alpha);
        p_s[r * kMmaPStride + lane] = __bfloat16_as_ushort(__float2bfloat16_rn(p));
        if (lane == 0) alpha_s[r] = alpha;
      }
      __syncthreads();  // p_s and alpha_s complete

#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
        const float a_lo = alpha_s[mt * 16 + lanes::c_row(lane, 0)];  // accumulator elements 0, 1
        const float a_hi = alpha_s[mt * 16 + lanes::c_row(lane, 2)];  // and 2, 3
#pragma unroll
        for (int nt = 0; nt < kMmaColsPerWarp / 8; ++nt) {
          acc[mt][nt][0] *= a_lo, acc[mt][nt][1] *= a_lo;
          acc[mt][nt][2] *= a_hi, acc[mt][nt][3] *= a_hi;
        }
      }
#pragma unroll
      for (int ks = 0; ks < kBlockN; ks += 16) {
        uint32_t pa[2][4];
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) ldmatrix_x4(pa[mt], p_lane + (mt * 16 * kMmaPStride + ks) * 2);
#pragma unroll
        for (int np = 0; np < kMmaColsPerWarp / 16; ++np) {  // pairs of n8 tiles
          uint32_t vb[4];
          ldmatrix_x4_trans(vb, kv_u32 + v_lane_off + ks * Bf16Row::kSmemStride + np * 16 * 2);
#pragma unroll
          for (int mt = 0; mt < 2; ++mt) {
            mma_16816<__nv_bfloat16>(acc[mt][2 * np], pa[mt], vb[0], vb[1]);
            mma_16816<__nv_bfloat16>(acc[mt][2 * np + 1], pa[mt], vb[2], vb[3]);
          }
        }
      }
      __syncthreads();  // the stage, s_s and p_s may be overwritten now
    }

    // The piece's result (final when it is its sequence's only piece, else a partial), as the SIMT kernel.
    const bool whole = piece_is_whole(a, pv);
    softmax.finish(a, pi, pv, whole, row0, warp, lane, inv_l_s);
    __syncthreads();
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int half = 0; half < 2; ++half) {  // accumulator elements {0, 1}, then {2, 3}: one row, two columns
        const int r = mt * 16 + lanes::c_row(lane, 2 * half);
        if (row0 + r >= rows) continue;
        const float inv = inv_l_s[r];
#pragma unroll
        for (int nt = 0; nt < kMmaColsPerWarp / 8; ++nt) {
          const float o[2] = {acc[mt][nt][2 * half] * inv, acc[mt][nt][2 * half + 1] * inv};
          store_o<2>(a, pi, pv, whole, row0 + r, pv_col0 + nt * 8 + lanes::c_col(lane, 0), o);
        }
      }
    __syncthreads();  // q_s and inv_l_s are rewritten by the next piece
  }
}

}  // namespace

namespace mla {

void launch_mla_decode_attend_mma(const MlaDecodeParams& p, const WorkspaceLayout& w, cudaStream_t stream) {
  allow_large_smem<mla_decode_attend_mma_kernel>(kSmemMmaBytes);
  const dim3 grid(unsigned(w.num_parts), unsigned(m_tiles(p.num_heads, p.max_q_per_seq)));
  mla_decode_attend_mma_kernel<<<grid, kThreads, kSmemMmaBytes, stream>>>(attend_args(p, w));
  MLARUN_CUDA_CHECK(cudaGetLastError());
}

}  // namespace mla
}  // namespace mlarun::ops::cuda
