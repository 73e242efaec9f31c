// Host-side helpers the CUDA ops share: the current stream as a cudaStream_t, uploading small host index lists
// (through the caching allocator, in stream order), grid sizes, the device's multiprocessor count, and the dtype
// flag the kernels take (they read and write f32 or bf16, chosen at run time, so each kernel is compiled once).
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "runtime/cuda_check.h"
#include "runtime/device.h"
#include "runtime/error.h"
#include "runtime/tensor.h"

namespace mlarun::ops::cuda {

inline cudaStream_t stream() { return current_stream(); }

// A device copy of `values` (i32, i64 or f32); the host vector may be freed as soon as this returns.
template <typename T>
Tensor upload(const std::vector<T>& values) {
  Tensor host = Tensor::empty({int64_t(values.size())}, DTypeOf<T>::value);
  if (!values.empty()) std::memcpy(host.raw(), values.data(), values.size() * sizeof(T));
  return host.to(Device::CUDA);
}

// A device copy of `nbytes` raw bytes (arrays of plain structs); the host buffer may be freed on return.
inline Tensor upload_bytes(const void* data, size_t nbytes) {
  Tensor host = Tensor::empty({int64_t(nbytes)}, DType::F8_E4M3);  // one byte per element: raw storage
  if (nbytes) std::memcpy(host.raw(), data, nbytes);
  return host.to(Device::CUDA);
}

// True for bf16, false for f32; anything else is an error naming the op.
inline bool is_bf16(const Tensor& t, const char* op) {
  MLARUN_CHECK(t.dtype() == DType::BF16 || t.dtype() == DType::F32, op, ": CUDA kernels read f32 or bf16, got ",
               t.describe());
  return t.dtype() == DType::BF16;
}

// Blocks for a grid-stride loop over n items (capped: the loop covers the rest).
inline unsigned grid_for(int64_t n, int threads) {
  return unsigned(std::max<int64_t>(1, std::min<int64_t>((n + threads - 1) / threads, int64_t(1) << 16)));
}

// Multiprocessors of the current device (a CUDA call; throws mlarun::Error when there is none): what persistent
// and SM-balanced kernels size their grids by.
inline int current_device_sm_count() {
  int device = 0, sms = 0;
  MLARUN_CUDA_CHECK(cudaGetDevice(&device));
  MLARUN_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return sms;
}

}  // namespace mlarun::ops::cuda
