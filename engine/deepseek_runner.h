// DeepseekRunner: the ModelRunner the engine drives. Owns the model (this rank's slices), the paged latent
// cache pools and the communicator that keeps ranks in step; sizes the cache from the runtime options. On the CPU
// the model and cache are f32 within a fixed budget; on the GPU (options.device) they are bf16 and the cache takes
// what a warm-up step leaves of --gpu-memory-utilization (gpu_memory_profile.h). Each step's index data goes to the
// device once (StepTensors, through a pinned staging buffer the runner keeps); logits stay on the model's device.
// With --decode-context-parallel-size N > 1 the runner splits its communicator into DCP groups of N consecutive
// ranks (and owns them), and its cache speaks of the group's blocks (docs/layouts.md §2.6): the scheduler's
// block of block_size * N tokens is one physical block of block_size tokens on each rank of the group.
#pragma once

#include <memory>
#include <string>

#include "engine/decode_graphs.h"
#include "engine/model_runner.h"
#include "model/deepseek_model.h"
#include "runtime/cache_pool.h"
#include "runtime/runtime_options.h"
#include "runtime/step_tensors.h"

namespace mlarun {

struct CacheCapacity {
  int64_t num_blocks = 0;
  int64_t block_size = 0;       // tokens per block of the DCP group (the scheduler's block): rank_block_size * N
  int64_t rank_block_size = 0;  // tokens per physical block on one rank (--block-size)
  int64_t bytes_per_block = 0;  // one rank's physical block, all layers
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
  int64_t block_size() const override { return capacity_.block_size; }  // the group's (scheduler's) block
  int64_t num_blocks() const override { return capacity_.num_blocks; }
  void sync_sampled(std::vector<int32_t>& tokens) override;
  bool is_driver() const override { return comm_.rank() == 0; }
  MlaPathRule mla_path_rule() const override { return mla_rule_; }
  int64_t cuda_graph_replays() const override { return graphs_->replays(); }

  const ModelConfig& config() const { return model_->config(); }
  const CacheCapacity& capacity() const { return capacity_; }
  const Placement& placement() const { return model_->placement(); }
  const DecodeGraphs& decode_graphs() const { return *graphs_; }
  // Without --num-blocks: room for max_num_seqs sequences of max_model_len, within `budget_bytes` per rank, for a
  // cache whose auto dtype is `cache_dtype` (the model's; o.kv_cache_dtype picks the row: bf16 values or the
  // quantized rows of kernels/kv_quant.h) (under DCP a sequence takes 1/N of its blocks' rows on each rank).
  static CacheCapacity plan_cache(const ModelConfig& c, const RuntimeOptions& o, int64_t budget_bytes,
                                  DType cache_dtype = DType::F32);

 private:
  Communicator& comm_;
  std::unique_ptr<Communicator> dcp_comm_;  // this rank's DCP group (null without DCP); outlives model_
  std::unique_ptr<DeepseekModel> model_;
  CacheCapacity capacity_;
  CachePool cache_;
  MlaPathRule mla_rule_;  // from the model's dims and --mla-absorbed-max-tokens
  HostStaging staging_;  // the step's index data on its way to the device
  std::unique_ptr<DecodeGraphs> graphs_;  // decode steps replayed from CUDA graphs (off on the CPU, --enforce-eager)
};

}  // namespace mlarun
