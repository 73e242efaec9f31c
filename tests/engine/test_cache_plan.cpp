// Cache planning by dtype (DeepseekRunner::plan_cache): how many bytes one block of the paged latent cache costs
// across all layers, so the engine sizes its pool right for an f32 (CPU) or a bf16 (CUDA) cache. Host
// arithmetic only: runs on any machine.
#include <gtest/gtest.h>

#include "engine/deepseek_runner.h"
#include "runtime/model_config.h"
#include "runtime/runtime_options.h"

using namespace mlarun;

TEST(CachePlan, BlockBytesFollowTheCacheDtype) {
  ModelConfig c;
  c.format = "deepseek";
  RuntimeOptions o;
  CacheCapacity f32 = DeepseekRunner::plan_cache(c, o, int64_t(1) << 30);
  CacheCapacity bf16 = DeepseekRunner::plan_cache(c, o, int64_t(1) << 30, DType::BF16);
  EXPECT_EQ(f32.bytes_per_block, 2 * bf16.bytes_per_block);
  EXPECT_EQ(bf16.bytes_per_block, c.n_layers * o.block_size * c.latent_dim() * 2);
}
