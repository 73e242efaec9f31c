// CPU data movement (twin of cuda/data_movement.cu): column slices, concatenation, transposes, row gathers move
// bytes of any dtype with memcpy; the weighted scatter-add sums in f32, in list order; the benchmarks' random
// values are written in place.
#include <algorithm>
#include <cstring>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/op_checks.h"
#include "kernels/random_normal.h"
#include "runtime/dtype.h"
#include "runtime/parallel_ranges.h"

namespace mlarun::ops::cpu {

using detail::leading_rows;

void fill_random_normal(Tensor& out, uint64_t stream, int64_t run, int64_t stride, int64_t first, float scale,
                        float offset) {
  const bool bf16 = out.dtype() == DType::BF16;
  parallel_ranges(out.numel(), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t index = i / run * stride + first + i % run;
      const float v = random_values::normal(stream, uint64_t(index)) * scale + offset;
      if (bf16)
        static_cast<uint16_t*>(out.raw())[i] = float_to_bf16(v);
      else
        static_cast<float*>(out.raw())[i] = v;
    }
  });
}

Tensor narrow_last_dim(const Tensor& x, int64_t start, int64_t len) {
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

Tensor concat_last_dim(const Tensor& a, const Tensor& b, int64_t b_repeat) {
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
    std::memcpy(dst + size_t(r * (da + db) + da) * es, pb + size_t((r / b_repeat) * db) * es, size_t(db) * es);
  }
  return out;
}

Tensor transpose_last_two(const Tensor& x) {
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
  Shape shape = x.shape();
  shape[0] = int64_t(rows.size());
  Tensor out = Tensor::empty(shape, x.dtype());
  const size_t row_bytes = x.dim(0) ? x.nbytes() / size_t(x.dim(0)) : 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    char* dst = static_cast<char*>(out.raw()) + i * row_bytes;
    if (rows[i] < 0)
      std::memset(dst, 0, row_bytes);  // an empty row of a capacity layout
    else
      std::memcpy(dst, static_cast<const char*>(x.raw()) + size_t(rows[i]) * row_bytes, row_bytes);
  }
  return out;
}

void scatter_add_rows(const Tensor& dst, const std::vector<int64_t>& rows, const Tensor& src,
                      const std::vector<float>& weights) {
  const int64_t D = dst.dim(0) ? dst.numel() / dst.dim(0) : 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    float* out = dst.data<float>() + rows[i] * D;
    const float* in = src.data<float>() + int64_t(i) * D;
    for (int64_t d = 0; d < D; ++d) out[d] += weights[i] * in[d];
  }
}

void scatter_rows(const Tensor& dst, const std::vector<int64_t>& rows, const Tensor& src) {
  const size_t row_bytes = rows.empty() ? 0 : src.nbytes() / rows.size();
  for (size_t i = 0; i < rows.size(); ++i)
    std::memcpy(static_cast<char*>(dst.raw()) + size_t(rows[i]) * row_bytes,
                static_cast<const char*>(src.raw()) + i * row_bytes, row_bytes);
}

}  // namespace mlarun::ops::cpu
