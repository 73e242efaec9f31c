// DeepseekRunner (see deepseek_runner.h).
#include "engine/deepseek_runner.h"

#include <algorithm>

#include "engine/gpu_memory_profile.h"
#include "kernels/ops.h"
#include "runtime/error.h"
#include "runtime/safetensors.h"

namespace mlarun {

namespace {
constexpr int64_t kCpuCacheBudgetBytes = int64_t(1) << 30;  // CPU default, like vLLM's CPU KV-cache space

// Ranks must agree on the cache size (each runs the same scheduler): everyone takes the smallest budget.
int64_t min_over_ranks(Communicator& comm, int64_t value) {
  int64_t smallest = value;
  for (int r = 0; r < comm.world_size(); ++r) {
    int64_t v = value;
    comm.broadcast(&v, sizeof v, r);
    smallest = std::min(smallest, v);
  }
  return smallest;
}
}  // namespace

CacheCapacity DeepseekRunner::plan_cache(const ModelConfig& c, const RuntimeOptions& o, int64_t budget_bytes,
                                         DType cache_dtype) {
  CacheCapacity cap;
  cap.block_size = o.scheduler_block_size();
  cap.rank_block_size = o.block_size;
  const KvCacheStorage row = kv_cache_storage(o.kv_cache_dtype, cache_dtype, c.kv_lora_rank, c.qk_rope_head_dim);
  cap.bytes_per_block = c.n_layers * o.block_size * row.row_bytes();
  if (o.num_blocks > 0) {
    cap.num_blocks = o.num_blocks;
    return cap;
  }
  cap.budget_bytes = budget_bytes;
  int64_t wanted = (o.max_model_len + cap.block_size - 1) / cap.block_size * o.max_num_seqs;
  int64_t affordable = budget_bytes / cap.bytes_per_block;
  MLARUN_CHECK(affordable >= 1, "the cache budget of ", budget_bytes, " bytes holds no block of ", cap.bytes_per_block,
               " bytes");
  cap.num_blocks = std::min(wanted, affordable);
  return cap;
}

DeepseekRunner::DeepseekRunner(const std::string& model_dir, const RuntimeOptions& options, Communicator& comm,
                               const LoadProgress& progress)
    : DeepseekRunner(load_model_config_from_dir(model_dir), model_dir, options, comm, progress) {}

DeepseekRunner::DeepseekRunner(ModelConfig config, const std::string& model_dir, const RuntimeOptions& options,
                               Communicator& comm, const LoadProgress& progress)
    : comm_(comm) {
  options.validate_for(config);
  MLARUN_CHECK(options.tp == comm.world_size(), "option --tensor-parallel-size (--tp): value ", options.tp,
               ": the job runs ", comm.world_size(), " ranks (start it with mpirun -np ", options.tp, ")");
  const Placement placement = Placement::for_device(options.device);
  const int64_t N = options.decode_context_parallel_size;
  if (N > 1) dcp_comm_ = comm.split(int(comm.rank() / N), int(comm.rank() % N));  // consecutive ranks
  model_ = DeepseekModel::load(std::move(config), model_dir, comm, placement, progress, dcp_comm_.get());
  model_->set_mla_backend(MlaBackendKind::Auto, {options.prefill_context_piece_tokens});
  mla_rule_ = mlarun::mla_path_rule(model_->config(), options.mla_absorbed_max_tokens_on_device());
  model_->set_moe_capacity_max_tokens(options.moe_capacity_max_tokens_on_device());
  int64_t budget = kCpuCacheBudgetBytes;
  if (placement.device == Device::CUDA && options.num_blocks <= 0) {
    GpuMemoryProfile profile = profile_gpu_memory(*model_, options);
    budget = min_over_ranks(comm, profile.cache_budget_bytes);
    MLARUN_CHECK(budget > 0, "option --gpu-memory-utilization: value ", options.gpu_memory_utilization,
                 " leaves no room for the cache: ", profile.describe(options.gpu_memory_utilization));
  }
  capacity_ = plan_cache(model_->config(), options, budget, placement.dtype);
  const ModelConfig& c = model_->config();
  const KvCacheStorage row = kv_cache_storage(options.kv_cache_dtype, placement.dtype, c.kv_lora_rank,
                                              c.qk_rope_head_dim);
  MLARUN_CHECK(row.dtype == placement.dtype || model_->cache_width() == c.latent_dim(),
               "option --kv-cache-dtype: value ", kv_cache_dtype_name(options.kv_cache_dtype),
               ": this model's cache is not an MLA latent");
  cache_ = CachePool::allocate(c.n_layers, capacity_.num_blocks, capacity_.rank_block_size,
                               row.dtype == placement.dtype ? model_->cache_width() : row.width, row.dtype,
                               placement.device);
  DecodeGraphSettings graphs;
  graphs.max_batch = options.enforce_eager ? 0 : std::min(options.max_num_seqs, DecodeGraphSettings::kMaxBatch);
  graphs.block_size = capacity_.rank_block_size;
  graphs.num_blocks = capacity_.num_blocks;
  graphs.table_blocks = (options.max_model_len + capacity_.block_size - 1) / capacity_.block_size;
  graphs_ = std::make_unique<DecodeGraphs>(*model_, cache_.layers, comm_, graphs);
}

Tensor DeepseekRunner::execute(const ForwardBatch& batch) {
  if (Tensor logits = graphs_->run(batch, staging_); logits.defined()) return logits;  // a decode graph's replay
  // The step's index data leaves in one copy from the runner's (pinned) staging buffer; the logits stay put.
  const StepTensors step = StepTensors::build(batch, placement().device, capacity_.rank_block_size,
                                              capacity_.num_blocks, &staging_, model_->context_parallel());
  return model_->forward(batch, step, cache_.layers);
}

void DeepseekRunner::sync_sampled(std::vector<int32_t>& tokens) { comm_.broadcast_vector(tokens, 0); }

}  // namespace mlarun
