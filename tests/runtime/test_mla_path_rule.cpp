// MLA's path rule and its work counts (runtime/mla_path_rule.h) against the full multiply-add counts of both
// paths, computed here term by term in doubles for every head-dim variant a config allows; the crossing for
// DeepSeek's dims; the bound --mla-absorbed-max-tokens puts on it; and StepTensors splitting a batch by the rule.
#include <gtest/gtest.h>

#include "runtime/error.h"
#include "runtime/mla_path_rule.h"
#include "runtime/model_config.h"
#include "runtime/step_tensors.h"
#include "test_util.h"

using namespace mlarun;

namespace {

ModelConfig dims(int64_t rank, int64_t nope, int64_t rope, int64_t v) {
  ModelConfig c;
  c.kv_lora_rank = rank;
  c.qk_nope_head_dim = nope;
  c.qk_rope_head_dim = rope;
  c.v_head_dim = v;
  return c;
}

// One head's multiply-adds for n new tokens after p cached, summed token by token (token i sees p + i + 1 keys).
double naive_work(const ModelConfig& c, int64_t n, int64_t p) {
  double w = double(p + n) * double(c.kv_lora_rank) * double(c.qk_nope_head_dim + c.v_head_dim);  // K/V up-projection
  for (int64_t i = 0; i < n; ++i)
    w += double(p + i + 1) * double(c.qk_nope_head_dim + c.qk_rope_head_dim)  // scores
         + double(p + i + 1) * double(c.v_head_dim);                           // weighted values
  return w;
}
double absorbed_work(const ModelConfig& c, int64_t n, int64_t p) {
  double w = double(n) * double(c.qk_nope_head_dim) * double(c.kv_lora_rank)  // q_nope . W_UK
             + double(n) * double(c.kv_lora_rank) * double(c.v_head_dim);     // o_lat . W_UV
  for (int64_t i = 0; i < n; ++i)
    w += double(p + i + 1) * double(c.kv_lora_rank + c.qk_rope_head_dim)  // scores over [c | k_pe]
         + double(p + i + 1) * double(c.kv_lora_rank);                    // weighted latents
  return w;
}

}  // namespace

TEST(MlaPathRule, AgreesWithTheFullWorkCountForEveryHeadShape) {
  // DeepSeek-V2/V3, the v3-tiny fixture, v dim != nope dim both ways, no rope, a latent shorter than K + V.
  for (const ModelConfig& c : {dims(512, 128, 64, 128), dims(48, 24, 8, 24), dims(64, 32, 16, 16),
                               dims(64, 16, 16, 48), dims(32, 64, 0, 64), dims(16, 32, 8, 32)}) {
    const MlaPathRule rule = mla_path_rule(c, 1 << 20);
    for (int64_t p : {0, 1, 2, 7, 64, 511, 4096, 131072})
      for (int64_t n = 1; n <= 600; n += (n < 40 ? 1 : 37)) {
        const double a = absorbed_work(c, n, p), b = naive_work(c, n, p);
        EXPECT_DOUBLE_EQ(mla_attention_macs_per_head(c, true, n, p), a) << "n " << n << " p " << p;
        EXPECT_DOUBLE_EQ(mla_attention_macs_per_head(c, false, n, p), b) << "n " << n << " p " << p;
        if (std::abs(a - b) < 0.5) continue;  // a tie: either answer is right
        EXPECT_EQ(rule.absorbed_is_cheaper(n, p), a < b)
            << "rank " << c.kv_lora_rank << " nope " << c.qk_nope_head_dim << " v " << c.v_head_dim << ": n " << n
            << " p " << p << " absorbed " << a << " naive " << b;
        EXPECT_EQ(rule.absorbed(n, p), n == 1 || a < b);
      }
  }
}

TEST(MlaPathRule, DeepSeekDimsCrossAt170TokensOverALongPrefix) {
  const ModelConfig c = load_model_config(mlarun::testing::source_dir() + "/configs/config_236B.json");
  EXPECT_EQ(mla_absorbed_crossing(c, 0), 0) << "no prefix: a chunk re-reads nothing, the naive path wins";
  EXPECT_EQ(mla_absorbed_crossing(c, 1'000'000), 170);  // n (2 d_c - d_n - d_v) < d_c (d_n + d_v): 768 n < 131072
  for (int64_t p : {1, 512, 2048, 65536}) {
    const int64_t n = mla_absorbed_crossing(c, p);
    EXPECT_LT(absorbed_work(c, n, p), naive_work(c, n, p)) << "prefix " << p;
    EXPECT_GE(absorbed_work(c, n + 1, p), naive_work(c, n + 1, p)) << "prefix " << p;
  }
  EXPECT_EQ(mla_absorbed_crossing(c, 512), 148);
  // A latent no longer than an up-projected key and value: absorbed at any length once there is a prefix.
  EXPECT_EQ(mla_absorbed_crossing(dims(16, 32, 8, 32), 100), int64_t(1) << 20);
}

TEST(MlaPathRule, TheBoundAndTheDefaults) {
  const ModelConfig c = dims(512, 128, 64, 128);
  const MlaPathRule decode_only;  // what a ForwardBatch carries unless its runner says otherwise
  EXPECT_TRUE(decode_only.absorbed(1, 0));
  EXPECT_TRUE(decode_only.absorbed(1, 4096));
  EXPECT_FALSE(decode_only.absorbed(2, 4096));
  const MlaPathRule four = mla_path_rule(c, 4);
  EXPECT_TRUE(four.absorbed(4, 4096));
  EXPECT_FALSE(four.absorbed(5, 4096)) << "cheaper, but longer than --mla-absorbed-max-tokens";
  EXPECT_FALSE(four.absorbed(4, 0)) << "within the bound, but dearer";
  EXPECT_TRUE(four.absorbed(1, 0)) << "one new token is always decode";
  EXPECT_FALSE(four.absorbed(0, 10));
  EXPECT_ERROR_MENTIONS(mla_path_rule(c, 0), "--mla-absorbed-max-tokens");
}

TEST(MlaPathRule, StepTensorsSplitTheBatchByTheRule) {
  ForwardBatch b;
  b.mla_rule = mla_path_rule(dims(48, 24, 8, 24), 64);  // v3-tiny's dims: crossing 20 tokens after 8 cached
  std::vector<int32_t> table(16);
  for (int i = 0; i < 16; ++i) table[size_t(i)] = i;
  b.add_sequence(std::vector<int32_t>(1, 3), 5, table, 4);   // decode: absorbed
  b.add_sequence(std::vector<int32_t>(8, 3), 0, table, 4);   // a fresh prompt: naive
  b.add_sequence(std::vector<int32_t>(20, 3), 8, table, 4);  // short against its prefix: absorbed
  b.add_sequence(std::vector<int32_t>(21, 3), 8, table, 4);  // one past the crossing: naive
  b.add_sequence(std::vector<int32_t>(4, 3), 40, table, 4);  // absorbed
  b.logit_rows = {0};
  StepTensors st = StepTensors::build(b, Device::CPU, 4, 16);
  EXPECT_EQ(st.absorbed.seqs, (std::vector<int64_t>{0, 2, 4}));
  EXPECT_EQ(st.naive.seqs, (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(st.absorbed.max_q, 20);
  b.mla_path = MlaPath::Naive;  // a forced path overrides the rule
  st = StepTensors::build(b, Device::CPU, 4, 16);
  EXPECT_TRUE(st.absorbed.empty());
}
