// RoPE on the GPU with the model's YaRN (or plain) inverse frequencies: rotates the last rotary_dim values of
// every row of x[T, H, D] in place, pairs (2i, 2i+1) when interleaved, else (i, i + half). Arithmetic as the CPU
// reference: angle = f32(position) * inv_freq[i] in f32, cos/sin of it in double, rotation in f32, one rounding
// to the storage dtype. One thread per (token, row, pair).
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_ops.h"

namespace mlarun::ops::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void rope_kernel(void* x, const int64_t* positions, const float* inv_freq, int64_t tokens, int64_t rows,
                            int64_t width, int64_t half, float attention_factor, bool interleaved, bool bf16) {
  const int64_t n = tokens * rows * half;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n; k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = k % half, row = k / half, t = row / rows;
    const float angle = float(positions[t]) * inv_freq[i];
    double s, c;
    sincos(double(angle), &s, &c);
    const float cf = float(c) * attention_factor, sf = float(s) * attention_factor;
    const int64_t tail = row * width + (width - 2 * half);
    const int64_t first = interleaved ? tail + 2 * i : tail + i;
    const int64_t second = interleaved ? first + 1 : tail + half + i;
    const float a = load_f(x, first, bf16), b = load_f(x, second, bf16);
    store_f(x, first, a * cf - b * sf, bf16);
    store_f(x, second, a * sf + b * cf, bf16);
  }
}

}  // namespace

void apply_rope(const Tensor& x, const Tensor& positions, const RopeTable& table) {
  const bool bf16 = is_bf16(x, "apply_rope");
  const int64_t T = x.dim(0), rows = x.dim(1), width = x.dim(2), half = int64_t(table.inv_freq.size());
  if (T * rows * half == 0) return;
  // The model keeps a device copy of the frequencies (rope_table_on); a bare table uploads them.
  const bool resident = table.inv_freq_tensor.defined() && table.inv_freq_tensor.device() == Device::CUDA &&
                        table.inv_freq_tensor.numel() == half;
  Tensor dev_freq = resident ? table.inv_freq_tensor : upload(table.inv_freq);
  rope_kernel<<<grid_for(T * rows * half, kThreads), kThreads, 0, stream()>>>(
      x.raw(), positions.data<int64_t>(), dev_freq.data<float>(), T, rows, width, half, table.attention_factor,
      table.interleaved, bf16);
  MLARUN_CUDA_CHECK_LAUNCH("rope_kernel");
}

void apply_rope(const Tensor& x, const std::vector<int64_t>& positions, const RopeTable& table) {
  apply_rope(x, upload(positions), table);
}

}  // namespace mlarun::ops::cuda
