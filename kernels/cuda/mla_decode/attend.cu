// The MLA decode attend kernel, correct-first SIMT version. CTA (part, m_tile) walks the pieces the scheduler gave
// its part; for each piece (one sequence, a contiguous run of kBlockN-token tiles) it keeps kRowsPerCta
// (query token, head) rows of q in shared memory and streams the cached 576-value rows through a two-stage
// cp.async ring, so every cached row is fetched from memory once per CTA and serves all of its rows:
//   scores  warp w, lane n: rows w + 8j against token n (fp32 dot over 576, bf16 widened exactly);
//   softmax online, in registers of the owning warp, base 2 (scores pre-scaled by scale * log2 e);
//   P.V     thread (row group, column group) accumulates 8 rows x 8 of the 512 columns in fp32 registers.
// Each piece ends with a partial: o / l (fp32) and lse = m + log2 l (log2 domain), or 0 and -inf for a row that
// saw no token. The combine kernel merges the partials. Tokens past a piece's end are zero-filled in shared
// memory and masked; slots past seq_len are never read, so NaN there cannot leak. attend_mma.cu runs the same
// tiling and partials with both products on tensor cores (bf16 caches); attend_common.cuh holds what they share.
// One kernel per cache format (MlaKvFormat): bf16 rows, or the 656-byte fp8/int8 rows of kernels/kv_quant.h,
// which stay quantized in shared memory (half the bytes in flight) and are dequantized in the two inner loops:
// the score takes one scale per 128-value tile of its dot product, P.V multiplies the scale into p.
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cmath>

#include <cuda_runtime_api.h>

#include "runtime/cuda_check.h"
#include "runtime/error.h"
#include "kernels/cuda/wgmma_device.h"
#include "kernels/cuda/mla_decode/attend_common.cuh"
#include "kernels/cuda/mla_decode/mla_decode.h"

namespace mlarun::ops::cuda {
namespace {

using namespace mla;

template <Format F>
__device__ __forceinline__ void codes8_to_f32(const uint2 v, float (&f)[8]) {
  if constexpr (F == Format::Fp8) {
    float f16[16];
    fp8x16_to_f32(make_uint4(v.x, v.y, 0u, 0u), f16);
#pragma unroll
    for (int i = 0; i < 8; ++i) f[i] = f16[i];
  } else {
    int8x4_to_f32(v.x, f), int8x4_to_f32(v.y, f + 4);
  }
}

// s[j] += q[row j of this warp] . the cached row (576 values) of this lane's token.
template <Format F>
__device__ __forceinline__ void score_row(const unsigned char* kv_row, const float* q_s, int warp,
                                          float (&s)[kScoreRowsPerWarp]) {
  if constexpr (F == Format::Bf16) {
    const uint16_t* k_row = reinterpret_cast<const uint16_t*>(kv_row);
#pragma unroll 4
    for (int k = 0; k < kHeadDimQK; k += 8) {
      float kf[8];
      bf16x8_to_f32(*reinterpret_cast<const uint4*>(k_row + k), kf);
#pragma unroll
      for (int j = 0; j < kScoreRowsPerWarp; ++j) {
        const float4 qa = *reinterpret_cast<const float4*>(q_s + (warp + kWarps * j) * kHeadDimQK + k);
        const float4 qb = *reinterpret_cast<const float4*>(q_s + (warp + kWarps * j) * kHeadDimQK + k + 4);
        s[j] = fmaf(qa.x, kf[0], fmaf(qa.y, kf[1], fmaf(qa.z, kf[2], fmaf(qa.w, kf[3], s[j]))));
        s[j] = fmaf(qb.x, kf[4], fmaf(qb.y, kf[5], fmaf(qb.z, kf[6], fmaf(qb.w, kf[7], s[j]))));
      }
    }
  } else {
    // The latent: per 128-value tile, q . codes, then times the tile's scale (NaN scale -> NaN score).
#pragma unroll
    for (int t = 0; t < kQuantTiles; ++t) {
      float st[kScoreRowsPerWarp];
#pragma unroll
      for (int j = 0; j < kScoreRowsPerWarp; ++j) st[j] = 0.f;
#pragma unroll 2
      for (int k = t * kQuantTile; k < (t + 1) * kQuantTile; k += 16) {
        float kf[16];
        codes16_to_f32<F>(*reinterpret_cast<const uint4*>(kv_row + k), kf);
#pragma unroll
        for (int j = 0; j < kScoreRowsPerWarp; ++j) {
          const float* qr = q_s + (warp + kWarps * j) * kHeadDimQK + k;
#pragma unroll
          for (int e = 0; e < 16; e += 4) {
            const float4 qa = *reinterpret_cast<const float4*>(qr + e);
            st[j] = fmaf(qa.x, kf[e], fmaf(qa.y, kf[e + 1], fmaf(qa.z, kf[e + 2], fmaf(qa.w, kf[e + 3], st[j]))));
          }
        }
      }
      const float scale = *reinterpret_cast<const float*>(kv_row + kQuantScalesOffset + 4 * t);
#pragma unroll
      for (int j = 0; j < kScoreRowsPerWarp; ++j) s[j] = fmaf(scale, st[j], s[j]);
    }
    // k_pe: bf16, as in the bf16 rows.
    const uint16_t* pe = reinterpret_cast<const uint16_t*>(kv_row + kQuantRopeOffset);
#pragma unroll
    for (int k = 0; k < kRopeDim; k += 8) {
      float kf[8];
      bf16x8_to_f32(*reinterpret_cast<const uint4*>(pe + k), kf);
#pragma unroll
      for (int j = 0; j < kScoreRowsPerWarp; ++j) {
        const float* qr = q_s + (warp + kWarps * j) * kHeadDimQK + kKvLoraRank + k;
        const float4 qa = *reinterpret_cast<const float4*>(qr);
        const float4 qb = *reinterpret_cast<const float4*>(qr + 4);
        s[j] = fmaf(qa.x, kf[0], fmaf(qa.y, kf[1], fmaf(qa.z, kf[2], fmaf(qa.w, kf[3], s[j]))));
        s[j] = fmaf(qb.x, kf[4], fmaf(qb.y, kf[5], fmaf(qb.z, kf[6], fmaf(qb.w, kf[7], s[j]))));
      }
    }
  }
}

// The 8 V values (columns pv_col..pv_col+7) of one cached row, and the factor p is multiplied by first: 1 for
// bf16 rows, the tile's scale for quantized ones (all 8 columns sit in one 128-value tile).
template <Format F>
__device__ __forceinline__ float v_values(const unsigned char* kv_row, int pv_col, float (&vf)[8]) {
  if constexpr (F == Format::Bf16) {
    bf16x8_to_f32(*reinterpret_cast<const uint4*>(reinterpret_cast<const uint16_t*>(kv_row) + pv_col), vf);
    return 1.f;
  } else {
    codes8_to_f32<F>(*reinterpret_cast<const uint2*>(kv_row + pv_col), vf);
    return *reinterpret_cast<const float*>(kv_row + kQuantScalesOffset + 4 * (pv_col / kQuantTile));
  }
}

template <Format F>
__global__ void __launch_bounds__(kThreads, 1) mla_decode_attend_kernel(const AttendArgs a) {
  extern __shared__ __align__(16) unsigned char smem[];
  float* q_s = reinterpret_cast<float*>(smem);                                      // [kRowsPerCta][576] fp32
  unsigned char* kv_s = smem + kSmemQBytes;                                         // [stages][kBlockN] rows
  float* p_s = reinterpret_cast<float*>(smem + kSmemQBytes + RowOf<F>::kSmemKv);    // [kRowsPerCta][kBlockN]
  float* alpha_s = p_s + kRowsPerCta * kBlockN;                                  // [kRowsPerCta]
  float* inv_l_s = alpha_s + kRowsPerCta;                                        // [kRowsPerCta]

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int pv_col = (tid % kColGroups) * kAccCols;  // P.V: this thread's 8 columns
  const int pv_row = (tid / kColGroups) * kAccRows;  // ... and 8 rows
  const int row0 = blockIdx.y * kRowsPerCta;         // first row of this CTA's M tile
  const int piece_end = a.part_piece_begin[blockIdx.x + 1];

  for (int pi = a.part_piece_begin[blockIdx.x]; pi < piece_end; ++pi) {
    const PieceView pv = piece_view(a, pi);
    const int q_begin = pv.q_begin, rows = pv.rows;
    if (row0 >= rows) continue;  // this sequence has fewer rows than the grid covers (uniform over the CTA)

    load_kv_tile<F>(a, kv_s, pv.seq, pv.tok_begin, pv.tok_end);
    cp_async_commit();

    // q rows [row0, row0 + kRowsPerCta) of this sequence: contiguous in q because row = token * H + head.
    const uint16_t* q_src = a.q + (int64_t(q_begin) * a.num_heads + row0) * kHeadDimQK;
    for (int c = tid; c < kRowsPerCta * (kHeadDimQK / 8); c += kThreads) {
      const int r = c / (kHeadDimQK / 8), col = (c % (kHeadDimQK / 8)) * 8;
      float f[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
      if (row0 + r < rows) bf16x8_to_f32(__ldg(reinterpret_cast<const uint4*>(q_src + r * kHeadDimQK + col)), f);
      float4* dst = reinterpret_cast<float4*>(q_s + r * kHeadDimQK + col);
      dst[0] = make_float4(f[0], f[1], f[2], f[3]);
      dst[1] = make_float4(f[4], f[5], f[6], f[7]);
    }

    SoftmaxRows softmax;  // this warp's rows
    softmax.start(a, pv, row0, warp);
    float acc[kAccRows][kAccCols];
#pragma unroll
    for (int i = 0; i < kAccRows; ++i)
#pragma unroll
      for (int c = 0; c < kAccCols; ++c) acc[i][c] = 0.f;

    for (int it = 0; it < pv.num_tiles; ++it) {
      const int tok0 = pv.tok_begin + it * kBlockN;
      const unsigned char* kv = ring_tile<F>(a, kv_s, it, pv);  // tile `it` (and q_s) visible to all

      // Scores of token tok0 + lane against this warp's rows.
      float s[kScoreRowsPerWarp];
#pragma unroll
      for (int j = 0; j < kScoreRowsPerWarp; ++j) s[j] = 0.f;
      score_row<F>(kv + lane * RowOf<F>::kSmemStride, q_s, warp, s);

#pragma unroll
      for (int j = 0; j < kScoreRowsPerWarp; ++j) {
        float alpha;
        p_s[(warp + kWarps * j) * kBlockN + lane] = softmax.step(j, s[j], tok0, lane, a.scale_log2, alpha);
        if (lane == 0) alpha_s[warp + kWarps * j] = alpha;
      }
      __syncthreads();  // p_s and alpha_s complete

      // acc = acc * alpha + P . V   (V = the first 512 values of each cached row)
#pragma unroll
      for (int i = 0; i < kAccRows; ++i) {
        const float alpha = alpha_s[pv_row + i];
#pragma unroll
        for (int c = 0; c < kAccCols; ++c) acc[i][c] *= alpha;
      }
#pragma unroll 2
      for (int n = 0; n < kBlockN; n += 4) {
        float4 pr[kAccRows];
#pragma unroll
        for (int i = 0; i < kAccRows; ++i) pr[i] = *reinterpret_cast<const float4*>(p_s + (pv_row + i) * kBlockN + n);
#pragma unroll
        for (int nn = 0; nn < 4; ++nn) {
          float vf[8];
          const float v_scale = v_values<F>(kv + (n + nn) * RowOf<F>::kSmemStride, pv_col, vf);
#pragma unroll
          for (int i = 0; i < kAccRows; ++i) {
            const float p_raw = nn == 0 ? pr[i].x : nn == 1 ? pr[i].y : nn == 2 ? pr[i].z : pr[i].w;
            const float p = F == Format::Bf16 ? p_raw : p_raw * v_scale;
#pragma unroll
            for (int c = 0; c < kAccCols; ++c) acc[i][c] = fmaf(p, vf[c], acc[i][c]);
          }
        }
      }
      __syncthreads();  // the stage and p_s may be overwritten now
    }

    // The piece's result: lse from the softmax warps, o = acc / l from the P.V threads; final when the piece is
    // its sequence's only one, else a partial for the combine.
    const bool whole = piece_is_whole(a, pv);
    softmax.finish(a, pi, pv, whole, row0, warp, lane, inv_l_s);
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kAccRows; ++i) {
      const int r = row0 + pv_row + i;
      if (r >= rows) continue;
      const float inv = inv_l_s[pv_row + i];
      float o[kAccCols];
#pragma unroll
      for (int c = 0; c < kAccCols; ++c) o[c] = acc[i][c] * inv;
      store_o<kAccCols>(a, pi, pv, whole, r, pv_col, o);
    }
    __syncthreads();  // q_s and inv_l_s are rewritten by the next piece
  }
}

template <Format F>
void launch_attend(const AttendArgs& a, dim3 grid, cudaStream_t stream) {
  allow_dynamic_smem<mla_decode_attend_kernel<F>>(RowOf<F>::kSmem);
  mla_decode_attend_kernel<F><<<grid, kThreads, RowOf<F>::kSmem, stream>>>(a);
  MLARUN_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

namespace mla {

void launch_mla_decode_attend(const MlaDecodeParams& p, const mla::WorkspaceLayout& w, cudaStream_t stream) {
  if (p.attend == AttendKernel::TensorCoresFitted) return launch_mla_decode_attend_mma_fitted(p, w, stream);
  if (is_wgmma_attend(p.attend) && p.kv_format == Format::Bf16) {
    MLARUN_CHECK(device_runs_wgmma(), "mla_decode: attend wgmma (", int32_t(p.attend),
                 ") needs a compute capability 9.0 device and a build with sm_90a code (CMAKE_CUDA_ARCHITECTURES "
                 "90a); AttendKernel::Auto picks a kernel this device runs");
    if (p.attend == AttendKernel::WgmmaWarpSpecialized) return launch_mla_decode_attend_wgmma_ws(p, w, stream);
    if (p.attend == AttendKernel::WgmmaSeesaw) return launch_mla_decode_attend_wgmma_seesaw(p, w, stream);
    return launch_mla_decode_attend_wgmma(p, w, stream);
  }
  if (p.attend != AttendKernel::Simt) return launch_mla_decode_attend_mma(p, w, stream);  // quantized: 32 rows
  const AttendArgs a = attend_args(p, w);
  const dim3 grid = attend_grid(p, w);
  switch (p.kv_format) {
    case Format::Bf16: return launch_attend<Format::Bf16>(a, grid, stream);
    case Format::Fp8: return launch_attend<Format::Fp8>(a, grid, stream);
    case Format::Int8: return launch_attend<Format::Int8>(a, grid, stream);
  }
  fail("mla_decode: kv_format ", int(p.kv_format), " is not bf16, fp8 or int8");
}

}  // namespace mla
}  // namespace mlarun::ops::cuda
