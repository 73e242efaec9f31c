// What the wgmma attend kernels (attend_wgmma.cu: two warpgroups in step; attend_wgmma_ws.cu: a loading warpgroup
// and two computing ones) do with a thread's share of the 64-row tile: the online softmax of its two accumulator
// rows (base 2, fp32, in registers; a row's four threads, one quad, exchange maxima by shuffles and add their row
// sums once per piece), P packed as the A fragments of P.V, the rescaling of the 128 output accumulators, and the
// piece's result. Kept apart so the kernels differ only in how their warpgroups share the cached tiles.
#pragma once

#include <cuda_bf16.h>

#include <cmath>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/mla_decode/attend_common.cuh"
#include "kernels/cuda/mla_decode/wgmma_lanes.h"
#include "kernels/cuda/mma_sm80.cuh"
#include "kernels/cuda/wgmma_sm90.cuh"

namespace mlarun::ops::cuda::mla {

// A cached row's (or a q row's) 16-byte piece at byte `off` goes to slab off / 128, row `row`, swizzled.
struct SlabRows {
  __device__ __forceinline__ unsigned char* operator()(unsigned char* stage, int row, int off) const {
    return stage + wg::row_piece(row, off);
  }
  // The loader's form (load_kv_row_chunks): a thread's per-row value once, then each piece by a compile-time term.
  __device__ __forceinline__ uint32_t lane_base(int row, int lane_chunk) const {
    return wg::row_piece_base(row, lane_chunk);
  }
  template <int kThreadsPerRow, int kFirst>
  __device__ __forceinline__ unsigned char* piece(unsigned char* stage, uint32_t base, int i) const {
    return stage + wg::row_piece_of_lane<kThreadsPerRow, kFirst>(base, i);
  }
};

// The piece's 64 q rows from row0 (zeros past the sequence's rows) into the q slabs, by kNumThreads threads
// (thread `tid` among them): cp.async, not committed or waited for.
template <int kNumThreads>
__device__ __forceinline__ void load_q_rows(const AttendArgs& a, const PieceView& pv, int row0, unsigned char* q,
                                            int tid) {
  constexpr int kRowChunks = kHeadDimQK / 8;  // 16-byte pieces of a q row: 72
  const uint16_t* q_src = a.q + (int64_t(pv.q_begin) * a.num_heads + row0) * kHeadDimQK;
  for (int c = tid; c < kWgRows * kRowChunks; c += kNumThreads) {
    const int r = c / kRowChunks, off = (c % kRowChunks) * 16;
    unsigned char* dst = SlabRows{}(q, r, off);
    if (row0 + r < pv.rows)
      cp_async_16(dst, reinterpret_cast<const unsigned char*>(q_src + r * kHeadDimQK) + off);
    else
      *reinterpret_cast<uint4*>(dst) = make_uint4(0u, 0u, 0u, 0u);
  }
}

// Quad maximum / sum: the four threads holding one accumulator row.
__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// The online softmax of a thread's two rows (h = 0: r_lo, the accumulator elements with bit 1 clear; h = 1: r_hi).
// A row sees tokens [tok_begin, visible) of the piece (causal among the queries); a row past the sequence's rows
// sees none. m = -inf and l = 0 until a row sees a token; l is this thread's share, added over the quad at the end.
struct WgSoftmax {
  int visible[2];
  float m[2], l[2];

  __device__ __forceinline__ void start(const AttendArgs& a, const PieceView& pv, int row0, int r_lo, int r_hi) {
    const auto visible_of = [&](int r) {
      return row0 + r < pv.rows ? min(pv.tok_end, pv.seq_len - pv.n_q + (row0 + r) / a.num_heads + 1) : 0;
    };
    visible[0] = visible_of(r_lo), visible[1] = visible_of(r_hi);
    m[0] = m[1] = -INFINITY;
    l[0] = l[1] = 0.f;
  }
  // Scales the step's scores to base 2 and masks the ones a row does not see (s[e] is token tok0 +
  // acc_col(lane, e)); mx: each row's maximum over the quad.
  template <int kSRegs>
  __device__ __forceinline__ void row_max(float (&s)[kSRegs], int tok0, int lane, float scale_log2,
                                          float (&mx)[2]) const {
    mx[0] = mx[1] = -INFINITY;
#pragma unroll
    for (int e = 0; e < kSRegs; ++e) {
      const int h = (e >> 1) & 1;
      s[e] = tok0 + wgmma_sm90::acc_col(lane, e) < visible[h] ? s[e] * scale_log2 : -INFINITY;
      mx[h] = fmaxf(mx[h], s[e]);
    }
    mx[0] = quad_max(mx[0]), mx[1] = quad_max(mx[1]);
  }
  // The rows' new maxima from the step's `mx`: alpha rescales what was accumulated so far (l here, the outputs by
  // the caller), m_use is the maximum the step's probabilities are taken against (0 for a row that saw nothing).
  __device__ __forceinline__ void advance(const float (&mx)[2], float (&alpha)[2], float (&m_use)[2]) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float m_new = fmaxf(m[h], mx[h]);
      m_use[h] = m_new == -INFINITY ? 0.f : m_new;
      alpha[h] = exp2_ftz(m[h] - m_use[h]);
      m[h] = m_new;
      l[h] *= alpha[h];
    }
  }
  // P = 2^(s - m_use) as the A fragments of P.V: k-step kk (tokens 16 kk ..) takes n8 tiles 2 kk and 2 kk + 1 of
  // S; registers (row lo, tokens lo), (row hi, lo), (row lo, hi), (row hi, hi). Rounded to bf16 for the product;
  // the row sums add the fp32 values.
  template <int kKSteps, int kSRegs>
  __device__ __forceinline__ void probabilities(const float (&s)[kSRegs], const float (&m_use)[2],
                                                uint32_t (&p)[kKSteps][4]) {
    static_assert(kSRegs == 8 * kKSteps, "16 tokens per k-step, 8 score registers each");
#pragma unroll
    for (int kk = 0; kk < kKSteps; ++kk)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int e = wg::p_element(kk, i), h = i & 1;
        const float p0 = exp2_ftz(s[e] - m_use[h]), p1 = exp2_ftz(s[e + 1] - m_use[h]);
        l[h] += p0 + p1;
        p[kk][i] = mma_sm80::pack2<__nv_bfloat16>(p0, p1);
      }
  }
};

// The 128 output accumulators (a warpgroup's 256 columns of the thread's two rows) times their row's alpha. Once
// the rows' maxima settle, every alpha is 1: the warp skips its 128 multiplies (a third of the softmax's
// instructions; exact either way, and a NaN alpha is not 1).
__device__ __forceinline__ void rescale_o(float (&o)[128], const float (&alpha)[2]) {
  if (__any_sync(0xffffffffu, alpha[0] != 1.f || alpha[1] != 1.f)) {
#pragma unroll
    for (int e = 0; e < 128; ++e) o[e] *= alpha[(e >> 1) & 1];
  }
}

// The piece's result for the thread's two rows, given their whole row sums `lsum` and maxima `m`: final rows (bf16
// output, natural-log lse) when the piece is its sequence's only one, else a partial (fp32 o / l, log2 lse), as the
// other kernels write them. Warpgroup `group` holds output columns [256 group, 256 group + 256); group 0 writes
// the lse. Rows past the sequence's rows are not written.
__device__ __forceinline__ void finish_wg_rows(const AttendArgs& a, int pi, const PieceView& pv, bool whole, int row0,
                                               int r_lo, int r_hi, int group, int lane, const float (&lsum)[2],
                                               const float (&m)[2], const float (&o)[128]) {
  float inv[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const float lh = lsum[h];
    const int r = h ? r_hi : r_lo;
    inv[h] = lh == 0.f ? 0.f : 1.f / lh;  // l == 0: no visible token; a NaN l stays NaN
    const float lse2 = lh == 0.f ? -INFINITY : m[h] + log2f(lh);
    if (group == 0 && (lane & 3) == 0 && row0 + r < pv.rows) {
      if (whole)
        a.lse[int64_t(pv.q_begin) * a.num_heads + row0 + r] = lse2 * 0.6931471805599453f;  // log2 -> ln
      else
        a.lse_part[int64_t(pi) * a.max_rows + row0 + r] = lse2;
    }
  }
#pragma unroll
  for (int e = 0; e < 128; e += 2) {
    const int h = (e >> 1) & 1, r = h ? r_hi : r_lo;
    if (row0 + r >= pv.rows) continue;
    const float out[2] = {o[e] * inv[h], o[e + 1] * inv[h]};
    store_o<2>(a, pi, pv, whole, row0 + r, 256 * group + wgmma_sm90::acc_col(lane, e), out);
  }
}

}  // namespace mlarun::ops::cuda::mla
