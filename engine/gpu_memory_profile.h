// How much GPU memory the paged cache may take, measured the way vLLM does it: with the weights loaded, run one
// warm-up step as large as the scheduler may ever send (max_num_batched_tokens tokens, prefilled as sequences of
// at most max_model_len, on a scratch cache), read the peak the activations reached from the caching allocator,
// give the cached blocks back, and read the device's free memory. The cache gets
//   gpu_memory_utilization * total - (memory in use now: weights, CUDA context, cuBLAS, other processes)
//                                  - (the activation peak, which every later step may reach again).
// The warm-up also creates the cuBLAS handle. Its blocks go back to the driver before the measurement; the first
// real steps take them again (within the budget) and from then on the step loop allocates nothing from the driver.
#pragma once

#include <cstdint>
#include <string>

#include "model/deepseek_model.h"
#include "runtime/runtime_options.h"

namespace mlarun {

struct GpuMemoryProfile {
  int64_t total_bytes = 0;            // the device's memory
  int64_t in_use_bytes = 0;           // total - free after the warm-up, the cache blocks given back
  int64_t activation_peak_bytes = 0;  // the warm-up's peak above the weights, its scratch cache not counted
  int64_t warmup_tokens = 0;
  int64_t cache_budget_bytes = 0;     // what the cache may take (may be <= 0: nothing fits)
  std::string describe(double utilization) const;  // for error messages and the start-up log
};

// Runs the warm-up step on `model` (which must live on the GPU) and measures. Throws without a GPU.
GpuMemoryProfile profile_gpu_memory(const DeepseekModel& model, const RuntimeOptions& options);

}  // namespace mlarun
