// RuntimeOptions: how a model is run (not what it is): device, tensor-parallel size, cache block size, memory
// fraction, batch and sequence limits. Validated like the model config, with errors naming the option and the value.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/dtype.h"
#include "runtime/tensor.h"

namespace mlarun {

struct ModelConfig;

struct RuntimeOptions {
  int64_t tp = 1;                          // --tp: tensor-parallel ranks
  int64_t block_size = 64;                 // --block-size: tokens per cache block, 1..256
  double gpu_memory_utilization = 0.9;     // --gpu-memory-utilization: fraction of GPU memory to use, (0, 1]
  int64_t max_batch_size = 256;            // --max-batch-size: sequences per step
  int64_t max_seq_len = 4096;              // --max-seq-len: longest prompt + generation
  int64_t max_num_batched_tokens = 8192;   // --max-num-batched-tokens: tokens per step
  int64_t num_blocks = -1;                 // --num-blocks: cache blocks per layer; -1 sizes from memory
  DType kv_dtype = DType::BF16;            // --kv-dtype
  Device device = Device::CPU;             // --device: cpu (the f32 reference) or cuda (bf16 weights and cache)

  static constexpr int64_t kMaxBlockSize = 256;

  void validate() const;                          // throws naming the option
  void validate_for(const ModelConfig& m) const;  // also: the model splits over tp ranks
};

}  // namespace mlarun
