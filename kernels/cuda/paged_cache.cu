// The paged cache on the GPU: writing this step's rows to their slots (slot -1: padding, skipped) and gathering
// one sequence's rows through its block table. Slots and block ids were checked on the host (kernels/
// ops_attention.cpp, or runtime/step_tensors.cpp for a step's tensors) before upload. One thread per element; rows are contiguous, so accesses coalesce.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_ops.h"

namespace mlarun::ops::cuda {

namespace {

constexpr int kThreads = 256;

// pool[slots[t], :] = rows[t, :] for slots[t] >= 0 (element size 2 or 4 bytes: bf16 or f32 pools)
__global__ void write_cache_kernel(void* pool, const int64_t* slots, const void* rows, int64_t tokens, int64_t width,
                                   bool bf16) {
  const int64_t n = tokens * width;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t slot = slots[i / width];
    if (slot < 0) continue;
    const int64_t dst = slot * width + i % width;
    if (bf16)
      static_cast<uint16_t*>(pool)[dst] = static_cast<const uint16_t*>(rows)[i];
    else
      static_cast<float*>(pool)[dst] = static_cast<const float*>(rows)[i];
  }
}

// out[t, :] = pool[table[t / block_size] * block_size + t % block_size, :]
__global__ void gather_cache_kernel(const void* pool, const int32_t* table, void* out, int64_t len, int64_t block_size,
                                    int64_t width, bool bf16) {
  const int64_t n = len * width;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / width;
    const int64_t src = (int64_t(table[t / block_size]) * block_size + t % block_size) * width + i % width;
    if (bf16)
      static_cast<uint16_t*>(out)[i] = static_cast<const uint16_t*>(pool)[src];
    else
      static_cast<float*>(out)[i] = static_cast<const float*>(pool)[src];
  }
}

}  // namespace

void write_cache(const Tensor& pool, const Tensor& slot_mapping, const Tensor& rows) {
  const bool bf16 = is_bf16(pool, "write_cache");
  const int64_t T = rows.dim(0), width = rows.dim(1);
  if (T * width == 0) return;
  write_cache_kernel<<<grid_for(T * width, kThreads), kThreads, 0, stream()>>>(
      pool.raw(), slot_mapping.data<int64_t>(), rows.raw(), T, width, bf16);
  MLARUN_CUDA_CHECK_LAUNCH("write_cache_kernel");
}

void write_cache(const Tensor& pool, const std::vector<int64_t>& slot_mapping, const Tensor& rows) {
  write_cache(pool, upload(slot_mapping), rows);
}

Tensor gather_cache(const Tensor& pool, const std::vector<int32_t>& block_table, int64_t len) {
  const bool bf16 = is_bf16(pool, "gather_cache");
  const int64_t bs = pool.dim(1), width = pool.dim(2);
  Tensor out = Tensor::empty({len, width}, pool.dtype(), Device::CUDA);
  if (len * width == 0) return out;
  Tensor dev_table = upload(block_table);
  gather_cache_kernel<<<grid_for(len * width, kThreads), kThreads, 0, stream()>>>(
      pool.raw(), dev_table.data<int32_t>(), out.raw(), len, bs, width, bf16);
  MLARUN_CUDA_CHECK_LAUNCH("gather_cache_kernel");
  return out;
}

}  // namespace mlarun::ops::cuda
