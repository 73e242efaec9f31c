// Data movement on the GPU: column blocks (slices, and concatenation with the head broadcast MLA's shared k_pe
// needs), row gathers and scatters (these move up to 16 bytes per thread where sizes and addresses allow),
// transposes (one thread per element), and the weighted scatter-add that combines MoE expert outputs. The
// scatter-add is deterministic: the host turns the row list into, per destination row, its sources in list order,
// and one block sums them in that order in f32.
#include <algorithm>
#include <initializer_list>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/op_checks.h"

namespace mlarun::ops::cuda {

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ void copy_element(void* dst, int64_t di, const void* src, int64_t si, int es) {
  switch (es) {
    case 1: static_cast<uint8_t*>(dst)[di] = static_cast<const uint8_t*>(src)[si]; break;
    case 2: static_cast<uint16_t*>(dst)[di] = static_cast<const uint16_t*>(src)[si]; break;
    case 4: static_cast<uint32_t*>(dst)[di] = static_cast<const uint32_t*>(src)[si]; break;
    default: static_cast<uint64_t*>(dst)[di] = static_cast<const uint64_t*>(src)[si]; break;
  }
}

#define MLARUN_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

// ColumnCopy (cuda_ops.h) in units of U: every width and column counted in U's, one U per thread.
template <typename U>
__global__ void copy_columns_kernel(const U* src, U* dst, ColumnCopy c) {
  MLARUN_GRID_STRIDE(i, c.rows * c.width) {
    const int64_t r = i / c.width, j = i % c.width;
    dst[r * c.dst_width + c.dst_col + j] = src[(r / c.src_row_div) * c.src_width + c.src_col + j];
  }
}

// out[b, q, p] = x[b, p, q]
__global__ void transpose_kernel(const void* x, void* out, int64_t batch, int64_t P, int64_t Q, int es) {
  MLARUN_GRID_STRIDE(i, batch * P * Q) {
    const int64_t b = i / (P * Q), q = (i / P) % Q, p = i % P;
    copy_element(out, i, x, (b * P + p) * Q + q, es);
  }
}

// out[i, :] = x[rows[i], :]; a row -1 gives zeros (an empty row of a capacity layout). Rows counted in units U.
template <typename U>
__global__ void gather_rows_kernel(const U* x, const int64_t* rows, U* out, int64_t n, int64_t row_units) {
  MLARUN_GRID_STRIDE(i, n * row_units) {
    const int64_t row = rows[i / row_units];
    out[i] = row >= 0 ? x[row * row_units + i % row_units] : U{};
  }
}

// out[rows[i], :] = src[i, :] (rows distinct), in units U.
template <typename U>
__global__ void scatter_rows_kernel(U* dst, const int64_t* rows, const U* src, int64_t n, int64_t row_units) {
  MLARUN_GRID_STRIDE(i, n * row_units) dst[rows[i / row_units] * row_units + i % row_units] = src[i];
}

// Block b adds into dst row dst_rows[b] the sources list[begin[b] .. begin[b + 1]) in order.
__global__ void scatter_add_kernel(void* dst, bool dst_bf16, const void* src, bool src_bf16, const float* weights,
                                   const int64_t* dst_rows, const int64_t* begin, const int64_t* sources,
                                   int64_t row_elems) {
  const int64_t row = dst_rows[blockIdx.x], first = begin[blockIdx.x], last = begin[blockIdx.x + 1];
  for (int64_t d = threadIdx.x; d < row_elems; d += blockDim.x) {
    float acc = load_f(dst, row * row_elems + d, dst_bf16);
    for (int64_t k = first; k < last; ++k) {
      const int64_t i = sources[k];
      acc += weights[i] * load_f(src, i * row_elems + d, src_bf16);
    }
    store_f(dst, row * row_elems + d, acc, dst_bf16);
  }
}

#undef MLARUN_GRID_STRIDE

}  // namespace

using detail::leading_rows;

namespace {

// The widest copy unit, in bytes, from 16 down to one element of `es` bytes, that divides every size in `elems`
// (counted in elements) and both addresses.
int64_t widest_unit(int64_t es, std::initializer_list<int64_t> elems, const void* a, const void* b) {
  int64_t unit = 16;
  for (; unit > es; unit /= 2) {
    bool fits = reinterpret_cast<uintptr_t>(a) % unit == 0 && reinterpret_cast<uintptr_t>(b) % unit == 0;
    for (int64_t n : elems) fits = fits && n * es % unit == 0;
    if (fits) break;
  }
  return unit;
}

// Calls launch(U{}) with U the unsigned type of `unit` bytes.
template <typename Launch>
void with_unit(int64_t unit, Launch&& launch) {
  switch (unit) {
    case 16: launch(uint4{}); break;
    case 8: launch(uint2{}); break;
    case 4: launch(uint32_t{}); break;
    case 2: launch(uint16_t{}); break;
    default: launch(uint8_t{}); break;
  }
}

}  // namespace

void copy_columns(const Tensor& src, const Tensor& dst, const ColumnCopy& c) {
  if (c.rows == 0 || c.width == 0) return;
  const int64_t es = int64_t(dtype_size(src.dtype()));
  const int64_t unit = widest_unit(es, {c.width, c.src_width, c.src_col, c.dst_width, c.dst_col}, src.raw(),
                                   dst.raw());
  ColumnCopy u = c;
  const int64_t per = unit / es;  // elements per unit
  u.width /= per, u.src_width /= per, u.src_col /= per, u.dst_width /= per, u.dst_col /= per;
  with_unit(unit, [&](auto unit_type) {
    using U = decltype(unit_type);
    copy_columns_kernel<U><<<grid_for(u.rows * u.width, kThreads), kThreads, 0, stream()>>>(
        static_cast<const U*>(src.raw()), static_cast<U*>(dst.raw()), u);
  });
  MLARUN_CUDA_CHECK_LAUNCH("copy_columns_kernel");
}

Tensor narrow_last_dim(const Tensor& x, int64_t start, int64_t len) {
  Shape shape = x.shape();
  const int64_t cols = shape.back(), rows = leading_rows(x);
  shape.back() = len;
  Tensor out = Tensor::empty(shape, x.dtype(), Device::CUDA);
  if (out.numel() == 0) return out;
  copy_columns(x, out, {rows, len, cols, start, 1, len, 0});
  return out;
}

Tensor concat_last_dim(const Tensor& a, const Tensor& b, int64_t b_repeat) {
  Shape shape = a.shape();
  const int64_t da = a.dim(-1), db = b.dim(-1), rows = leading_rows(a);
  shape.back() = da + db;
  Tensor out = Tensor::empty(shape, a.dtype(), Device::CUDA);
  if (out.numel() == 0) return out;
  copy_columns(a, out, {rows, da, da, 0, 1, da + db, 0});
  copy_columns(b, out, {rows, db, db, 0, b_repeat, da + db, da});
  return out;
}

Tensor transpose_last_two(const Tensor& x) {
  Shape shape = x.shape();
  const int64_t P = shape[shape.size() - 2], Q = shape.back();
  std::swap(shape[shape.size() - 2], shape.back());
  Tensor out = Tensor::empty(shape, x.dtype(), Device::CUDA);
  if (out.numel() == 0) return out;
  transpose_kernel<<<grid_for(out.numel(), kThreads), kThreads, 0, stream()>>>(
      x.raw(), out.raw(), x.numel() / (P * Q), P, Q, int(dtype_size(x.dtype())));
  MLARUN_CUDA_CHECK_LAUNCH("transpose_kernel");
  return out;
}

Tensor gather_rows(const Tensor& x, const Tensor& rows) {
  Shape shape = x.shape();
  const int64_t n = rows.numel();
  shape[0] = n;
  Tensor out = Tensor::empty(shape, x.dtype(), Device::CUDA);
  if (out.numel() == 0) return out;
  const int64_t row_elems = out.numel() / n, es = int64_t(dtype_size(x.dtype()));
  const int64_t unit = widest_unit(es, {row_elems}, x.raw(), out.raw()), row_units = row_elems * es / unit;
  with_unit(unit, [&](auto unit_type) {
    using U = decltype(unit_type);
    gather_rows_kernel<U><<<grid_for(n * row_units, kThreads), kThreads, 0, stream()>>>(
        static_cast<const U*>(x.raw()), rows.data<int64_t>(), static_cast<U*>(out.raw()), n, row_units);
  });
  MLARUN_CUDA_CHECK_LAUNCH("gather_rows_kernel");
  return out;
}

Tensor gather_rows(const Tensor& x, const std::vector<int64_t>& rows) { return gather_rows(x, upload(rows)); }

void scatter_rows(const Tensor& dst, const Tensor& rows, const Tensor& src) {
  const int64_t n = rows.numel();
  if (n == 0 || src.numel() == 0) return;
  const int64_t row_elems = src.numel() / n, es = int64_t(dtype_size(src.dtype()));
  const int64_t unit = widest_unit(es, {row_elems}, dst.raw(), src.raw()), row_units = row_elems * es / unit;
  with_unit(unit, [&](auto unit_type) {
    using U = decltype(unit_type);
    scatter_rows_kernel<U><<<grid_for(n * row_units, kThreads), kThreads, 0, stream()>>>(
        static_cast<U*>(dst.raw()), rows.data<int64_t>(), static_cast<const U*>(src.raw()), n, row_units);
  });
  MLARUN_CUDA_CHECK_LAUNCH("scatter_rows_kernel");
}

void scatter_add_rows(const Tensor& dst, const std::vector<int64_t>& rows, const Tensor& src,
                      const std::vector<float>& weights) {
  const bool dst_bf16 = is_bf16(dst, "scatter_add_rows"), src_bf16 = is_bf16(src, "scatter_add_rows");
  if (rows.empty() || dst.numel() == 0) return;
  const int64_t row_elems = dst.numel() / dst.dim(0);
  // Per destination row (in first-touched order), its sources in list order: a CSR built on the host.
  std::vector<int64_t> order(rows.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = int64_t(i);
  std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return rows[size_t(x)] < rows[size_t(y)]; });
  std::vector<int64_t> dst_rows, begin;
  for (size_t k = 0; k < order.size(); ++k)
    if (k == 0 || rows[size_t(order[k])] != rows[size_t(order[k - 1])]) {
      dst_rows.push_back(rows[size_t(order[k])]);
      begin.push_back(int64_t(k));
    }
  begin.push_back(int64_t(order.size()));
  Tensor dev_rows = upload(dst_rows), dev_begin = upload(begin), dev_sources = upload(order), dev_w = upload(weights);
  scatter_add_kernel<<<unsigned(dst_rows.size()), kThreads, 0, stream()>>>(
      dst.raw(), dst_bf16, src.raw(), src_bf16, dev_w.data<float>(), dev_rows.data<int64_t>(),
      dev_begin.data<int64_t>(), dev_sources.data<int64_t>(), row_elems);
  MLARUN_CUDA_CHECK_LAUNCH("scatter_add_kernel");
}

}  // namespace mlarun::ops::cuda
