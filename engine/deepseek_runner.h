// DeepseekRunner: the ModelRunner the engine drives. Owns the model (this rank's slices), the paged latent
// cache pools and the communicator that keeps ranks in step; sizes the cache from the runtime options. On the CPU
// the model and cache are f32 within a fixed budget; on the GPU (options.device) they are bf16 and the cache takes
// what a warm-up step leaves of --gpu-memory-utilization (gpu_memory_profile.h). Each step's index data goes to the
// device once (StepTensors, through a pinned staging buffer the runner keeps); logits stay on the model's device.
#pragma once

#include <memory>
#include <string>

#include "engine/model_runner.h"
#include "model/deepseek_model.h"
#include "runtime/cache_pool.h"
#include "runtime/runtime_options.h"
#include "runtime/step_tensors.h"

namespace mlarun {

struct CacheCapacity {
  int64_t num_blocks = 0;
  int64_t block_size = 0;
  int64_t bytes_per_block = 0;  // all layers
  int64_t budget_bytes = 0;     // what the cache was allowed (0 when --num-blocks fixed it)
  int64_t tokens() const { return num_blocks * block_size; }
  double max_concurrency(int64_t seq_len) const { return double(tokens()) / double(seq_len); }
};

class DeepseekRunner final : public ModelRunner {
 public:
  // Loads the checkpoint in `model_dir` (whose config.json is `config`) onto options.device and allocates the
  // cache there.
  DeepseekRunner(ModelConfig config, const std::string& model_dir, const RuntimeOptions& options, Communicator& comm,
                 const LoadProgress& progress = {});
  // The same, reading config.json from `model_dir`.
  DeepseekRunner(const std::string& model_dir, const RuntimeOptions& options, Communicator& comm,
                 const LoadProgress& progress = {});

  Tensor execute(const ForwardBatch& batch) override;
  int64_t vocab_size() const override { return model_->config().vocab_size; }
  int64_t block_size() const override { return capacity_.block_size; }
  int64_t num_blocks() const override { return capacity_.num_blocks; }
  void sync_sampled(std::vector<int32_t>& tokens) override;
  bool is_driver() const override { return comm_.rank() == 0; }

  const ModelConfig& config() const { return model_->config(); }
  const CacheCapacity& capacity() const { return capacity_; }
  const Placement& placement() const { return model_->placement(); }
  // Without --num-blocks: room for max_num_seqs sequences of max_model_len, within `budget_bytes`, for a cache
  // of `cache_dtype` values.
  static CacheCapacity plan_cache(const ModelConfig& c, const RuntimeOptions& o, int64_t budget_bytes,
                                  DType cache_dtype = DType::F32);

 private:
  Communicator& comm_;
  std::unique_ptr<DeepseekModel> model_;
  CacheCapacity capacity_;
  CachePool cache_;
  HostStaging staging_;  // the step's index data on its way to the device
};

}  // namespace mlarun
