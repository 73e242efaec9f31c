// The MLA decode combine: merges the partials (o_i, lse_i) that the attend kernel wrote for the pieces of one
// sequence into the final bf16 output and fp32 lse, by log-sum-exp:
//   lse = log2 sum_i 2^lse_i,   o = sum_i 2^(lse_i - lse) o_i   (partials are in the log2 domain; lse leaves as ln).
// One warp per (query token, head) row, 16 of the 512 columns per lane in float4 loads. It writes every output
// row of every sequence but those of a sequence with a single piece, which the attend kernel wrote as final
// (no partial): a row no token reached (no pieces, or every partial empty) gets o = 0 and lse = -inf;
// every row of a sequence the scheduler found invalid gets NaN (all of them, also past max_q_per_seq rows), so
// bad device-side metadata cannot pass for a result and no row keeps stale data. When cu_seqlens_q cannot
// place the rows at all (status[3]), CTA b writes NaN over an equal share of all num_tokens rows instead.
// NaN in a partial propagates (the max below keeps NaN), it is never hidden by the -inf shortcut.
// Launched with programmatic dependent launch: the combine's grid is scheduled while the attend kernel's last CTAs
// finish instead of after a full launch gap, and waits for the attend kernel's writes with
// cudaGridDependencySynchronize before it reads anything (every layer of every decode step pays that gap once).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cuda_runtime_api.h>

#include "runtime/cuda_check.h"
#include "kernels/cuda/mla_decode/mla_decode.h"
#include "kernels/cuda/mma_sm80.cuh"

namespace mlarun::ops::cuda {
namespace {

using mla::kCombineWarps;
using mla::kHeadDimV;

struct CombineArgs {
  const int32_t* cu_seqlens_q;     // [batch + 1]
  const int32_t* seq_piece_begin;  // [batch + 1]
  const int32_t* seq_status;       // [batch]
  const int32_t* status;           // [4]: status[3] != 0 when cu_seqlens_q cannot place the rows
  const float* lse_part;           // [max_pieces, max_rows], log2
  const float* o_part;             // [max_pieces, max_rows, 512]
  uint16_t* out;                   // bf16 [num_tokens, H, 512]
  float* lse;                      // [num_tokens, H]
  int num_heads, num_tokens, max_rows, batch;
};

// fmaxf drops NaN; this keeps it, so a NaN partial poisons the row instead of vanishing.
__device__ __forceinline__ float max_keep_nan(float a, float b) { return (a != a || b != b) ? a + b : fmaxf(a, b); }

__global__ void __launch_bounds__(kCombineWarps * 32) mla_decode_combine_kernel(const CombineArgs a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  cudaGridDependencySynchronize();  // the attend kernel's partials (and the schedule's tables) are complete
#endif
  const int seq = blockIdx.x, lane = threadIdx.x & 31;
  // The query tokens [t0, t1) whose rows this CTA's sequence owns; the scheduler vouches for cu_seqlens_q
  // (0 <= t0 <= t1 <= num_tokens) unless it flagged the layout, when CTA b takes an equal share of all tokens.
  const bool layout_bad = a.status[3] != 0;
  int t0, t1;
  if (layout_bad) {
    t0 = int(int64_t(seq) * a.num_tokens / a.batch);
    t1 = int(int64_t(seq + 1) * a.num_tokens / a.batch);
  } else {
    t0 = a.cu_seqlens_q[seq], t1 = a.cu_seqlens_q[seq + 1];
  }
  const bool invalid = layout_bad || a.seq_status[seq] != 0;
  // A sequence of one piece has its final rows from the attend kernel (attend_common.cuh piece_is_whole).
  if (!invalid && a.seq_piece_begin[seq + 1] - a.seq_piece_begin[seq] == 1) return;
  const int rows = (t1 - t0) * a.num_heads;  // <= max_rows for a valid sequence: the loop runs once there
  for (int row = blockIdx.y * kCombineWarps + (threadIdx.x >> 5); row < rows; row += gridDim.y * kCombineWarps) {
    const int64_t out_row = int64_t(t0) * a.num_heads + row;  // row = query token * H + head
    uint2* out = reinterpret_cast<uint2*>(a.out + out_row * kHeadDimV);  // 4 bf16 per uint2

    float lse2 = -INFINITY;
    float acc[4][4] = {};
    if (!invalid) {
      const int pb = a.seq_piece_begin[seq], pe = a.seq_piece_begin[seq + 1];
      float mx = -INFINITY;
      for (int i = pb + lane; i < pe; i += 32) mx = max_keep_nan(mx, a.lse_part[int64_t(i) * a.max_rows + row]);
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) mx = max_keep_nan(mx, __shfl_xor_sync(0xffffffffu, mx, o));
      if (mx != -INFINITY) {  // some piece saw a token (or NaN: then everything below becomes NaN)
        float sum = 0.f;
        for (int i = pb + lane; i < pe; i += 32) sum += exp2f(a.lse_part[int64_t(i) * a.max_rows + row] - mx);
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
        lse2 = mx + log2f(sum);
        for (int i = pb; i < pe; ++i) {
          const float w = exp2f(a.lse_part[int64_t(i) * a.max_rows + row] - lse2);
          const float4* src =
              reinterpret_cast<const float4*>(a.o_part + (int64_t(i) * a.max_rows + row) * kHeadDimV);
#pragma unroll
          for (int k = 0; k < 4; ++k) {
            const float4 v = src[k * 32 + lane];
            acc[k][0] = fmaf(w, v.x, acc[k][0]);
            acc[k][1] = fmaf(w, v.y, acc[k][1]);
            acc[k][2] = fmaf(w, v.z, acc[k][2]);
            acc[k][3] = fmaf(w, v.w, acc[k][3]);
          }
        }
      }
    } else {
      lse2 = __int_as_float(0x7fc00000);
#pragma unroll
      for (int k = 0; k < 4; ++k) acc[k][0] = acc[k][1] = acc[k][2] = acc[k][3] = lse2;
    }
#pragma unroll
    for (int k = 0; k < 4; ++k)
      out[k * 32 + lane] = make_uint2(mma_sm80::pack2<__nv_bfloat16>(acc[k][0], acc[k][1]),
                                      mma_sm80::pack2<__nv_bfloat16>(acc[k][2], acc[k][3]));
    if (lane == 0) a.lse[out_row] = lse2 * 0.6931471805599453f;  // log2 -> ln; -inf and NaN stay
  }
}

}  // namespace

namespace mla {

void launch_mla_decode_combine(const MlaDecodeParams& p, const mla::WorkspaceLayout& w, cudaStream_t stream) {
  const auto* base = static_cast<const unsigned char*>(p.workspace);
  CombineArgs a;
  a.cu_seqlens_q = p.cu_seqlens_q;
  a.seq_piece_begin = reinterpret_cast<const int32_t*>(base + w.seq_piece_begin);
  a.seq_status = reinterpret_cast<const int32_t*>(base + w.seq_status);
  a.status = reinterpret_cast<const int32_t*>(base + w.status);
  a.lse_part = reinterpret_cast<const float*>(base + w.lse_part);
  a.o_part = reinterpret_cast<const float*>(base + w.o_part);
  a.out = p.out;
  a.lse = p.lse;
  a.num_heads = p.num_heads;
  a.num_tokens = p.num_tokens;
  a.max_rows = int(w.max_rows);
  a.batch = p.batch;
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(unsigned(p.batch), unsigned((w.max_rows + kCombineWarps - 1) / kCombineWarps));
  config.blockDim = dim3(kCombineWarps * 32);
  config.dynamicSmemBytes = 0;
  config.stream = stream;
  cudaLaunchAttribute attribute[1];
  attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;  // may start before the attend kernel ends
  attribute[0].val.programmaticStreamSerializationAllowed = 1;
  config.attrs = attribute;
  config.numAttrs = 1;
  MLARUN_CUDA_CHECK(cudaLaunchKernelEx(&config, mla_decode_combine_kernel, a));
  MLARUN_CUDA_CHECK(cudaGetLastError());
}

}  // namespace mla
}  // namespace mlarun::ops::cuda
