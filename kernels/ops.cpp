// Shape checks and device dispatch for the dense ops and RoPE: the CPU reference (kernels/cpu/) or CUDA
// (kernels/cuda/cuda_ops.h) does the work.
#include "kernels/ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/op_checks.h"
#include "runtime/error.h"

namespace mlarun::ops {

using detail::device_of;
using detail::require_f32;

Tensor linear(const Tensor& x, const Tensor& w) { return linear(x, w, x.dtype()); }

Tensor linear(const Tensor& x, const Tensor& w, DType out_dtype) {
  const Device dev = device_of("linear", {{"x", x}, {"w", w}});
  MLARUN_CHECK(w.ndim() == 2, "linear: weight must be [out, in], got ", w.describe());
  int64_t K = w.dim(1), N = w.dim(0);
  MLARUN_CHECK(x.ndim() >= 1 && x.dim(-1) == K, "linear: x ", x.describe(), " does not match weight ", w.describe());
  Shape out_shape = x.shape();
  out_shape.back() = N;
  if (dev == Device::CUDA) return cuda_ops::linear(x.view({x.numel() / K, K}), w, out_dtype).view(out_shape);
  require_f32("linear", {{"x", x}, {"w", w}});
  MLARUN_CHECK(out_dtype == DType::F32, "linear: the CPU reference computes in f32, asked for ", dtype_name(out_dtype));
  int64_t M = x.numel() / K;
  Tensor y = Tensor::empty(out_shape, DType::F32);
  cpu::linear(x.data<float>(), w.data<float>(), y.data<float>(), M, N, K);
  return y;
}

Tensor head_linear(const Tensor& x, const Tensor& w) {
  const Device dev = device_of("head_linear", {{"x", x}, {"w", w}});
  MLARUN_CHECK(x.ndim() == 3 && w.ndim() == 3 && x.dim(1) == w.dim(0) && x.dim(2) == w.dim(2),
               "head_linear: x ", x.describe(), " does not match per-head weights ", w.describe());
  if (dev == Device::CUDA) return cuda_ops::head_linear(x, w);
  require_f32("head_linear", {{"x", x}, {"w", w}});
  const int64_t T = x.dim(0), H = x.dim(1), K = x.dim(2), N = w.dim(1);
  Tensor y = Tensor::empty({T, H, N}, DType::F32);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h)
      cpu::linear(x.data<float>() + (t * H + h) * K, w.data<float>() + h * N * K, y.data<float>() + (t * H + h) * N,
                  1, N, K);
  return y;
}

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = a.clone();
  add_inplace(out, b);
  return out;
}

void add_inplace(Tensor& a, const Tensor& b) {
  const Device dev = device_of("add", {{"a", a}, {"b", b}});
  MLARUN_CHECK(a.numel() == b.numel(), "add: ", a.describe(), " and ", b.describe(), " differ in size");
  if (dev == Device::CUDA) return cuda_ops::add(a, b, a);
  require_f32("add", {{"a", a}, {"b", b}});
  float* pa = a.data<float>();
  const float* pb = b.data<float>();
  for (int64_t i = 0; i < a.numel(); ++i) pa[i] += pb[i];
}

Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps) {
  const Device dev = device_of("rms_norm", {{"x", x}, {"weight", weight}});
  int64_t dim = weight.numel();
  MLARUN_CHECK(x.ndim() >= 1 && x.dim(-1) == dim, "rms_norm: x ", x.describe(), " vs weight ", weight.describe());
  if (dev == Device::CUDA) return cuda_ops::rms_norm(x, weight, eps);
  require_f32("rms_norm", {{"x", x}, {"weight", weight}});
  Tensor y = Tensor::empty(x.shape(), DType::F32);
  cpu::rms_norm(x.data<float>(), weight.data<float>(), y.data<float>(), x.numel() / dim, dim, eps);
  return y;
}

Tensor add_rms_norm(Tensor& residual, const Tensor& delta, const Tensor& weight, float eps) {
  const Device dev = device_of("add_rms_norm", {{"residual", residual}, {"delta", delta}, {"weight", weight}});
  MLARUN_CHECK(residual.shape() == delta.shape(), "add_rms_norm: residual ", residual.describe(), " vs delta ",
               delta.describe());
  MLARUN_CHECK(residual.ndim() >= 1 && residual.dim(-1) == weight.numel(), "add_rms_norm: residual ",
               residual.describe(), " vs weight ", weight.describe());
  if (dev == Device::CUDA) return cuda_ops::add_rms_norm(residual, delta, weight, eps);
  add_inplace(residual, delta);  // the two passes the fused kernel makes in one
  return rms_norm(residual, weight, eps);
}

Tensor silu_mul(const Tensor& gate, const Tensor& up) {
  const Device dev = device_of("silu_mul", {{"gate", gate}, {"up", up}});
  MLARUN_CHECK(gate.shape() == up.shape(), "silu_mul: gate ", gate.describe(), " vs up ", up.describe());
  if (dev == Device::CUDA) return cuda_ops::silu_mul(gate, up);
  require_f32("silu_mul", {{"gate", gate}, {"up", up}});
  Tensor out = Tensor::empty(gate.shape(), DType::F32);
  cpu::silu_mul(gate.data<float>(), up.data<float>(), out.data<float>(), gate.numel());
  return out;
}

Tensor embedding(const std::vector<int32_t>& ids, const Tensor& table, int64_t vocab_start) {
  const Device dev = device_of("embedding", {{"table", table}});
  MLARUN_CHECK(table.ndim() == 2, "embedding: table must be [vocab, dim], got ", table.describe());
  if (dev == Device::CUDA) return cuda_ops::embedding(ids, table, vocab_start);
  require_f32("embedding", {{"table", table}});
  int64_t rows = table.dim(0), dim = table.dim(1);
  Tensor out = Tensor::zeros({int64_t(ids.size()), dim}, DType::F32);
  for (size_t t = 0; t < ids.size(); ++t) {
    int64_t local = int64_t(ids[t]) - vocab_start;
    if (local >= 0 && local < rows)
      std::memcpy(out.data<float>() + int64_t(t) * dim, table.data<float>() + local * dim, size_t(dim) * 4);
  }
  return out;
}

RopeTable make_rope_table(const ModelConfig& c) {
  const int64_t dim = c.qk_rope_head_dim, half = dim / 2;
  RopeTable t;
  t.interleaved = c.rope_interleaved;
  t.inv_freq.resize(size_t(half));
  std::vector<float> pos_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) pos_freq[size_t(i)] = std::pow(float(c.rope_theta), float(2 * i) / float(dim));
  if (!c.use_yarn) {
    for (int64_t i = 0; i < half; ++i) t.inv_freq[size_t(i)] = 1.0f / pos_freq[size_t(i)];
    return t;
  }
  // The dimension index whose wavelength makes `rotations` turns over the original context.
  auto correction_dim = [&](double rotations) {
    return double(dim) * std::log(double(c.original_seq_len) / (rotations * 2 * M_PI)) / (2 * std::log(c.rope_theta));
  };
  double low = std::max(std::floor(correction_dim(c.beta_fast)), 0.0);
  double high = std::min(std::ceil(correction_dim(c.beta_slow)), double(dim - 1));
  if (low == high) high += 0.001;
  const float factor = float(c.rope_factor);
  for (int64_t i = 0; i < half; ++i) {
    float ramp = std::clamp(float((float(i) - low) / (high - low)), 0.0f, 1.0f);
    float extrapolation_weight = 1.0f - ramp;
    float extrapolated = 1.0f / pos_freq[size_t(i)];
    float interpolated = 1.0f / (factor * pos_freq[size_t(i)]);
    t.inv_freq[size_t(i)] = interpolated * (1.0f - extrapolation_weight) + extrapolated * extrapolation_weight;
  }
  t.attention_factor = float(c.rope_attention_factor);
  return t;
}

void apply_rope(Tensor& x, const std::vector<int64_t>& positions, const RopeTable& table) {
  const Device dev = device_of("apply_rope", {{"x", x}});
  MLARUN_CHECK(x.ndim() == 3, "apply_rope: x must be [tokens, heads, dim], got ", x.describe());
  MLARUN_CHECK(int64_t(positions.size()) == x.dim(0), "apply_rope: ", positions.size(), " positions for ",
               x.describe());
  MLARUN_CHECK(x.dim(2) >= table.rotary_dim(), "apply_rope: rotary dim ", table.rotary_dim(), " exceeds ",
               x.describe());
  if (dev == Device::CUDA) return cuda_ops::apply_rope(x, positions, table);
  require_f32("apply_rope", {{"x", x}});
  cpu::rope(x.data<float>(), x.dim(0), x.dim(1), x.dim(2), positions.data(), table.inv_freq.data(),
            int64_t(table.inv_freq.size()), table.attention_factor, table.interleaved);
}

}  // namespace mlarun::ops
