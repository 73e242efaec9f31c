// Argument checks and device dispatch for the dense ops and RoPE: the CPU backend (kernels/cpu/cpu_ops.h) or
// the CUDA one (kernels/cuda/cuda_ops.h) does the work. Checks run before either, so a bad call fails the same
// way on every device.
#include "kernels/ops.h"

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
  const Tensor x2 = x.view({x.numel() / K, K});
  if (dev == Device::CUDA) return cuda::linear(x2, w, out_dtype).view(out_shape);
  require_f32("linear", {{"x", x}, {"w", w}});
  MLARUN_CHECK(out_dtype == DType::F32, "linear: the CPU reference computes in f32, asked for ", dtype_name(out_dtype));
  return cpu::linear(x2, w).view(out_shape);
}

Tensor head_linear(const Tensor& x, const Tensor& w) {
  const Device dev = device_of("head_linear", {{"x", x}, {"w", w}});
  MLARUN_CHECK(x.ndim() == 3 && w.ndim() == 3 && x.dim(1) == w.dim(0) && x.dim(2) == w.dim(2),
               "head_linear: x ", x.describe(), " does not match per-head weights ", w.describe());
  if (dev == Device::CUDA) return cuda::head_linear(x, w);
  require_f32("head_linear", {{"x", x}, {"w", w}});
  return cpu::head_linear(x, w);
}

KeysValues mla_up_project(const Tensor& rows, const Tensor& wkv_b, int64_t nope, int64_t vd) {
  const Device dev = device_of("mla_up_project", {{"rows", rows}, {"wkv_b", wkv_b}});
  MLARUN_CHECK(nope > 0 && vd > 0 && wkv_b.ndim() == 2 && wkv_b.dim(0) % (nope + vd) == 0, "mla_up_project: wkv_b ",
               wkv_b.describe(), " is not heads x (nope ", nope, " + v ", vd, ") rows of the latent width");
  const int64_t R = wkv_b.dim(1);
  MLARUN_CHECK(rows.ndim() == 2 && rows.dim(1) > R, "mla_up_project: latent rows ", rows.describe(),
               " are not [n, ", R, " + rope] for wkv_b ", wkv_b.describe());
  if (dev == Device::CUDA) return cuda::mla_up_project(rows, wkv_b, nope, vd);
  const int64_t n = rows.dim(0), H = wkv_b.dim(0) / (nope + vd), Dr = rows.dim(1) - R;
  const Tensor kvb = linear(narrow_last_dim(rows, 0, R), wkv_b).view({n, H, nope + vd});
  return {concat_last_dim(narrow_last_dim(kvb, 0, nope), narrow_last_dim(rows, R, Dr).view({n, 1, Dr})),
          narrow_last_dim(kvb, nope, vd)};
}

Tensor expert_linear(const Tensor& x, const Tensor& w, const Tensor& counts) {
  const Device dev = device_of("expert_linear", {{"x", x}, {"w", w}, {"counts", counts}});
  MLARUN_CHECK(x.ndim() == 3 && w.ndim() == 3 && x.dim(1) == w.dim(0) && x.dim(2) == w.dim(2) &&
                   counts.dtype() == DType::I64 && counts.shape() == Shape{x.dim(1)},
               "expert_linear: x ", x.describe(), ", expert weights ", w.describe(), " and counts ", counts.describe(),
               " do not match");
  if (dev == Device::CUDA) return cuda::expert_linear(x, w, counts);
  require_f32("expert_linear", {{"x", x}, {"w", w}});
  return cpu::expert_linear(x, w, counts);
}

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = a.clone();
  add_inplace(out, b);
  return out;
}

void add_inplace(Tensor& a, const Tensor& b) {
  const Device dev = device_of("add", {{"a", a}, {"b", b}});
  MLARUN_CHECK(a.numel() == b.numel(), "add: ", a.describe(), " and ", b.describe(), " differ in size");
  if (dev == Device::CUDA) return cuda::add(a, b, a);
  require_f32("add", {{"a", a}, {"b", b}});
  cpu::add(a, b, a);
}

Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps) {
  const Device dev = device_of("rms_norm", {{"x", x}, {"weight", weight}});
  int64_t dim = weight.numel();
  MLARUN_CHECK(x.ndim() >= 1 && x.dim(-1) == dim, "rms_norm: x ", x.describe(), " vs weight ", weight.describe());
  if (dev == Device::CUDA) return cuda::rms_norm(x, weight, eps);
  require_f32("rms_norm", {{"x", x}, {"weight", weight}});
  return cpu::rms_norm(x, weight, eps);
}

Tensor add_rms_norm(Tensor& residual, const Tensor& delta, const Tensor& weight, float eps) {
  const Device dev = device_of("add_rms_norm", {{"residual", residual}, {"delta", delta}, {"weight", weight}});
  MLARUN_CHECK(residual.shape() == delta.shape(), "add_rms_norm: residual ", residual.describe(), " vs delta ",
               delta.describe());
  MLARUN_CHECK(residual.ndim() >= 1 && residual.dim(-1) == weight.numel(), "add_rms_norm: residual ",
               residual.describe(), " vs weight ", weight.describe());
  if (dev == Device::CUDA) return cuda::add_rms_norm(residual, delta, weight, eps);
  require_f32("add_rms_norm", {{"residual", residual}, {"delta", delta}, {"weight", weight}});
  return cpu::add_rms_norm(residual, delta, weight, eps);
}

Tensor silu_mul(const Tensor& gate, const Tensor& up) {
  const Device dev = device_of("silu_mul", {{"gate", gate}, {"up", up}});
  MLARUN_CHECK(gate.shape() == up.shape(), "silu_mul: gate ", gate.describe(), " vs up ", up.describe());
  if (dev == Device::CUDA) return cuda::silu_mul(gate, up);
  require_f32("silu_mul", {{"gate", gate}, {"up", up}});
  return cpu::silu_mul(gate, up);
}

Tensor embedding(const std::vector<int32_t>& ids, const Tensor& table, int64_t vocab_start) {
  const Device dev = device_of("embedding", {{"table", table}});
  MLARUN_CHECK(table.ndim() == 2, "embedding: table must be [vocab, dim], got ", table.describe());
  if (dev == Device::CUDA) return cuda::embedding(ids, table, vocab_start);
  require_f32("embedding", {{"table", table}});
  return cpu::embedding(ids, table, vocab_start);
}

void apply_rope(Tensor& x, const std::vector<int64_t>& positions, const RopeTable& table) {
  const Device dev = device_of("apply_rope", {{"x", x}});
  MLARUN_CHECK(x.ndim() == 3, "apply_rope: x must be [tokens, heads, dim], got ", x.describe());
  MLARUN_CHECK(int64_t(positions.size()) == x.dim(0), "apply_rope: ", positions.size(), " positions for ",
               x.describe());
  MLARUN_CHECK(x.dim(2) >= table.rotary_dim(), "apply_rope: rotary dim ", table.rotary_dim(), " exceeds ",
               x.describe());
  if (dev == Device::CUDA) return cuda::apply_rope(x, positions, table);
  require_f32("apply_rope", {{"x", x}});
  cpu::apply_rope(x, positions, table);
}

}  // namespace mlarun::ops
