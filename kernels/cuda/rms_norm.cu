// RMSNorm on the GPU, alone and fused with the residual add of a decoder layer. One block per row: the sum of
// squares in f32 over the row, then y = round(round(x * inv_rms) * weight), the order a bf16 Hugging Face model
// uses (normalise in f32, cast to the activation dtype, then scale). The fused kernel first writes
// residual = round(residual + delta) and normalises that rounded sum, so it equals add then rms_norm.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_ops.h"

namespace mlarun::ops::cuda {

namespace {

constexpr int kThreads = 256;

// With delta != nullptr: residual[row] += delta[row] first (stored rounded), then normalised into y.
__global__ void rms_norm_kernel(void* residual, const void* delta, const void* weight, void* y, int64_t dim,
                                float eps, bool bf16, bool weight_bf16) {
  __shared__ float scratch[32];
  const int64_t base = blockIdx.x * dim;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    float v = load_f(residual, base + i, bf16);
    if (delta) {
      v = round_to(v + load_f(delta, base + i, bf16), bf16);
      store_f(residual, base + i, v, bf16);  // read back below by this same thread only
    }
    ss += v * v;
  }
  const float inv = rsqrtf(block_sum(ss, scratch) / float(dim) + eps);
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    float normed = round_to(load_f(residual, base + i, bf16) * inv, bf16);
    store_f(y, base + i, normed * load_f(weight, i, weight_bf16), bf16);
  }
}

Tensor run(const Tensor& x, const Tensor* delta, const Tensor& weight, float eps, const char* op) {
  const bool bf16 = is_bf16(x, op), weight_bf16 = is_bf16(weight, op);
  if (delta) MLARUN_CHECK(delta->dtype() == x.dtype(), op, ": delta ", delta->describe(), " vs ", x.describe());
  const int64_t dim = weight.numel(), rows = dim ? x.numel() / dim : 0;
  MLARUN_CHECK(rows <= INT32_MAX, op, ": ", rows, " rows exceed one grid");
  Tensor y = Tensor::empty(x.shape(), x.dtype(), Device::CUDA);
  if (rows == 0) return y;
  rms_norm_kernel<<<unsigned(rows), kThreads, 0, stream()>>>(x.raw(), delta ? delta->raw() : nullptr, weight.raw(),
                                                              y.raw(), dim, eps, bf16, weight_bf16);
  MLARUN_CUDA_CHECK_LAUNCH("rms_norm_kernel");
  return y;
}

}  // namespace

Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps) { return run(x, nullptr, weight, eps, "rms_norm"); }

Tensor add_rms_norm(const Tensor& residual, const Tensor& delta, const Tensor& weight, float eps) {
  return run(residual, &delta, weight, eps, "add_rms_norm");
}

}  // namespace mlarun::ops::cuda
