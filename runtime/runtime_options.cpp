// Validation of RuntimeOptions (see runtime_options.h).
#include "runtime/runtime_options.h"

#include "runtime/error.h"
#include "runtime/model_config.h"

namespace mlarun {

void RuntimeOptions::validate() const {
  MLARUN_CHECK(tp >= 1, "option --tp: value ", tp, ": must be at least 1");
  MLARUN_CHECK(block_size >= 1 && block_size <= kMaxBlockSize, "option --block-size: value ", block_size,
               ": must lie in [1, ", kMaxBlockSize, "]");
  MLARUN_CHECK(gpu_memory_utilization > 0 && gpu_memory_utilization <= 1, "option --gpu-memory-utilization: value ",
               gpu_memory_utilization, ": must lie in (0, 1]");
  MLARUN_CHECK(max_batch_size >= 1, "option --max-batch-size: value ", max_batch_size, ": must be at least 1");
  MLARUN_CHECK(max_seq_len >= 1, "option --max-seq-len: value ", max_seq_len, ": must be at least 1");
  MLARUN_CHECK(max_num_batched_tokens >= 1, "option --max-num-batched-tokens: value ", max_num_batched_tokens,
               ": must be at least 1");
  MLARUN_CHECK(num_blocks == -1 || num_blocks >= 1, "option --num-blocks: value ", num_blocks,
               ": must be at least 1 (or -1 to size the cache from memory)");
  MLARUN_CHECK(kv_dtype == DType::BF16 || kv_dtype == DType::F16 || kv_dtype == DType::F32 ||
                   kv_dtype == DType::F8_E4M3,
               "option --kv-dtype: value ", dtype_name(kv_dtype), ": the cache holds bf16, f16, f32 or fp8 values");
}

void RuntimeOptions::validate_for(const ModelConfig& m) const {
  validate();
  m.validate_for_tp(tp);
}

}  // namespace mlarun
