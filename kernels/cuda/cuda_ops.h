// The CUDA backend behind kernels/ops.h, one function per op, twin of kernels/cpu/cpu_ops.h: called by the
// dispatch in kernels/ops*.cpp after it has checked shapes and devices (so these check only what is
// CUDA-specific: dtypes, limits of the simple kernels). Plain C++ declarations: the .cu files define them; builds
// without CUDA link kernels/cuda_ops_stub.cpp instead. The large kernels (flash_prefill/, mla_decode/) have their
// own APIs in the same namespace (internals in sub-namespaces flash and mla). Work is queued on the current stream
// (runtime/device.h); outputs come from the caching allocator. Index data comes as device tensors (the step's,
// runtime/step_tensors.h: uploaded once per step); the std::vector overloads upload their list and call those.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/kv_quant.h"
#include "kernels/op_types.h"
#include "runtime/forward_batch.h"
#include "runtime/sampling_params.h"
#include "runtime/step_tensors.h"
#include "runtime/tensor.h"

namespace mlarun::ops::cuda {

// cublas_gemm.cpp
Tensor linear(const Tensor& x, const Tensor& w, DType out_dtype);  // x [M, K], w [N, K]
Tensor head_linear(const Tensor& x, const Tensor& w);              // x [T, H, K], w [H, N, K]
KeysValues mla_up_project(const Tensor& rows, const Tensor& wkv_b, int64_t nope, int64_t vd);  // ops::'s shapes
// expert_gemv.cu: ops::expert_linear (bf16); shapes checked by the caller. Outside the kernel's reach (K not a
// multiple of 8, a K too long for shared memory) it falls back to head_linear over every row, then zeroes the
// rows past the counts.
Tensor expert_linear(const Tensor& x, const Tensor& w, const Tensor& counts);
bool expert_linear_fits(const Tensor& x, const Tensor& w);

// elementwise_ops.cu
void add(const Tensor& a, const Tensor& b, const Tensor& out);  // out may be a
Tensor silu_mul(const Tensor& gate, const Tensor& up);
Tensor embedding(const std::vector<int32_t>& ids, const Tensor& table, int64_t vocab_start);
Tensor embedding(const Tensor& ids, const Tensor& table, int64_t vocab_start);  // ids i32 on the device
Tensor convert(const Tensor& x, DType dtype);
// the benchmarks' random values made on the device (ops::fill_random_normal), f32 or bf16 out
void fill_random_normal(Tensor& out, uint64_t stream, int64_t run, int64_t stride, int64_t first, float scale,
                        float offset);

// rms_norm.cu
Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps);
Tensor add_rms_norm(const Tensor& residual, const Tensor& delta, const Tensor& weight, float eps);

// data_movement.cu
Tensor narrow_last_dim(const Tensor& x, int64_t start, int64_t len);
// b_repeat: how many consecutive rows of a share one row of b (1, or the head count when b broadcasts).
Tensor concat_last_dim(const Tensor& a, const Tensor& b, int64_t b_repeat);
// dst[r, dst_col + j] = src[r / src_row_div, src_col + j] for r < rows, j < width, both row-major with the given
// row widths (elements); moves up to 16 bytes per thread where the widths, columns and addresses allow.
struct ColumnCopy {
  int64_t rows = 0, width = 0;
  int64_t src_width = 0, src_col = 0, src_row_div = 1;
  int64_t dst_width = 0, dst_col = 0;
};
void copy_columns(const Tensor& src, const Tensor& dst, const ColumnCopy& c);
Tensor transpose_last_two(const Tensor& x);
Tensor gather_rows(const Tensor& x, const std::vector<int64_t>& rows);
Tensor gather_rows(const Tensor& x, const Tensor& rows);                // rows i64 on the device
void scatter_rows(const Tensor& dst, const Tensor& rows, const Tensor& src);  // dst[rows[i]] = src[i]
void scatter_add_rows(const Tensor& dst, const std::vector<int64_t>& rows, const Tensor& src,
                      const std::vector<float>& weights);

// rope.cu
void apply_rope(const Tensor& x, const std::vector<int64_t>& positions, const RopeTable& table);
void apply_rope(const Tensor& x, const Tensor& positions, const RopeTable& table);  // positions i64 on the device

// moe_routing.cu
Routing route(const Tensor& logits, const Tensor& bias, const RoutingParams& p);

// moe_permute.cu: the device permutation and the weighted combine (see ops.h ExpertPermutation); routing on the device
ExpertPermutation permute_by_expert(const Tensor& experts, const Tensor& weights, int64_t first_expert,
                                    int64_t num_experts);
ExpertCapacityLayout permute_to_capacity(const Tensor& experts, int64_t first_expert, int64_t num_experts);
Tensor combine_experts(const Tensor& expert_out, const Tensor& slot_of, const Tensor& experts,
                       const Tensor& weights);

// paged_cache.cu
void write_cache(const Tensor& pool, const std::vector<int64_t>& slot_mapping, const Tensor& rows);
void write_cache(const Tensor& pool, const Tensor& slot_mapping, const Tensor& rows);  // slots i64 on the device
Tensor gather_cache(const Tensor& pool, const std::vector<int32_t>& block_table, int64_t len);

// simple_attention.cu. attention: query t sees keys [0, q_offset + t] clipped to k's rows (any q_offset).
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale, int64_t q_offset, Tensor* lse);
Tensor mla_paged_attention(const Tensor& q, const Tensor& pool, const std::vector<BatchSequence>& sequences,
                           int64_t kv_lora_rank, float scale, Tensor* lse);
// The same from device tensors: tables i32 (block tables laid end to end), per query row table_start i32 (where its
// table starts) and n_keys i32 (cached rows it sees).
Tensor mla_paged_attention(const Tensor& q, const Tensor& pool, const Tensor& tables, const Tensor& table_start,
                           const Tensor& n_keys, int64_t kv_lora_rank, float scale, Tensor* lse);
void lse_merge_rescale(const Tensor& o, const Tensor& lse_all, int64_t rank);
// o f32 or bf16, o_part f32 or bf16; lse and lse_part f32.
void merge_attention_partials(const Tensor& o, const Tensor& lse, const Tensor& o_part, const Tensor& lse_part);

// fast_attention.cpp: the two large kernels behind the model's attention (ops.h varlen_attention, mla_decode)
bool flash_prefill_fits(int64_t d_qk, int64_t d_v, DType dtype);
// q [part.num_tokens, H, Dqk], k/v [part.total_k, Hkv, D]: flash_prefill over the part's cu_seqlens, causal.
Tensor flash_varlen(const Tensor& q, const Tensor& k, const Tensor& v, float scale, const StepPart& part);
// The same over an OffsetVarlen batch (its causal offsets and device cu_seqlens), writing lse f32 [rows, H].
Tensor flash_varlen(const Tensor& q, const Tensor& k, const Tensor& v, float scale, const OffsetVarlen& layout,
                    Tensor& lse);
// "" when mla_decode takes these shapes and this cache (KvQuant::None: rows in `dtype`; Fp8/Int8: the 656-byte
// rows of kernels/kv_quant.h, dequantized inside the kernel), else why not.
std::string mla_decode_unfit(const StepPart& part, DType dtype, KvQuant cache, int64_t heads, int64_t kv_lora_rank,
                             int64_t rope_dim, int64_t block_size);
int mla_decode_sm_count();
size_t mla_decode_workspace(const StepPart& part, int64_t heads, int num_sms);
// The kernels the model's attention uses, chosen by environment variables read once per process (as vLLM picks its
// attention backend): MLARUN_MLA_DECODE_KERNEL = simt | mma | fitted | wgmma | wgmma-split | auto | wgmma-ws |
// wgmma-seesaw (mla_decode's attend kernel, config.h AttendKernel 0..7) and MLARUN_FLASH_PREFILL_KERNEL = mma |
// wgmma | wgmma-ws | wgmma-pipelined | wgmma-pingpong | wgmma-persistent | wgmma-persistent-pingpong | auto (0..6:
// FlashPrefillParams::wgmma, and with it warp_specialized, or pipelined with or without pingpong, and from 5 on
// persistent; 7 auto: per head dims, resolve_flash_prefill_kernel). Unset or empty: auto for both. The parsers
// throw mlarun::Error naming the variable, the value and the choices.
int32_t parse_mla_decode_kernel(const char* value);     // AttendKernel as an int
int32_t parse_flash_prefill_kernel(const char* value);  // 0 mma, 1 wgmma, 2 wgmma-ws, 3..6 pipelined, 7 auto
constexpr int32_t kFlashPrefillAuto = 7;
// The flash kernel `kernel` (0..7) names for q/k dim d_qk and v dim d_v: itself, or for auto the pipelined kernel
// with turns (4) where it measured faster (flash/config.h pipelined_prefill_by_default: MLA's 192/128), else the
// wgmma kernel (1; stage A's, 0, in a build without kWgmmaPrefill). The launch still falls back to stage A's kernel
// on a device without wgmma (FlashPrefillParams::wgmma).
int32_t resolve_flash_prefill_kernel(int32_t kernel, int64_t d_qk, int64_t d_v);
// The choices in force: the environment's, unless a test or benchmark set them (-1: back to the environment's).
// mla_decode plans record the kernel they were made with (ops::MlaDecodePlan::attend).
int32_t mla_decode_kernel();
int32_t flash_prefill_kernel();
void set_mla_decode_kernel(int32_t kernel);
void set_flash_prefill_kernel(int32_t kernel);
// o_lat [part.num_tokens, H, R] (bf16); runs the schedule stage first when `schedule`, then attend and combine.
// `lse` (when not null) receives f32 [part.num_tokens, H], natural log.
// `attend`: the attend kernel (config.h AttendKernel as an int) the workspace's schedule was or will be made for.
Tensor mla_decode_run(const Tensor& q, const Tensor& pool, KvQuant cache, const StepPart& part,
                      const Tensor& workspace, int num_sms, int32_t attend, bool schedule, int64_t kv_lora_rank,
                      float scale, Tensor* lse);

// sampling.cu
std::vector<int32_t> argmax_rows(const Tensor& logits);
std::vector<int32_t> sample_rows(const Tensor& logits, const std::vector<SamplingParams>& params,
                                 const std::vector<double>& uniforms);

}  // namespace mlarun::ops::cuda
