// CPU element-wise ops (twin of cuda/elementwise_ops.cu): sums, SiLU-mul, the embedding lookup and dtype
// conversion. One pass over the elements each, in index order.
#include <cmath>
#include <cstring>

#include "kernels/cpu/cpu_ops.h"

namespace mlarun::ops::cpu {

void add(const Tensor& a, const Tensor& b, const Tensor& out) {
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  float* po = out.data<float>();
  for (int64_t i = 0; i < a.numel(); ++i) po[i] = pa[i] + pb[i];
}

Tensor silu_mul(const Tensor& gate, const Tensor& up) {
  Tensor out = Tensor::empty(gate.shape(), DType::F32);
  const float* g = gate.data<float>();
  const float* u = up.data<float>();
  float* o = out.data<float>();
  for (int64_t i = 0; i < gate.numel(); ++i) o[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
  return out;
}

Tensor embedding(const std::vector<int32_t>& ids, const Tensor& table, int64_t vocab_start) {
  const int64_t rows = table.dim(0), dim = table.dim(1);
  Tensor out = Tensor::zeros({int64_t(ids.size()), dim}, DType::F32);
  for (size_t t = 0; t < ids.size(); ++t) {
    const int64_t local = int64_t(ids[t]) - vocab_start;
    if (local >= 0 && local < rows)
      std::memcpy(out.data<float>() + int64_t(t) * dim, table.data<float>() + local * dim, size_t(dim) * 4);
  }
  return out;
}

Tensor convert(const Tensor& x, DType dtype) { return x.to_dtype(dtype); }

}  // namespace mlarun::ops::cpu
