// Warm-up and measurement of the GPU memory left for the cache (see gpu_memory_profile.h).
#include "engine/gpu_memory_profile.h"

#include <algorithm>
#include <sstream>

#include "runtime/cache_pool.h"
#include "runtime/device.h"
#include "runtime/device_allocator.h"
#include "runtime/error.h"

namespace mlarun {

namespace {

double gib(int64_t bytes) { return double(bytes) / double(int64_t(1) << 30); }

// The largest step the scheduler may send: `tokens` new tokens as prefills from position 0 of sequences no longer
// than max_model_len, laid out in consecutive blocks of a scratch pool; logits for up to max_num_seqs rows.
ForwardBatch warmup_batch(const ModelConfig& c, const RuntimeOptions& o, int64_t tokens, int64_t* blocks_needed) {
  ForwardBatch b;
  const int64_t bs = o.scheduler_block_size();  // the batch speaks of the DCP group's blocks
  int32_t next_block = 0;
  for (int64_t done = 0; done < tokens;) {
    const int64_t n = std::min(tokens - done, o.max_model_len);
    std::vector<int32_t> table, ids;
    for (int64_t j = 0; j < (n + bs - 1) / bs; ++j) table.push_back(next_block++);
    for (int64_t p = 0; p < n; ++p) ids.push_back(int32_t((done + p) * 7919 % c.vocab_size));
    b.add_sequence(ids, 0, std::move(table), bs);
    done += n;
  }
  for (int64_t r = std::max<int64_t>(0, tokens - o.max_num_seqs); r < tokens; ++r) b.logit_rows.push_back(r);
  *blocks_needed = next_block;
  return b;
}

}  // namespace

std::string GpuMemoryProfile::describe(double utilization) const {
  std::ostringstream os;
  os.precision(2);
  os << std::fixed << "GPU " << gib(total_bytes) << " GiB x " << utilization << " = " << gib(int64_t(utilization * double(total_bytes)))
     << " GiB allowed; in use after the warm-up (weights, CUDA context, others) " << gib(in_use_bytes)
     << " GiB; activation peak of a " << warmup_tokens << "-token step " << gib(activation_peak_bytes)
     << " GiB; left for the cache " << gib(cache_budget_bytes) << " GiB";
  return os.str();
}

GpuMemoryProfile profile_gpu_memory(const DeepseekModel& model, const RuntimeOptions& o) {
  MLARUN_CHECK(model.placement().device == Device::CUDA, "profile_gpu_memory: the model lives on ",
               model.placement().describe(), ", not on the GPU");
  const ModelConfig& c = model.config();
  GpuMemoryProfile p;
  p.warmup_tokens = std::min(o.max_num_batched_tokens, o.max_num_seqs * o.max_model_len);
  int64_t blocks = 0;
  ForwardBatch batch = warmup_batch(c, o, p.warmup_tokens, &blocks);

  DeviceAllocator& allocator = DeviceAllocator::instance();
  device_synchronize();
  allocator.reset_peak();
  const int64_t before = allocator.stats().bytes_in_use;
  int64_t scratch_bytes = 0;
  {
    const KvCacheStorage row = kv_cache_storage(o.kv_cache_dtype, model.placement().dtype, c.kv_lora_rank,
                                                c.qk_rope_head_dim);
    CachePool scratch = CachePool::allocate(c.n_layers, blocks, o.block_size,
                                            row.dtype == model.placement().dtype ? model.cache_width() : row.width,
                                            row.dtype, Device::CUDA);
    scratch_bytes = allocator.stats().bytes_in_use - before;
    Tensor logits = model.forward(batch, scratch.layers);
    device_synchronize();
  }
  p.activation_peak_bytes = std::max<int64_t>(0, allocator.stats().peak_bytes_in_use - before - scratch_bytes);
  allocator.empty_cache();
  const DeviceMemoryInfo info = device_memory_info();
  p.total_bytes = info.total_bytes;
  p.in_use_bytes = info.total_bytes - info.free_bytes;
  p.cache_budget_bytes =
      int64_t(o.gpu_memory_utilization * double(info.total_bytes)) - p.in_use_bytes - p.activation_peak_bytes;
  return p;
}

}  // namespace mlarun
