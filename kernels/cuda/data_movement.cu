// Data movement on the GPU: column slices, concatenation (with the head broadcast MLA's shared k_pe needs),
// transposes, row gathers (copies of any element size, one thread per element) and the weighted scatter-add that
// combines MoE expert outputs. The scatter-add is deterministic: the host turns the row list into, per destination
// row, its sources in list order, and one block sums them in that order in f32.
#include <algorithm>

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

// out[r, j] = x[r, start + j]
__global__ void narrow_kernel(const void* x, void* out, int64_t rows, int64_t cols, int64_t start, int64_t len,
                              int es) {
  MLARUN_GRID_STRIDE(i, rows * len) copy_element(out, i, x, (i / len) * cols + start + i % len, es);
}

// out[r, j] = j < da ? a[r, j] : b[r / repeat, j - da]
__global__ void concat_kernel(const void* a, const void* b, void* out, int64_t rows, int64_t da, int64_t db,
                              int64_t repeat, int es) {
  const int64_t width = da + db;
  MLARUN_GRID_STRIDE(i, rows * width) {
    const int64_t r = i / width, j = i % width;
    if (j < da)
      copy_element(out, i, a, r * da + j, es);
    else
      copy_element(out, i, b, (r / repeat) * db + (j - da), es);
  }
}

// out[b, q, p] = x[b, p, q]
__global__ void transpose_kernel(const void* x, void* out, int64_t batch, int64_t P, int64_t Q, int es) {
  MLARUN_GRID_STRIDE(i, batch * P * Q) {
    const int64_t b = i / (P * Q), q = (i / P) % Q, p = i % P;
    copy_element(out, i, x, (b * P + p) * Q + q, es);
  }
}

// out[i, :] = x[rows[i], :]
// out[i, :] = x[rows[i], :]; a row -1 gives zeros (an empty row of a capacity layout)
__global__ void gather_rows_kernel(const void* x, const int64_t* rows, void* out, int64_t n, int64_t row_elems,
                                   int es) {
  MLARUN_GRID_STRIDE(i, n * row_elems) {
    const int64_t row = rows[i / row_elems];
    if (row >= 0) {
      copy_element(out, i, x, row * row_elems + i % row_elems, es);
    } else {
      const uint64_t zero = 0;
      copy_element(out, i, &zero, 0, es);
    }
  }
}

// out[rows[i], :] = src[i, :] (rows distinct)
__global__ void scatter_rows_kernel(void* dst, const int64_t* rows, const void* src, int64_t n, int64_t row_elems,
                                    int es) {
  MLARUN_GRID_STRIDE(i, n * row_elems) copy_element(dst, rows[i / row_elems] * row_elems + i % row_elems, src, i, es);
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

Tensor narrow_last_dim(const Tensor& x, int64_t start, int64_t len) {
  Shape shape = x.shape();
  const int64_t cols = shape.back(), rows = leading_rows(x);
  shape.back() = len;
  Tensor out = Tensor::empty(shape, x.dtype(), Device::CUDA);
  if (out.numel() == 0) return out;
  narrow_kernel<<<grid_for(out.numel(), kThreads), kThreads, 0, stream()>>>(x.raw(), out.raw(), rows, cols, start,
                                                                             len, int(dtype_size(x.dtype())));
  MLARUN_CUDA_CHECK_LAUNCH("narrow_kernel");
  return out;
}

Tensor concat_last_dim(const Tensor& a, const Tensor& b, int64_t b_repeat) {
  Shape shape = a.shape();
  const int64_t da = a.dim(-1), db = b.dim(-1), rows = leading_rows(a);
  shape.back() = da + db;
  Tensor out = Tensor::empty(shape, a.dtype(), Device::CUDA);
  if (out.numel() == 0) return out;
  concat_kernel<<<grid_for(out.numel(), kThreads), kThreads, 0, stream()>>>(a.raw(), b.raw(), out.raw(), rows, da, db,
                                                                             b_repeat, int(dtype_size(a.dtype())));
  MLARUN_CUDA_CHECK_LAUNCH("concat_kernel");
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
  const int64_t row_elems = out.numel() / n;
  gather_rows_kernel<<<grid_for(out.numel(), kThreads), kThreads, 0, stream()>>>(
      x.raw(), rows.data<int64_t>(), out.raw(), n, row_elems, int(dtype_size(x.dtype())));
  MLARUN_CUDA_CHECK_LAUNCH("gather_rows_kernel");
  return out;
}

Tensor gather_rows(const Tensor& x, const std::vector<int64_t>& rows) { return gather_rows(x, upload(rows)); }

void scatter_rows(const Tensor& dst, const Tensor& rows, const Tensor& src) {
  const int64_t n = rows.numel();
  if (n == 0 || src.numel() == 0) return;
  const int64_t row_elems = src.numel() / n;
  scatter_rows_kernel<<<grid_for(src.numel(), kThreads), kThreads, 0, stream()>>>(
      dst.raw(), rows.data<int64_t>(), src.raw(), n, row_elems, int(dtype_size(src.dtype())));
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
