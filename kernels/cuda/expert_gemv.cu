// expert_linear on the GPU: the routed experts' products over a capacity layout, reading only the experts that
// hold tokens. In a decode step most of a rank's experts get no token (top 6 of 160 at batch 1: about 6), and a
// batched GEMM over all of them would read every expert's weights; here CTA (column tile, expert j) returns at
// once when expert j's count is 0, and otherwise streams its weight rows once per pass of up to kRows tokens
// (memory-bound: each 16-byte weight load serves every staged row). Rows past the count are written as zeros.
// The counts stay on the device, so the step needs no host copy (a CUDA graph can capture it).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_ops.h"

namespace mlarun::ops::cuda {

namespace {

constexpr int kThreads = 256, kWarps = kThreads / 32;
constexpr int kCols = 64;  // output columns per CTA; warp w takes columns w, w + 8, ...
constexpr int kRows = 8;   // tokens staged per pass

// x bf16 [T, n, K] (row c * n + j: expert j's c-th token), w bf16 [n, N, K], counts i64 [n] -> y bf16 [T, n, N].
__global__ void __launch_bounds__(kThreads) expert_gemv_kernel(const uint16_t* x, const uint16_t* w,
                                                               const int64_t* counts, uint16_t* y, int T, int n, int N,
                                                               int K) {
  extern __shared__ __align__(16) uint16_t xs[];  // [kRows][K]
  const int j = blockIdx.y, col0 = blockIdx.x * kCols, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int count = int(min(max(counts[j], int64_t(0)), int64_t(T)));
  const __nv_bfloat16 zero = __float2bfloat16_rn(0.f);
  for (int i = tid; i < (T - count) * kCols; i += kThreads) {  // rows past the count: zeros
    const int r = count + i / kCols, c = col0 + i % kCols;
    if (c < N) y[(int64_t(r) * n + j) * N + c] = __bfloat16_as_ushort(zero);
  }
  for (int r0 = 0; r0 < count; r0 += kRows) {
    const int R = min(kRows, count - r0);
    __syncthreads();  // the previous pass has read xs
    for (int i = tid * 8; i < R * K; i += kThreads * 8) {
      const int r = i / K, k = i % K;
      *reinterpret_cast<uint4*>(xs + r * K + k) =
          __ldg(reinterpret_cast<const uint4*>(x + (int64_t(r0 + r) * n + j) * K + k));
    }
    __syncthreads();
    for (int ci = warp; ci < kCols; ci += kWarps) {
      const int col = col0 + ci;
      if (col >= N) break;
      const uint16_t* wrow = w + (int64_t(j) * N + col) * K;
      float acc[kRows];
#pragma unroll
      for (int r = 0; r < kRows; ++r) acc[r] = 0.f;
#pragma unroll 4
      for (int k = lane * 8; k < K; k += 32 * 8) {
        float wf[8];
        bf16x8_to_f32(__ldg(reinterpret_cast<const uint4*>(wrow + k)), wf);
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
          if (r >= R) break;
          float xf[8];
          bf16x8_to_f32(*reinterpret_cast<const uint4*>(xs + r * K + k), xf);
#pragma unroll
          for (int e = 0; e < 8; ++e) acc[r] = fmaf(wf[e], xf[e], acc[r]);
        }
      }
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        const float sum = warp_sum(acc[r]);  // every lane takes part, also for r >= R
        if (lane == 0 && r < R) y[(int64_t(r0 + r) * n + j) * N + col] = __bfloat16_as_ushort(__float2bfloat16_rn(sum));
      }
    }
  }
}

// y [T, n, N]: rows c >= counts[j] of expert j set to zero (after the cuBLAS fallback computed every row).
__global__ void zero_rows_past_count_kernel(uint16_t* y, const int64_t* counts, int64_t T, int64_t n, int64_t N) {
  const int64_t total = T * n * N, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += stride) {
    const int64_t row = i / N, c = row / n, j = row % n;
    if (c >= counts[j]) y[i] = 0;  // +0.0 in bf16
  }
}

}  // namespace

bool expert_linear_fits(const Tensor& x, const Tensor& w) {
  const int64_t K = x.dim(2);
  return x.dtype() == DType::BF16 && w.dtype() == DType::BF16 && K % 8 == 0 &&
         size_t(kRows) * size_t(K) * 2 <= size_t(227) * 1024 && x.numel() < (int64_t(1) << 31) &&
         w.numel() < (int64_t(1) << 40);
}

Tensor expert_linear(const Tensor& x, const Tensor& w, const Tensor& counts) {
  const int64_t T = x.dim(0), n = x.dim(1), K = x.dim(2), N = w.dim(1);
  if (!expert_linear_fits(x, w)) {  // every expert's rows through cuBLAS, then the rows past the counts zeroed
    Tensor y = head_linear(x, w);
    if (y.numel() == 0) return y;
    MLARUN_CHECK(y.dtype() == DType::BF16, "expert_linear: a ", dtype_name(y.dtype()), " product, bf16 expected");
    zero_rows_past_count_kernel<<<grid_for(y.numel(), kThreads), kThreads, 0, stream()>>>(
        y.data<uint16_t>(), counts.data<int64_t>(), T, n, N);
    MLARUN_CUDA_CHECK_LAUNCH("zero_rows_past_count_kernel");
    return y;
  }
  Tensor y = Tensor::empty({T, n, N}, DType::BF16, Device::CUDA);
  if (y.numel() == 0) return y;
  const size_t smem = size_t(kRows) * size_t(K) * 2;
  allow_dynamic_smem<expert_gemv_kernel>(smem);
  const dim3 grid(unsigned((N + kCols - 1) / kCols), unsigned(n));
  expert_gemv_kernel<<<grid, kThreads, smem, stream()>>>(x.data<uint16_t>(), w.data<uint16_t>(),
                                                         counts.data<int64_t>(), y.data<uint16_t>(), int(T), int(n),
                                                         int(N), int(K));
  MLARUN_CUDA_CHECK_LAUNCH("expert_gemv_kernel");
  return y;
}

}  // namespace mlarun::ops::cuda
