// The decode step's floor bytes (bench/decode_floor.h) against counts made by hand from DeepSeek-V2-Lite's config:
// the expected routed experts a batch hits, every other weight once, the embedding's rows only, the cache as given.
#include <gtest/gtest.h>

#include <cmath>

#include "bench/decode_floor.h"
#include "runtime/model_config.h"
#include "test_util.h"

using namespace mlarun;

TEST(DecodeFloor, WeightsTouchedFollowTheExpertsTheBatchHits) {
  const ModelConfig c = load_model_config(mlarun::testing::source_dir() + "/configs/config_16B.json");
  const double E = double(c.n_routed_experts), k = double(c.n_activated_experts);
  const double expert = 3.0 * double(c.dim) * double(c.moe_inter_dim);
  const double embedding = double(c.vocab_size) * double(c.dim);
  const int64_t values = c.num_params();
  const double moe_layers = double(c.num_moe_layers());
  ASSERT_GT(moe_layers, 0);
  // One sequence: exactly top_k experts per layer, one embedding row, bf16.
  const bench::DecodeStepBytes one = bench::decode_step_bytes(c, values, 2, 1, 1000.0);
  EXPECT_NEAR(one.experts_hit, k, 1e-9);
  EXPECT_NEAR(one.weights, 2.0 * (double(values) - embedding + double(c.dim) - moe_layers * (E - k) * expert), 1.0);
  EXPECT_EQ(one.cache, 1000.0);
  EXPECT_EQ(one.total(), one.weights + 1000.0);
  // 64 sequences: E (1 - (1 - k/E)^64) experts, more than k and fewer than E.
  const bench::DecodeStepBytes many = bench::decode_step_bytes(c, values, 2, 64, 0.0);
  EXPECT_NEAR(many.experts_hit, E * (1.0 - std::pow(1.0 - k / E, 64.0)), 1e-9);
  EXPECT_GT(many.experts_hit, k);
  EXPECT_LT(many.experts_hit, E);
  EXPECT_GT(many.weights, one.weights);
  // A batch of more sequences than the vocabulary has rows hits every expert and every row: every weight.
  const bench::DecodeStepBytes all = bench::decode_step_bytes(c, values, 4, 2 * c.vocab_size, 0.0);
  EXPECT_NEAR(all.experts_hit, E, 1e-6);
  EXPECT_NEAR(all.weights, 4.0 * double(values), 1e3);
}
