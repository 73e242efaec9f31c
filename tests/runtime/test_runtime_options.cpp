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
  o.prefill_context_piece_tokens = 0;
  EXPECT_ERROR_MENTIONS(o.validate(), "--prefill-context-piece-tokens", "0");
  o = RuntimeOptions();
  o.mla_absorbed_max_tokens = 0;
  EXPECT_ERROR_MENTIONS(o.validate(), "--mla-absorbed-max-tokens", "0");
  o.mla_absorbed_max_tokens = -2;
  EXPECT_ERROR_MENTIONS(o.validate(), "--mla-absorbed-max-tokens", "-2");
  o = RuntimeOptions();
  o.moe_capacity_max_tokens = -2;
  EXPECT_ERROR_MENTIONS(o.validate(), "--moe-capacity-max-tokens", "-2");
  o.moe_capacity_max_tokens = 0;
  EXPECT_NO_THROW(o.validate()) << "0: never";
  o = RuntimeOptions();
  o.num_blocks = 0;
  EXPECT_ERROR_MENTIONS(o.validate(), "--num-gpu-blocks-override", "0");
  o = RuntimeOptions();
  o.eos_token_id = -2;
  EXPECT_ERROR_MENTIONS(o.validate(), "eos_token_id", "-2");
}

TEST(RuntimeOptions, MlaAbsorbedMaxTokensDefaultsByDevice) {
  RuntimeOptions o;
  EXPECT_EQ(o.mla_absorbed_max_tokens_on_device(), RuntimeOptions::kMlaAbsorbedMaxTokensCpu);
  o.device = Device::CUDA;
  EXPECT_EQ(o.mla_absorbed_max_tokens_on_device(), 128) << "bench prefill's measured bound on an H200";
  o.mla_absorbed_max_tokens = 1;
  EXPECT_EQ(o.mla_absorbed_max_tokens_on_device(), 1);
}

TEST(RuntimeOptions, MoeCapacityMaxTokensDefaultsByDevice) {
  RuntimeOptions o;
  EXPECT_EQ(o.moe_capacity_max_tokens_on_device(), 0) << "the CPU: always the compact layout";
  o.device = Device::CUDA;
  EXPECT_EQ(o.moe_capacity_max_tokens_on_device(), 128);
  o.moe_capacity_max_tokens = 0;
  EXPECT_EQ(o.moe_capacity_max_tokens_on_device(), 0);
}

TEST(RuntimeOptions, KvCacheDtypeParsesTheFourNames) {
  EXPECT_EQ(parse_kv_cache_dtype("auto"), KvCacheDtype::Auto);
  EXPECT_EQ(parse_kv_cache_dtype("bf16"), KvCacheDtype::Bf16);
  EXPECT_EQ(parse_kv_cache_dtype("fp8"), KvCacheDtype::Fp8);
  EXPECT_EQ(parse_kv_cache_dtype("fp8_e4m3"), KvCacheDtype::Fp8);
  EXPECT_EQ(parse_kv_cache_dtype("int8"), KvCacheDtype::Int8);
  for (KvCacheDtype t : {KvCacheDtype::Auto, KvCacheDtype::Bf16, KvCacheDtype::Fp8, KvCacheDtype::Int8})
    EXPECT_EQ(parse_kv_cache_dtype(kv_cache_dtype_name(t)), t);
  EXPECT_ERROR_MENTIONS(parse_kv_cache_dtype("float7"), "--kv-cache-dtype", "'float7'", "expected auto, bf16, fp8");
}

TEST(RuntimeOptions, KvCacheRowBytesFollowTheIssueFormula) {
  EXPECT_EQ(kv_quant_row_bytes(512, 64), 656);  // DeepSeek-V2/V3
  EXPECT_EQ(kv_quant_row_bytes(32, 16), 32 + 4 + 32);  // a tiny fixture: one short tile
  EXPECT_EQ(kv_quant_row_bytes(200, 8), 200 + 8 + 16);
  const KvCacheStorage fp8 = kv_cache_storage(KvCacheDtype::Fp8, DType::BF16, 512, 64);
  EXPECT_EQ(fp8.dtype, DType::F8_E4M3);
  EXPECT_EQ(fp8.row_bytes(), 656);
  EXPECT_EQ(kv_cache_storage(KvCacheDtype::Int8, DType::F32, 512, 64).dtype, DType::I8);
  EXPECT_EQ(kv_cache_storage(KvCacheDtype::Auto, DType::F32, 512, 64).row_bytes(), 576 * 4);
  EXPECT_EQ(kv_cache_storage(KvCacheDtype::Auto, DType::BF16, 512, 64).row_bytes(), 576 * 2);
  EXPECT_EQ(kv_cache_storage(KvCacheDtype::Bf16, DType::F32, 512, 64).dtype, DType::BF16);
  // The baselines' rows: K and V heads of d values, each tiled on its own (d + 4 * ceil(d / 128) bytes a head).
  EXPECT_EQ(kv_cache_storage(KvCacheDtype::Fp8, DType::F32, 2 * 16 * 128, 0, 128).row_bytes(), 2 * 16 * 132);
  EXPECT_EQ(kv_quant_row_bytes(2 * 3 * 200, 0, 200), 2 * 3 * (200 + 8));
  EXPECT_EQ(kv_quant_row_bytes(2 * 4 * 16, 0, 16), 2 * 4 * 20);
  EXPECT_EQ(kv_quant_row_bytes(512, 64, 512), 656);
  EXPECT_ERROR_MENTIONS(kv_quant_row_bytes(100, 0, 48), "100 values", "48");
}

// The CPU runs every cache dtype under DCP (tests/model/test_mpi_dcp.cpp); only the CUDA path still refuses a
// quantized cache there, naming the device.
TEST(RuntimeOptions, EveryCacheDtypeRunsUnderDecodeContextParallelismOnEitherDevice) {
  RuntimeOptions o;
  o.tp = 2;
  o.decode_context_parallel_size = 2;
  for (KvCacheDtype t : {KvCacheDtype::Auto, KvCacheDtype::Bf16, KvCacheDtype::Fp8, KvCacheDtype::Int8})
    for (Device d : {Device::CPU, Device::CUDA}) {
      o.kv_cache_dtype = t;
      o.device = d;
      EXPECT_NO_THROW(o.validate()) << kv_cache_dtype_name(t) << " on " << device_name(d);
    }
}

TEST(RuntimeOptions, TensorParallelSizeMustSplitTheModel) {
  ModelConfig m = load_model_config(mlarun::testing::source_dir() + "/configs/config_236B.json");
  RuntimeOptions o;
  o.tp = 8;
  o.validate_for(m);
  o.tp = 6;
  EXPECT_ERROR_MENTIONS(o.validate_for(m), "n_heads = 128", "6");
}
