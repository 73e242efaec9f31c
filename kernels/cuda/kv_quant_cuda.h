// The CUDA side of the quantized latent cache (kernels/kv_quant.h): a separate header so that builds without CUDA
// kernels link the stubs in kernels/cuda_ops_stub.cpp. Pools, slots and rows were checked by kernels/kv_quant.cpp.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/kv_quant.h"
#include "runtime/tensor.h"

namespace mlarun::ops::cuda {

// rows [T, latent + rope] (bf16 or f32) -> the pool's quantized rows at slots (i64 [T] on the device; -1 skipped).
void write_cache_quantized(const Tensor& pool, const KvCacheFormat& f, const Tensor& slots, const Tensor& rows);
// The slots' rows (i64 [n] on the device, each a valid slot), dequantized -> [n, latent + rope] of out_dtype.
Tensor gather_rows_dequantized(const Tensor& pool, const KvCacheFormat& f, const Tensor& slots, DType out_dtype);
// A host slot list on the device (i64 [n]).
Tensor upload_slots(const std::vector<int64_t>& slots);

}  // namespace mlarun::ops::cuda
