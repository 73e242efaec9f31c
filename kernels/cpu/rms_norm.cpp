// CPU RMSNorm (twin of cuda/rms_norm.cu), alone and fused with the residual add of a decoder layer. The sum of
// squares runs in double, so the reference carries less rounding than any kernel it checks.
#include <cmath>

#include "kernels/cpu/cpu_ops.h"

namespace mlarun::ops::cpu {

Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps) {
  const int64_t dim = weight.numel(), rows = x.numel() / dim;
  Tensor out = Tensor::empty(x.shape(), DType::F32);
  const float* w = weight.data<float>();
  float* y = out.data<float>();
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x.data<float>() + r * dim;
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += double(xr[i]) * xr[i];
    float inv = float(1.0 / std::sqrt(ss / double(dim) + double(eps)));
    for (int64_t i = 0; i < dim; ++i) y[r * dim + i] = (xr[i] * inv) * w[i];
  }
  return out;
}

Tensor add_rms_norm(const Tensor& residual, const Tensor& delta, const Tensor& weight, float eps) {
  add(residual, delta, residual);  // the two passes the fused kernel makes in one
  return rms_norm(residual, weight, eps);
}

}  // namespace mlarun::ops::cpu
