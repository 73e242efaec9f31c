// Argument checks and device dispatch for the data-movement ops the model uses instead of touching memory
// itself: dtype conversion, column slices, concatenation, transposes, row gathers and weighted scatter-adds,
// copies into views. The CPU backend (kernels/cpu/data_movement.cpp) moves bytes of any dtype; scatter_add sums
// in f32.
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/op_checks.h"
#include "kernels/ops.h"
#include "runtime/device.h"
#include "runtime/error.h"

namespace mlarun::ops {

using detail::device_of;

Tensor convert(const Tensor& x, DType dtype) {
  const Device dev = device_of("convert", {{"x", x}});
  if (x.dtype() == dtype) return x;
  if (dev == Device::CUDA) return cuda::convert(x, dtype);
  return cpu::convert(x, dtype);
}

void fill_random_normal(Tensor& out, uint64_t stream, int64_t run, int64_t stride, int64_t first, float scale,
                        float offset) {
  const Device dev = device_of("fill_random_normal", {{"out", out}});
  MLARUN_CHECK((out.dtype() == DType::F32 || out.dtype() == DType::BF16) && run >= 1 && out.numel() % run == 0 &&
                   stride >= 0 && first >= 0,
               "fill_random_normal: ", out.describe(), " in rows of ", run, " (stride ", stride, ", first ", first,
               "): f32 or bf16 whole rows");
  if (out.numel() == 0) return;
  if (dev == Device::CUDA) return cuda::fill_random_normal(out, stream, run, stride, first, scale, offset);
  cpu::fill_random_normal(out, stream, run, stride, first, scale, offset);
}

Tensor to_host_f32(const Tensor& x) {
  device_of("to_host_f32", {{"x", x}});
  return convert(x.device() == Device::CPU ? x : x.to(Device::CPU), DType::F32);
}

Tensor narrow_last_dim(const Tensor& x, int64_t start, int64_t len) {
  const Device dev = device_of("narrow_last_dim", {{"x", x}});
  MLARUN_CHECK(x.ndim() >= 1 && start >= 0 && len >= 0 && start + len <= x.dim(-1), "narrow_last_dim: columns [",
               start, ", ", start + len, ") of ", x.describe());
  if (dev == Device::CUDA) return cuda::narrow_last_dim(x, start, len);
  return cpu::narrow_last_dim(x, start, len);
}

Tensor concat_last_dim(const Tensor& a, const Tensor& b) {
  const Device dev = device_of("concat_last_dim", {{"a", a}, {"b", b}});
  detail::require_same_dtype("concat_last_dim", {"a", a}, {"b", b});
  bool same_rows = a.ndim() == b.ndim() && a.ndim() >= 1;
  bool broadcast = same_rows && a.ndim() >= 2 && b.dim(-2) == 1 && a.dim(-2) > 1;
  for (int i = 0; same_rows && i + 1 < a.ndim(); ++i)
    same_rows = a.dim(i) == b.dim(i) || (broadcast && i == a.ndim() - 2);
  MLARUN_CHECK(same_rows, "concat_last_dim: ", a.describe(), " and ", b.describe(),
               " differ before the last dimension (b may have 1 where a has heads)");
  const int64_t repeat = broadcast ? a.dim(-2) : 1;
  if (dev == Device::CUDA) return cuda::concat_last_dim(a, b, repeat);
  return cpu::concat_last_dim(a, b, repeat);
}

Tensor transpose_last_two(const Tensor& x) {
  const Device dev = device_of("transpose_last_two", {{"x", x}});
  MLARUN_CHECK(x.ndim() >= 2, "transpose_last_two: x must have two dimensions or more, got ", x.describe());
  if (dev == Device::CUDA) return cuda::transpose_last_two(x);
  return cpu::transpose_last_two(x);
}

Tensor gather_rows(const Tensor& x, const std::vector<int64_t>& rows) {
  const Device dev = device_of("gather_rows", {{"x", x}});
  MLARUN_CHECK(x.ndim() >= 1, "gather_rows: x must have rows, got ", x.describe());
  for (int64_t r : rows)
    MLARUN_CHECK(r >= 0 && r < x.dim(0), "gather_rows: row ", r, " outside the ", x.dim(0), " rows of ", x.describe());
  if (dev == Device::CUDA) return cuda::gather_rows(x, rows);
  return cpu::gather_rows(x, rows);
}

void scatter_add_rows(Tensor& dst, const std::vector<int64_t>& rows, const Tensor& src,
                      const std::vector<float>& weights) {
  const Device dev = device_of("scatter_add_rows", {{"dst", dst}, {"src", src}});
  MLARUN_CHECK(dst.ndim() >= 1 && src.ndim() == dst.ndim() && src.dim(0) == int64_t(rows.size()) &&
                   weights.size() == rows.size() &&
                   Shape(src.shape().begin() + 1, src.shape().end()) == Shape(dst.shape().begin() + 1, dst.shape().end()),
               "scatter_add_rows: ", rows.size(), " rows and ", weights.size(), " weights for src ", src.describe(),
               " into dst ", dst.describe());
  for (int64_t r : rows)
    MLARUN_CHECK(r >= 0 && r < dst.dim(0), "scatter_add_rows: row ", r, " outside the ", dst.dim(0), " rows of ",
                 dst.describe());
  if (dev == Device::CUDA) return cuda::scatter_add_rows(dst, rows, src, weights);
  detail::require_f32("scatter_add_rows", {{"dst", dst}, {"src", src}});
  cpu::scatter_add_rows(dst, rows, src, weights);
}

void copy_into(const Tensor& dst, const Tensor& src) {
  device_of("copy_into", {{"dst", dst}, {"src", src}});
  MLARUN_CHECK(dst.shape() == src.shape() && dst.dtype() == src.dtype(), "copy_into: ", src.describe(), " into ",
               dst.describe());
  copy_bytes(dst.raw(), dst.device(), src.raw(), src.device(), src.nbytes());
}

}  // namespace mlarun::ops
