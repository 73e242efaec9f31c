// The CUDA backend behind kernels/ops.h, one function per op, twin of kernels/cpu/cpu_ops.h: called by the
// dispatch in kernels/ops*.cpp after it has checked shapes and devices (so these check only what is
// CUDA-specific: dtypes, limits of the simple kernels). Plain C++ declarations: the .cu files define them; builds
// without CUDA link kernels/cuda_ops_stub.cpp instead. The large kernels (flash_prefill/, mla_decode/) have their
// own APIs in the same namespace (internals in sub-namespaces flash and mla). Work is queued on the current stream
// (runtime/device.h); outputs come from the caching allocator. Host index lists are uploaded per call (small; a
// per-step upload is a later step).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/op_types.h"
#include "runtime/forward_batch.h"
#include "runtime/sampling_params.h"
#include "runtime/tensor.h"

namespace mlarun::ops::cuda {

// cublas_gemm.cpp
Tensor linear(const Tensor& x, const Tensor& w, DType out_dtype);  // x [M, K], w [N, K]
Tensor head_linear(const Tensor& x, const Tensor& w);              // x [T, H, K], w [H, N, K]

// elementwise_ops.cu
void add(const Tensor& a, const Tensor& b, const Tensor& out);  // out may be a
Tensor silu_mul(const Tensor& gate, const Tensor& up);
Tensor embedding(const std::vector<int32_t>& ids, const Tensor& table, int64_t vocab_start);
Tensor convert(const Tensor& x, DType dtype);

// rms_norm.cu
Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps);
Tensor add_rms_norm(const Tensor& residual, const Tensor& delta, const Tensor& weight, float eps);

// data_movement.cu
Tensor narrow_last_dim(const Tensor& x, int64_t start, int64_t len);
// b_repeat: how many consecutive rows of a share one row of b (1, or the head count when b broadcasts).
Tensor concat_last_dim(const Tensor& a, const Tensor& b, int64_t b_repeat);
Tensor transpose_last_two(const Tensor& x);
Tensor gather_rows(const Tensor& x, const std::vector<int64_t>& rows);
void scatter_add_rows(const Tensor& dst, const std::vector<int64_t>& rows, const Tensor& src,
                      const std::vector<float>& weights);

// rope.cu
void apply_rope(const Tensor& x, const std::vector<int64_t>& positions, const RopeTable& table);

// moe_routing.cu
Routing route(const Tensor& logits, const Tensor& bias, const RoutingParams& p);

// paged_cache.cu
void write_cache(const Tensor& pool, const std::vector<int64_t>& slot_mapping, const Tensor& rows);
Tensor gather_cache(const Tensor& pool, const std::vector<int32_t>& block_table, int64_t len);

// simple_attention.cu
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale, int64_t q_offset, Tensor* lse);
Tensor mla_paged_attention(const Tensor& q, const Tensor& pool, const std::vector<BatchSequence>& sequences,
                           int64_t kv_lora_rank, float scale, Tensor* lse);

// sampling.cu
std::vector<int32_t> argmax_rows(const Tensor& logits);
std::vector<int32_t> sample_rows(const Tensor& logits, const std::vector<SamplingParams>& params,
                                 const std::vector<double>& uniforms);

}  // namespace mlarun::ops::cuda
