// Validation of RuntimeOptions (see runtime_options.h): one place, used by every command and by the scheduler.
#include "runtime/runtime_options.h"

#include <cmath>

#include "runtime/error.h"
#include "runtime/model_config.h"

namespace mlarun {

KvCacheDtype parse_kv_cache_dtype(const std::string& text) {
  if (text == "auto") return KvCacheDtype::Auto;
  if (text == "bf16") return KvCacheDtype::Bf16;
  if (text == "fp8" || text == "fp8_e4m3") return KvCacheDtype::Fp8;
  if (text == "int8") return KvCacheDtype::Int8;
  fail("option --kv-cache-dtype: value '", text, "': expected auto, bf16, fp8 or int8");
}

const char* kv_cache_dtype_name(KvCacheDtype t) {
  switch (t) {
    case KvCacheDtype::Auto: return "auto";
    case KvCacheDtype::Bf16: return "bf16";
    case KvCacheDtype::Fp8: return "fp8";
    case KvCacheDtype::Int8: return "int8";
  }
  return "unknown";
}

int64_t kv_quant_row_bytes(int64_t kv_lora_rank, int64_t rope_dim, int64_t head) {
  if (head <= 0) head = kv_lora_rank;
  MLARUN_CHECK(head > 0 && kv_lora_rank % head == 0, "kv cache row: ", kv_lora_rank, " values are not whole heads of ",
               head);
  return kv_lora_rank + 4 * (kv_lora_rank / head) * ((head + 127) / 128) + 2 * rope_dim;
}

KvCacheStorage kv_cache_storage(KvCacheDtype t, DType model_dtype, int64_t kv_lora_rank, int64_t rope_dim,
                                int64_t head) {
  switch (t) {
    case KvCacheDtype::Auto: return {model_dtype, kv_lora_rank + rope_dim};
    case KvCacheDtype::Bf16: return {DType::BF16, kv_lora_rank + rope_dim};
    case KvCacheDtype::Fp8: return {DType::F8_E4M3, kv_quant_row_bytes(kv_lora_rank, rope_dim, head)};
    case KvCacheDtype::Int8: return {DType::I8, kv_quant_row_bytes(kv_lora_rank, rope_dim, head)};
  }
  return {model_dtype, kv_lora_rank + rope_dim};
}

void RuntimeOptions::validate() const {
  MLARUN_CHECK(tp >= 1, "option --tensor-parallel-size (--tp): value ", tp, ": must be at least 1");
  MLARUN_CHECK(decode_context_parallel_size >= 1 && tp % decode_context_parallel_size == 0,
               "option --decode-context-parallel-size (--dcp): value ", decode_context_parallel_size,
               ": must be at least 1 and divide --tensor-parallel-size (", tp, ")");
  MLARUN_CHECK(block_size >= 1 && block_size <= kMaxBlockSize, "option --block-size: value ", block_size,
               ": must lie in [1, ", kMaxBlockSize, "]");
  MLARUN_CHECK(num_blocks == -1 || num_blocks >= 1, "option --num-gpu-blocks-override (--num-blocks): value ",
               num_blocks, ": must be at least 1 (or -1 to size the cache from memory)");
  MLARUN_CHECK(std::isfinite(gpu_memory_utilization) && gpu_memory_utilization > 0 && gpu_memory_utilization <= 1,
               "option --gpu-memory-utilization: value ", gpu_memory_utilization, ": must lie in (0, 1]");
  MLARUN_CHECK(max_num_seqs >= 1, "option --max-num-seqs (--max-batch-size): value ", max_num_seqs,
               ": must be at least 1");
  MLARUN_CHECK(max_num_batched_tokens >= 1, "option --max-num-batched-tokens: value ", max_num_batched_tokens,
               ": must be at least 1");
  MLARUN_CHECK(max_model_len >= 1, "option --max-model-len (--max-seq-len): value ", max_model_len,
               ": must be at least 1");
  MLARUN_CHECK(prefill_context_piece_tokens >= 1, "option --prefill-context-piece-tokens: value ",
               prefill_context_piece_tokens, ": must be at least 1");
  MLARUN_CHECK(mla_absorbed_max_tokens == -1 || mla_absorbed_max_tokens >= 1,
               "option --mla-absorbed-max-tokens: value ", mla_absorbed_max_tokens,
               ": must be at least 1 (1: the absorbed path for decode only) or -1 (the device's default)");
  MLARUN_CHECK(moe_capacity_max_tokens >= -1, "option --moe-capacity-max-tokens: value ", moe_capacity_max_tokens,
               ": must be at least 0 (0: never) or -1 (the device's default)");
  MLARUN_CHECK(eos_token_id >= -1, "eos_token_id: value ", eos_token_id, ": must be a token id or -1 (none)");
}

int64_t RuntimeOptions::mla_absorbed_max_tokens_on_device() const {
  if (mla_absorbed_max_tokens != -1) return mla_absorbed_max_tokens;
  return device == Device::CUDA ? kMlaAbsorbedMaxTokensCuda : kMlaAbsorbedMaxTokensCpu;
}

int64_t RuntimeOptions::moe_capacity_max_tokens_on_device() const {
  return moe_capacity_max_tokens_for(device, moe_capacity_max_tokens);
}

void RuntimeOptions::validate_for(const ModelConfig& m) const {
  validate();
  m.validate_for_tp(tp);
  // Under DCP the queries are split over tp / dcp head groups (each rank of a group computes the group's heads);
  // tp dividing the heads already implies it, the check only names the option.
  const int64_t groups = tp / decode_context_parallel_size;
  MLARUN_CHECK(m.n_heads % groups == 0, "option --decode-context-parallel-size (--dcp): value ",
               decode_context_parallel_size, ": the ", m.n_heads, " attention heads do not split over ", groups,
               " head groups (tp / dcp)");
}

}  // namespace mlarun
