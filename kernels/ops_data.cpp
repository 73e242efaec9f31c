// Shape checks and device dispatch for the data-movement ops the model uses instead of touching memory itself:
// dtype conversion, column slices, concatenation, transposes, row gathers and weighted scatter-adds, copies
// into views. On the CPU the copies move bytes of any dtype; scatter_add sums in f32.
#include <algorithm>
#include <cstring>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/op_checks.h"
#include "kernels/ops.h"
#include "runtime/device.h"
#include "runtime/error.h"

namespace mlarun::ops {

using detail::device_of;

namespace {
// Rows of x seen as [rows, last dimension].
int64_t leading_rows(const Tensor& x) {
  int64_t n = 1;
  for (int i = 0; i + 1 < x.ndim(); ++i) n *= x.dim(i);
  return n;
}
}  // namespace

Tensor convert(const Tensor& x, DType dtype) {
  const Device dev = device_of("convert", {{"x", x}});
  if (x.dtype() == dtype) return x;
  if (dev == Device::CUDA) return cuda_ops::convert(x, dtype);
  return x.to_dtype(dtype);
}

Tensor to_host_f32(const Tensor& x) {
  device_of("to_host_f32", {{"x", x}});
  return convert(x.device() == Device::CPU ? x : x.to(Device::CPU), DType::F32);
}

Tensor narrow_last_dim(const Tensor& x, int64_t start, int64_t len) {
  const Device dev = device_of("narrow_last_dim", {{"x", x}});
  MLARUN_CHECK(x.ndim() >= 1 && start >= 0 && len >= 0 && start + len <= x.dim(-1), "narrow_last_dim: columns [",
               start, ", ", start + len, ") of ", x.describe());
  if (dev == Device::CUDA) return cuda_ops::narrow_last_dim(x, start, len);
  Shape shape = x.shape();
  const int64_t cols = shape.back(), rows = leading_rows(x);
  shape.back() = len;
  Tensor out = Tensor::empty(shape, x.dtype());
  const size_t es = dtype_size(x.dtype());
  const auto* src = static_cast<const char*>(x.raw());
  auto* dst = static_cast<char*>(out.raw());
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(dst + size_t(r * len) * es, src + size_t(r * cols + start) * es, size_t(len) * es);
  return out;
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
  if (dev == Device::CUDA) return cuda_ops::concat_last_dim(a, b, repeat);
  Shape shape = a.shape();
  const int64_t da = a.dim(-1), db = b.dim(-1), n_rows = leading_rows(a);
  shape.back() = da + db;
  Tensor out = Tensor::empty(shape, a.dtype());
  const size_t es = dtype_size(a.dtype());
  const auto* pa = static_cast<const char*>(a.raw());
  const auto* pb = static_cast<const char*>(b.raw());
  auto* dst = static_cast<char*>(out.raw());
  for (int64_t r = 0; r < n_rows; ++r) {
    std::memcpy(dst + size_t(r * (da + db)) * es, pa + size_t(r * da) * es, size_t(da) * es);
    std::memcpy(dst + size_t(r * (da + db) + da) * es, pb + size_t((r / repeat) * db) * es, size_t(db) * es);
  }
  return out;
}

Tensor transpose_last_two(const Tensor& x) {
  const Device dev = device_of("transpose_last_two", {{"x", x}});
  MLARUN_CHECK(x.ndim() >= 2, "transpose_last_two: x must have two dimensions or more, got ", x.describe());
  if (dev == Device::CUDA) return cuda_ops::transpose_last_two(x);
  Shape shape = x.shape();
  const int64_t P = shape[shape.size() - 2], Q = shape.back(), batch = P != 0 && Q != 0 ? x.numel() / (P * Q) : 0;
  std::swap(shape[shape.size() - 2], shape.back());
  Tensor out = Tensor::empty(shape, x.dtype());
  const size_t es = dtype_size(x.dtype());
  const auto* src = static_cast<const char*>(x.raw());
  auto* dst = static_cast<char*>(out.raw());
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t p = 0; p < P; ++p)
      for (int64_t q = 0; q < Q; ++q)
        std::memcpy(dst + size_t((b * Q + q) * P + p) * es, src + size_t((b * P + p) * Q + q) * es, es);
  return out;
}

Tensor gather_rows(const Tensor& x, const std::vector<int64_t>& rows) {
  const Device dev = device_of("gather_rows", {{"x", x}});
  MLARUN_CHECK(x.ndim() >= 1, "gather_rows: x must have rows, got ", x.describe());
  for (int64_t r : rows)
    MLARUN_CHECK(r >= 0 && r < x.dim(0), "gather_rows: row ", r, " outside the ", x.dim(0), " rows of ", x.describe());
  if (dev == Device::CUDA) return cuda_ops::gather_rows(x, rows);
  Shape shape = x.shape();
  shape[0] = int64_t(rows.size());
  Tensor out = Tensor::empty(shape, x.dtype());
  const size_t row_bytes = x.dim(0) ? x.nbytes() / size_t(x.dim(0)) : 0;
  for (size_t i = 0; i < rows.size(); ++i)
    std::memcpy(static_cast<char*>(out.raw()) + i * row_bytes,
                static_cast<const char*>(x.raw()) + size_t(rows[i]) * row_bytes, row_bytes);
  return out;
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
  if (dev == Device::CUDA) return cuda_ops::scatter_add_rows(dst, rows, src, weights);
  detail::require_f32("scatter_add_rows", {{"dst", dst}, {"src", src}});
  const int64_t D = dst.dim(0) ? dst.numel() / dst.dim(0) : 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    float* out = dst.data<float>() + rows[i] * D;
    const float* in = src.data<float>() + int64_t(i) * D;
    for (int64_t d = 0; d < D; ++d) out[d] += weights[i] * in[d];
  }
}

void copy_into(const Tensor& dst, const Tensor& src) {
  device_of("copy_into", {{"dst", dst}, {"src", src}});
  MLARUN_CHECK(dst.shape() == src.shape() && dst.dtype() == src.dtype(), "copy_into: ", src.describe(), " into ",
               dst.describe());
  copy_bytes(dst.raw(), dst.device(), src.raw(), src.device(), src.nbytes());
}

}  // namespace mlarun::ops
