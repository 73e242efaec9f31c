// Element-wise CUDA ops: add, SiLU-mul, embedding rows, dtype conversion, the benchmarks' random values. Each
// element is computed in f32 and rounded once to the output dtype (silu_mul rounds the activation first, as a
// bf16 model does: act_fn(gate) is a bf16 tensor before it meets up). Grid-stride loops, one thread per element:
// simple and memory-bound.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/random_normal.h"

namespace mlarun::ops::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void add_kernel(const void* a, const void* b, void* out, int64_t n, bool bf16) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    store_f(out, i, load_f(a, i, bf16) + load_f(b, i, bf16), bf16);
}

__global__ void silu_mul_kernel(const void* gate, const void* up, void* out, int64_t n, bool bf16) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float g = load_f(gate, i, bf16);
    float act = round_to(g / (1.0f + expf(-g)), bf16);
    store_f(out, i, act * load_f(up, i, bf16), bf16);
  }
}

// out[t, :] = table[ids[t] - vocab_start, :] inside this shard's rows, else zeros.
__global__ void embedding_kernel(const int32_t* ids, const void* table, void* out, int64_t tokens, int64_t rows,
                                 int64_t dim, int64_t vocab_start, bool bf16) {
  const int64_t n = tokens * dim;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / dim, d = i % dim, local = int64_t(ids[t]) - vocab_start;
    store_f(out, i, local >= 0 && local < rows ? load_f(table, local * dim + d, bf16) : 0.0f, bf16);
  }
}

__global__ void convert_kernel(const void* in, bool in_bf16, void* out, bool out_bf16, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    store_f(out, i, load_f(in, i, in_bf16), out_bf16);
}

// Element i of rows of `run`: value i / run * stride + first + i % run of stream `values`, times scale plus offset with
// the multiply and the add rounded apart (__fmul_rn / __fadd_rn: nvcc would fuse them), as the host computes it.
__global__ void fill_random_normal_kernel(void* out, bool bf16, int64_t n, uint64_t values, int64_t run,
                                          int64_t stride, int64_t first, float scale, float offset) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t index = i / run * stride + first + i % run;
    store_f(out, i, __fadd_rn(__fmul_rn(random_values::normal(values, uint64_t(index)), scale), offset), bf16);
  }
}

}  // namespace

void add(const Tensor& a, const Tensor& b, const Tensor& out) {
  const bool bf16 = is_bf16(a, "add");
  MLARUN_CHECK(b.dtype() == a.dtype() && out.dtype() == a.dtype(), "add: ", a.describe(), " + ", b.describe(),
               " into ", out.describe(), ": one dtype only");
  const int64_t n = a.numel();
  if (n == 0) return;
  add_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(a.raw(), b.raw(), out.raw(), n, bf16);
  MLARUN_CUDA_CHECK_LAUNCH("add_kernel");
}

Tensor silu_mul(const Tensor& gate, const Tensor& up) {
  const bool bf16 = is_bf16(gate, "silu_mul");
  MLARUN_CHECK(up.dtype() == gate.dtype(), "silu_mul: gate ", gate.describe(), " and up ", up.describe(),
               " differ in dtype");
  Tensor out = Tensor::empty(gate.shape(), gate.dtype(), Device::CUDA);
  const int64_t n = gate.numel();
  if (n == 0) return out;
  silu_mul_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(gate.raw(), up.raw(), out.raw(), n, bf16);
  MLARUN_CUDA_CHECK_LAUNCH("silu_mul_kernel");
  return out;
}

Tensor embedding(const Tensor& ids, const Tensor& table, int64_t vocab_start) {
  const bool bf16 = is_bf16(table, "embedding");
  const int64_t T = ids.numel(), rows = table.dim(0), dim = table.dim(1);
  Tensor out = Tensor::empty({T, dim}, table.dtype(), Device::CUDA);
  if (T == 0 || dim == 0) return out;
  embedding_kernel<<<grid_for(T * dim, kThreads), kThreads, 0, stream()>>>(
      ids.data<int32_t>(), table.raw(), out.raw(), T, rows, dim, vocab_start, bf16);
  MLARUN_CUDA_CHECK_LAUNCH("embedding_kernel");
  return out;
}

Tensor embedding(const std::vector<int32_t>& ids, const Tensor& table, int64_t vocab_start) {
  return embedding(upload(ids), table, vocab_start);
}

void fill_random_normal(Tensor& out, uint64_t values, int64_t run, int64_t stride, int64_t first, float scale,
                        float offset) {
  const bool bf16 = is_bf16(out, "fill_random_normal");
  const int64_t n = out.numel();
  if (n == 0) return;
  fill_random_normal_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(out.raw(), bf16, n, values, run, stride,
                                                                               first, scale, offset);
  MLARUN_CUDA_CHECK_LAUNCH("fill_random_normal_kernel");
}

Tensor convert(const Tensor& x, DType dtype) {
  const bool in_bf16 = is_bf16(x, "convert");
  MLARUN_CHECK(dtype == DType::F32 || dtype == DType::BF16, "convert: CUDA converts between f32 and bf16, asked ",
               x.describe(), " -> ", dtype_name(dtype));
  Tensor out = Tensor::empty(x.shape(), dtype, Device::CUDA);
  const int64_t n = x.numel();
  if (n == 0) return out;
  convert_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(x.raw(), in_bf16, out.raw(),
                                                                      dtype == DType::BF16, n);
  MLARUN_CUDA_CHECK_LAUNCH("convert_kernel");
  return out;
}

}  // namespace mlarun::ops::cuda
