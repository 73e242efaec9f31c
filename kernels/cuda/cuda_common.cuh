// Device-side helpers the CUDA ops share: f32/bf16 loads and stores chosen by a run-time flag (uniform across a
// launch, so the branch costs nothing next to the memory access), rounding to bf16, and warp/block reductions;
// and the one launch-side helper every kernel with a large shared-memory tile needs (allow_dynamic_smem).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

#include "runtime/cuda_check.h"

namespace mlarun::ops::cuda {

__device__ __forceinline__ float load_f(const void* p, int64_t i, bool bf16) {
  return bf16 ? __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]) : static_cast<const float*>(p)[i];
}

__device__ __forceinline__ void store_f(void* p, int64_t i, float v, bool bf16) {
  if (bf16)
    static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
  else
    static_cast<float*>(p)[i] = v;
}

// v as the storage dtype would hold it (identity for f32).
__device__ __forceinline__ float round_to(float v, bool bf16) {
  return bf16 ? __bfloat162float(__float2bfloat16_rn(v)) : v;
}

// 2^x in one MUFU.EX2, for softmax weights: exp2f without fast math adds a range fix-up (a compare, a select and
// two multiplies) for results below 2^-126, which such a weight does not need (it flushes to 0; -inf gives 0 and
// NaN stays NaN). Elsewhere the two agree bit for bit.
__device__ __forceinline__ float exp2_ftz(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// 8 bf16 (one 16-byte load) -> 8 fp32, exactly: a bf16 is the upper half of an fp32.
__device__ __forceinline__ void bf16x8_to_f32(const uint4 v, float (&f)[8]) {
  const unsigned w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(w[i] << 16);
    f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ double warp_sum(double v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result. `scratch` holds
// 32 values; the block must reach this call together.
template <typename T>
__device__ __forceinline__ T block_sum(T v, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T total = 0;
  for (int w = 0; w < warps; ++w) total += scratch[w];
  return total;
}

__device__ __forceinline__ float block_max(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float m = -INFINITY;
  for (int w = 0; w < warps; ++w) m = fmaxf(m, scratch[w]);
  return m;
}

// Opts `Kernel` into `bytes` of dynamic shared memory on the current device (launches past 48 KB need it): one
// cudaFuncSetAttribute per device and larger size, never per launch, so timed launches stay clean.
template <auto Kernel>
void allow_dynamic_smem(size_t bytes) {
  if (bytes <= 48 * 1024) return;
  static std::atomic<size_t> allowed[64];  // per device, zero-initialised
  int device = 0;
  MLARUN_CUDA_CHECK(cudaGetDevice(&device));
  std::atomic<size_t>* mine = device < 64 ? &allowed[device] : nullptr;
  if (mine != nullptr && mine->load() >= bytes) return;
  MLARUN_CUDA_CHECK(cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
  if (mine == nullptr) return;
  size_t seen = mine->load();
  while (seen < bytes && !mine->compare_exchange_weak(seen, bytes)) {
  }
}

}  // namespace mlarun::ops::cuda
