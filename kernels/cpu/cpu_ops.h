// The CPU backend behind kernels/ops.h, one function per op, twin of kernels/cuda/cuda_ops.h: the dispatch in
// kernels/ops*.cpp calls these after it has checked shapes, devices and (where an op computes) that the tensors
// are f32. Loops favour being obviously right, with f32 accumulation in a fixed order so results repeat; they
// are the reference every CUDA kernel is held to. Each group lives in the file named after its CUDA twin.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/kv_quant.h"
#include "kernels/op_types.h"
#include "runtime/forward_batch.h"
#include "runtime/sampling_params.h"
#include "runtime/tensor.h"

namespace mlarun::ops::cpu {

// gemm.cpp (twin of cuda/cublas_gemm.cpp); f32 only
Tensor linear(const Tensor& x, const Tensor& w);       // x [M, K], w [N, K] -> [M, N]
Tensor head_linear(const Tensor& x, const Tensor& w);  // x [T, H, K], w [H, N, K] -> [T, H, N]
// x [T, n, K], w [n, N, K], counts i64 [n] -> [T, n, N]: rows c < counts[j] of expert j, zeros elsewhere.
Tensor expert_linear(const Tensor& x, const Tensor& w, const Tensor& counts);

// elementwise_ops.cpp
void add(const Tensor& a, const Tensor& b, const Tensor& out);  // f32; out may be a
Tensor silu_mul(const Tensor& gate, const Tensor& up);          // f32
Tensor embedding(const std::vector<int32_t>& ids, const Tensor& table, int64_t vocab_start);  // f32 table
Tensor convert(const Tensor& x, DType dtype);                   // any dtype the runtime converts
// data_movement.cpp: the benchmarks' random values (ops::fill_random_normal), f32 or bf16 out
void fill_random_normal(Tensor& out, uint64_t stream, int64_t run, int64_t stride, int64_t first, float scale,
                        float offset);

// rms_norm.cpp; f32 only
Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps);
Tensor add_rms_norm(const Tensor& residual, const Tensor& delta, const Tensor& weight, float eps);

// data_movement.cpp: exact copies of any dtype; scatter_add_rows sums in f32
Tensor narrow_last_dim(const Tensor& x, int64_t start, int64_t len);
// b_repeat: how many consecutive rows of a share one row of b (1, or the head count when b broadcasts).
Tensor concat_last_dim(const Tensor& a, const Tensor& b, int64_t b_repeat);
Tensor transpose_last_two(const Tensor& x);
Tensor gather_rows(const Tensor& x, const std::vector<int64_t>& rows);  // a row -1: a zero row
void scatter_add_rows(const Tensor& dst, const std::vector<int64_t>& rows, const Tensor& src,
                      const std::vector<float>& weights);
void scatter_rows(const Tensor& dst, const std::vector<int64_t>& rows, const Tensor& src);  // dst[rows[i]] = src[i]

// rope.cpp; f32 only
void apply_rope(const Tensor& x, const std::vector<int64_t>& positions, const RopeTable& table);

// moe_routing.cpp
Routing route(const Tensor& logits, const Tensor& bias, const RoutingParams& p);  // bias undefined unless noaux_tc
// Host tensors (the dispatch copies a device routing back first).
ExpertGroups group_by_expert(const Tensor& experts, const Tensor& weights, int64_t first_expert,
                             int64_t num_experts);
// The same permutation as host tensors, with each assignment's index (ExpertPermutation).
ExpertPermutation permute_by_expert(const Tensor& experts, const Tensor& weights, int64_t first_expert,
                                    int64_t num_experts);
// The capacity layout (ExpertCapacityLayout); throws if a token picked one expert twice.
ExpertCapacityLayout permute_to_capacity(const Tensor& experts, int64_t first_expert, int64_t num_experts);
// y f32 [T, D] = per token, in ascending expert order, sum of weight * expert_out[slot] (ops::combine_experts).
Tensor combine_experts(const Tensor& expert_out, const Tensor& slot_of, const Tensor& experts, const Tensor& weights);

// paged_cache.cpp; f32 only
void write_cache(const Tensor& pool, const std::vector<int64_t>& slot_mapping, const Tensor& rows);
Tensor gather_cache(const Tensor& pool, const std::vector<int32_t>& block_table, int64_t len);

// kv_quant.cpp: the quantized (or bf16) latent cache, rows f32 (kernels/kv_quant.h)
void write_cache_quantized(const Tensor& pool, const KvCacheFormat& f, const std::vector<int64_t>& slot_mapping,
                           const Tensor& rows);
Tensor gather_rows_dequantized(const Tensor& pool, const KvCacheFormat& f, const std::vector<int64_t>& slots);

// simple_attention.cpp; f32 only. attention: query i sees keys [0, q_offset + i] clipped to k's rows (any q_offset;
// a row that sees none gets o 0, lse -inf).
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale, int64_t q_offset, Tensor* lse);
Tensor mla_paged_attention(const Tensor& q, const Tensor& pool, const std::vector<BatchSequence>& sequences,
                           int64_t kv_lora_rank, float scale, Tensor* lse);
void lse_merge_rescale(Tensor& o, const Tensor& lse_all, int64_t rank);
void merge_attention_partials(Tensor& o, Tensor& lse, const Tensor& o_part, const Tensor& lse_part);

// sampling.cpp (with the host sampler of cpu/sampling.h, which these call row by row); f32 logits
std::vector<int32_t> argmax_rows(const Tensor& logits);
std::vector<int32_t> sample_rows(const Tensor& logits, const std::vector<SamplingParams>& params,
                                 const std::vector<double>& uniforms);

}  // namespace mlarun::ops::cpu
