// RuntimeOptions validation: each option out of range is an error naming the option and the value.
#include <gtest/gtest.h>

#include "runtime/model_config.h"
#include "runtime/runtime_options.h"
#include "test_util.h"

using namespace mlarun;

TEST(RuntimeOptions, DefaultsAreValid) { RuntimeOptions().validate(); }

TEST(RuntimeOptions, OutOfRangeValuesNameTheOption) {
  RuntimeOptions o;
  o.block_size = 0;
  EXPECT_ERROR_MENTIONS(o.validate(), "--block-size", "0");
  o.block_size = 257;
  EXPECT_ERROR_MENTIONS(o.validate(), "--block-size", "257");
  o = RuntimeOptions();
  o.tp = 0;
  EXPECT_ERROR_MENTIONS(o.validate(), "--tp", "0");
  o = RuntimeOptions();
  o.gpu_memory_utilization = 1.5;
  EXPECT_ERROR_MENTIONS(o.validate(), "--gpu-memory-utilization", "1.5");
  o = RuntimeOptions();
  o.max_num_seqs = -1;
  EXPECT_ERROR_MENTIONS(o.validate(), "--max-num-seqs", "-1");
  o = RuntimeOptions();
  o.max_model_len = 0;
  EXPECT_ERROR_MENTIONS(o.validate(), "--max-model-len");
  o = RuntimeOptions();
  o.max_num_batched_tokens = 0;
  EXPECT_ERROR_MENTIONS(o.validate(), "--max-num-batched-tokens", "0");
  o = RuntimeOptions();
  o.num_blocks = 0;
  EXPECT_ERROR_MENTIONS(o.validate(), "--num-gpu-blocks-override", "0");
  o = RuntimeOptions();
  o.eos_token_id = -2;
  EXPECT_ERROR_MENTIONS(o.validate(), "eos_token_id", "-2");
}

TEST(RuntimeOptions, KvCacheDtypeIsAutoUntilTheQuantizedCachesExist) {
  EXPECT_EQ(parse_kv_cache_dtype("auto"), KvCacheDtype::Auto);
  EXPECT_STREQ(kv_cache_dtype_name(KvCacheDtype::Auto), "auto");
  EXPECT_ERROR_MENTIONS(parse_kv_cache_dtype("fp8"), "--kv-cache-dtype", "'fp8'", "not supported yet");
  EXPECT_ERROR_MENTIONS(parse_kv_cache_dtype("float7"), "--kv-cache-dtype", "'float7'", "expected auto");
}

TEST(RuntimeOptions, TensorParallelSizeMustSplitTheModel) {
  ModelConfig m = load_model_config(mlarun::testing::source_dir() + "/configs/config_236B.json");
  RuntimeOptions o;
  o.tp = 8;
  o.validate_for(m);
  o.tp = 6;
  EXPECT_ERROR_MENTIONS(o.validate_for(m), "n_heads = 128", "6");
}
