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
  o.max_batch_size = -1;
  EXPECT_ERROR_MENTIONS(o.validate(), "--max-batch-size", "-1");
  o = RuntimeOptions();
  o.max_seq_len = 0;
  EXPECT_ERROR_MENTIONS(o.validate(), "--max-seq-len");
  o = RuntimeOptions();
  o.num_blocks = 0;
  EXPECT_ERROR_MENTIONS(o.validate(), "--num-blocks", "0");
  o = RuntimeOptions();
  o.kv_dtype = DType::I32;
  EXPECT_ERROR_MENTIONS(o.validate(), "--kv-dtype", "i32");
}

TEST(RuntimeOptions, TensorParallelSizeMustSplitTheModel) {
  ModelConfig m = load_model_config(mlarun::testing::source_dir() + "/configs/config_236B.json");
  RuntimeOptions o;
  o.tp = 8;
  o.validate_for(m);
  o.tp = 6;
  EXPECT_ERROR_MENTIONS(o.validate_for(m), "n_heads = 128", "6");
}
