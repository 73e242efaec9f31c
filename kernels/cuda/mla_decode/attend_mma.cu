// The MLA decode attend kernel on tensor cores: the SIMT kernel's CTA tiling, schedule, masks and partials
// (attend.cu), with both products on mma.sync m16n8k16 (bf16 in, fp32 accumulators). Per tile of kBlockN = 32
// cached rows, for the CTA's kRowsPerCta = 32 (query token, head) rows:
//   scores  S[32 x 32] = Q . K^T over 576: warp w computes the 16 x 8 tile (rows 16 (w / 4), tokens 8 (w % 4)),
//           Q and K fragments by ldmatrix from the bf16 q tile and the cached rows, into smem;
//   softmax online, base 2, fp32, the SIMT kernel's (warp w owns rows w + 8j, one token per lane); P is rounded
//           to bf16 for the product, the row sums l stay fp32 (FlashAttention's convention);
//   P.V     O[32 x 512] += P . V: warp w owns columns [64 w, 64 w + 64), both m16 row tiles, 2 k-steps of 16
//           tokens; V fragments by ldmatrix.trans straight from the cached rows.
// fp8/int8 rows (kernels/kv_quant.h) keep their bytes in the ring; each tile's 512 codes are widened to bf16 in a
// buffer of their own (exact), each 128-value tile's scale multiplies its share of a score after the products,
// and P.V runs per 128-column tile with P' = p x the token's scale (what the SIMT kernel folds in too); k_pe is
// bf16 and read from the ring. Every cached row is read from memory once per CTA and serves all 32 rows. On by
// default since its tests passed on a GPU: MlaDecodeParams::attend (NOTES.md in this folder).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

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

// Shared memory of the kernel for format F: q | ring | [codes as bf16] | scores | P (one, or one per scale tile)
// | alpha, 1/l.
template <Format F>
struct MmaSmem {
  static constexpr bool kQuant = F != Format::Bf16;
  static constexpr int kPTiles = kQuant ? kQuantTiles : 1;
  static constexpr size_t kRing = kSmemMmaQBytes;
  static constexpr size_t kCodes = kRing + RowOf<F>::kSmemKv;
  static constexpr size_t kScores = kCodes + (kQuant ? kSmemMmaCBytes : 0);
  static constexpr size_t kP = kScores + kSmemMmaSBytes;
  static constexpr size_t kRows = kP + kPTiles * kSmemMmaPBytes;
  static constexpr size_t kBytes = kRows + kSmemRowBytes;
};
static_assert(MmaSmem<Format::Bf16>::kBytes == kSmemMmaBytes && MmaSmem<Format::Fp8>::kBytes == kSmemMmaQuantBytes,
              "config.h's sizes");

template <Format F>
__global__ void __launch_bounds__(kThreads, 1) mla_decode_attend_mma_kernel(const AttendArgs a) {
  using S = MmaSmem<F>;
  extern __shared__ __align__(16) unsigned char smem[];
  uint16_t* q_s = reinterpret_cast<uint16_t*>(smem);                      // [32][kMmaQStride] bf16
  unsigned char* kv_s = smem + S::kRing;                                  // [stages][32] cached rows as stored
  uint16_t* c_s = reinterpret_cast<uint16_t*>(smem + S::kCodes);          // quantized: [32][kMmaCStride] bf16
  float* s_s = reinterpret_cast<float*>(smem + S::kScores);               // [32][kMmaSStride] scores
  uint16_t* p_s = reinterpret_cast<uint16_t*>(smem + S::kP);              // [kPTiles][32][kMmaPStride] bf16
  float* alpha_s = reinterpret_cast<float*>(smem + S::kRows);             // [32]
  float* inv_l_s = alpha_s + kRowsPerCta;                                 // [32]
  constexpr int kRowStride = RowOf<F>::kSmemStride;                       // bytes per cached row in the ring
  constexpr int kLatStride = S::kQuant ? kMmaCStride * 2 : kRowStride;    // bytes per row of the bf16 latent

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int row0 = blockIdx.y * kRowsPerCta;
  const int piece_end = a.part_piece_begin[blockIdx.x + 1];
  // The lanes' ldmatrix addresses and accumulator elements (mma_lanes.h, checked on the CPU by emulation).
  const int s_m = lanes::score_row0(warp), s_n = lanes::score_tok0(warp), pv_col0 = lanes::pv_col0(warp);
  const uint32_t q_lane = smem_u32(q_s + (s_m + lanes::a_row(lane)) * kMmaQStride + lanes::a_col(lane));
  const int k_tok = s_n + lanes::k_tok(lane), k_col = lanes::k_col(lane);
  const int k_lat_off = k_tok * kLatStride + k_col * 2;  // bytes into the latent (ring or widened codes)
  const int k_rope_off = k_tok * kRowStride + (S::kQuant ? kQuantRopeOffset : 2 * kKvLoraRank) + k_col * 2;
  const int p_tile = S::kQuant ? pv_col0 / kQuantTile : 0;  // the P this warp's columns take
  const uint32_t p_lane =
      smem_u32(p_s + (p_tile * kRowsPerCta + lanes::a_row(lane)) * kMmaPStride + lanes::a_col(lane));
  const int v_lane_off = lanes::v_tok(lane) * kLatStride + (pv_col0 + lanes::v_col(lane)) * 2;  // bytes
  const uint32_t c_u32 = smem_u32(c_s);

  for (int pi = a.part_piece_begin[blockIdx.x]; pi < piece_end; ++pi) {
    const PieceView pv = piece_view(a, pi);
    const int q_begin = pv.q_begin, rows = pv.rows;
    if (row0 >= rows) continue;  // uniform over the CTA

    load_kv_tile<F>(a, kv_s, pv.seq, pv.tok_begin, pv.tok_end);
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
      const unsigned char* kv = ring_tile<F>(a, kv_s, it, pv);  // tile `it` (and q_s) visible to all
      const uint32_t kv_u32 = smem_u32(kv);
      if constexpr (S::kQuant) {
        widen_codes<F>(kv, c_s, tid);
        __syncthreads();
      }
      const uint32_t lat_u32 = S::kQuant ? c_u32 : kv_u32;

      // S tile of this warp: two 16-wide k-steps per iteration; a quantized latent scaled per 128-value tile.
      float sc[4] = {0.f, 0.f, 0.f, 0.f};
      const auto k_steps = [&](float (&c)[4], uint32_t k_base, int k_q, int k_end) {
#pragma unroll 2
        for (int k = k_q; k < k_end; k += 32) {
          uint32_t qa0[4], qa1[4], kb[4];
          ldmatrix_x4(qa0, q_lane + k * 2);
          ldmatrix_x4(qa1, q_lane + (k + 16) * 2);
          ldmatrix_x4(kb, k_base + (k - k_q) * 2);
          mma_16816<__nv_bfloat16>(c, qa0, kb[0], kb[1]);
          mma_16816<__nv_bfloat16>(c, qa1, kb[2], kb[3]);
        }
      };
      if constexpr (S::kQuant) {
#pragma unroll
        for (int t = 0; t < kQuantTiles; ++t) {
          float part[4] = {0.f, 0.f, 0.f, 0.f};
          k_steps(part, lat_u32 + k_lat_off + t * kQuantTile * 2, t * kQuantTile, (t + 1) * kQuantTile);
#pragma unroll
          for (int e = 0; e < 4; ++e) sc[e] = fmaf(part[e], row_scale<F>(kv, s_n + lanes::c_col(lane, e), t), sc[e]);
        }
      } else {
        k_steps(sc, lat_u32 + k_lat_off, 0, kKvLoraRank);
      }
      k_steps(sc, kv_u32 + k_rope_off, kKvLoraRank, kHeadDimQK);  // k_pe: bf16 in the ring
#pragma unroll
      for (int e = 0; e < 4; ++e)
        s_s[(s_m + lanes::c_row(lane, e)) * kMmaSStride + s_n + lanes::c_col(lane, e)] = sc[e];
      __syncthreads();  // the 32 x 32 scores are complete

      // The SIMT kernel's online softmax; P rounded to bf16 for the product (times the token's scale per tile).
#pragma unroll
      for (int j = 0; j < kScoreRowsPerWarp; ++j) {
        const int r = warp + kWarps * j;
        float alpha;
        const float p = softmax.step(j, s_s[r * kMmaSStride + lane], tok0, lane, a.scale_log2, alpha);
#pragma unroll
        for (int t = 0; t < S::kPTiles; ++t) {
          const float pt = S::kQuant ? p * row_scale<F>(kv, lane, t) : p;
          p_s[(t * kRowsPerCta + r) * kMmaPStride + lane] = __bfloat16_as_ushort(__float2bfloat16_rn(pt));
        }
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
          ldmatrix_x4_trans(vb, lat_u32 + v_lane_off + ks * kLatStride + np * 16 * 2);
#pragma unroll
          for (int mt = 0; mt < 2; ++mt) {
            mma_16816<__nv_bfloat16>(acc[mt][2 * np], pa[mt], vb[0], vb[1]);
            mma_16816<__nv_bfloat16>(acc[mt][2 * np + 1], pa[mt], vb[2], vb[3]);
          }
        }
      }
      __syncthreads();  // the stage, the widened codes, s_s and p_s may be overwritten now
    }

    // The piece's result (final when it is its sequence's only piece, else a partial), as the SIMT kernel.
    const bool whole = piece_is_whole(a, pv);
    softmax.finish(a, pi, pv, whole, row0, warp, lane, inv_l_s);
    __syncthreads();
    store_acc_rows(a, pi, pv, whole, row0, lane, pv_col0, acc, inv_l_s);
    __syncthreads();  // q_s and inv_l_s are rewritten by the next piece
  }
}

template <Format F>
void launch(const AttendArgs& a, dim3 grid, cudaStream_t stream) {
  allow_dynamic_smem<mla_decode_attend_mma_kernel<F>>(MmaSmem<F>::kBytes);
  mla_decode_attend_mma_kernel<F><<<grid, kThreads, MmaSmem<F>::kBytes, stream>>>(a);
  MLARUN_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

namespace mla {

void launch_mla_decode_attend_mma(const MlaDecodeParams& p, const WorkspaceLayout& w, cudaStream_t stream) {
  const AttendArgs a = attend_args(p, w);
  const dim3 grid = attend_grid(p, w);
  switch (p.kv_format) {
    case Format::Bf16: return launch<Format::Bf16>(a, grid, stream);
    case Format::Fp8: return launch<Format::Fp8>(a, grid, stream);
    case Format::Int8: return launch<Format::Int8>(a, grid, stream);
  }
  fail("mla_decode: kv_format ", int(p.kv_format), " is not bf16, fp8 or int8");
}

}  // namespace mla
}  // namespace mlarun::ops::cuda
