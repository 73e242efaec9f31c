// CPU matrix products (twin of cuda/cublas_gemm.cpp): y = x . w^T with checkpoint weights stored [out, in], and
// the per-head form of the absorbed MLA weights, and the routed experts over a capacity layout (only the rows
// that hold tokens). f32 in, f32 out, each output one fixed-order dot product.
#include <algorithm>

#include "kernels/cpu/cpu_common.h"
#include "kernels/cpu/cpu_ops.h"

namespace mlarun::ops::cpu {

namespace {
// y[m, n] = sum_k x[m, k] * w[n, k]
void matmul_nt(const float* x, const float* w, float* y, int64_t M, int64_t N, int64_t K) {
  for (int64_t m = 0; m < M; ++m) {
    const float* xr = x + m * K;
    float* yr = y + m * N;
    for (int64_t n = 0; n < N; ++n) yr[n] = dot(xr, w + n * K, K);
  }
}
}  // namespace

Tensor linear(const Tensor& x, const Tensor& w) {
  const int64_t M = x.dim(0), K = x.dim(1), N = w.dim(0);
  Tensor y = Tensor::empty({M, N}, DType::F32);
  matmul_nt(x.data<float>(), w.data<float>(), y.data<float>(), M, N, K);
  return y;
}

Tensor head_linear(const Tensor& x, const Tensor& w) {
  const int64_t T = x.dim(0), H = x.dim(1), K = x.dim(2), N = w.dim(1);
  Tensor y = Tensor::empty({T, H, N}, DType::F32);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h)
      matmul_nt(x.data<float>() + (t * H + h) * K, w.data<float>() + h * N * K, y.data<float>() + (t * H + h) * N, 1,
                N, K);
  return y;
}

Tensor expert_linear(const Tensor& x, const Tensor& w, const Tensor& counts) {
  const int64_t T = x.dim(0), n = x.dim(1), K = x.dim(2), N = w.dim(1);
  Tensor y = Tensor::zeros({T, n, N}, DType::F32);
  for (int64_t j = 0; j < n; ++j)
    for (int64_t c = 0; c < std::min(T, counts.data<int64_t>()[j]); ++c)
      matmul_nt(x.data<float>() + (c * n + j) * K, w.data<float>() + j * N * K, y.data<float>() + (c * n + j) * N, 1,
                N, K);
  return y;
}

}  // namespace mlarun::ops::cpu
