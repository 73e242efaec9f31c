// The MHA/GQA/MQA baselines: a prefill then decodes through the paged K/V cache (shuffled block table, chunks
// crossing blocks) equal dense ops::attention over the same K/V; tensor-parallel shards sum to the whole layer,
// with GQA groups kept whole per rank; attention kinds parse with clear errors; and whole models built from
// random weights: MLA gives finite logits, a baseline's decode after prefill equals a full recompute.
#include <gtest/gtest.h>

#include <cmath>

#include "bench/baseline_attention.h"
#include "bench/random_weights.h"
#include "model/deepseek_model.h"
#include "random_model_util.h"
#include "runtime/cache_pool.h"
#include "test_util.h"

using namespace mlarun;
using mlarun::testing::LoneRankCommunicator;
using mlarun::testing::max_abs;
using mlarun::testing::max_abs_diff;
using mlarun::testing::random_rows;
using mlarun::testing::tiny_random_config;

namespace {

const std::vector<AttentionKind> kBaselines = {AttentionKind::mha(), AttentionKind::gqa(4), AttentionKind::gqa(2),
                                               AttentionKind::mqa()};
const int64_t kBlockSize = 4;
const std::vector<int32_t> kBlockTable = {5, 2, 7, 0, 3, 6, 1, 4};  // 32 slots, shuffled
// A 9-token prefill, a 4-token chunk, then three single-token decodes: 16 tokens.
const std::vector<std::pair<int64_t, int64_t>> kChunks = {{0, 9}, {9, 4}, {13, 1}, {14, 1}, {15, 1}};

ForwardBatch chunk_batch(int64_t start, int64_t n) {
  ForwardBatch b;
  b.add_sequence(std::vector<int32_t>(size_t(n), 0), start, kBlockTable, kBlockSize);
  return b;
}

// Runs the chunks through one layer (on one rank's cache) and returns the outputs stacked [16, dim].
Tensor run_chunks(const AttentionLayer& attn, const Tensor& x, const ops::RopeTable& rope) {
  CachePool pool = CachePool::allocate(1, 8, kBlockSize, attn.cache_width(), DType::F32, Device::CPU);
  for (int64_t i = 0; i < pool.layers[0].numel(); ++i) pool.layers[0].data<float>()[i] = NAN;  // unwritten = poison
  Tensor out = Tensor::empty(x.shape(), DType::F32);
  const int64_t dim = x.dim(1);
  for (auto [start, n] : kChunks) {
    Tensor y = attn.forward(x.rows(start, n).clone(), chunk_batch(start, n), pool.layers[0], rope);
    std::copy(y.data<float>(), y.data<float>() + y.numel(), out.data<float>() + start * dim);
  }
  return out;
}

}  // namespace

TEST(BaselineAttention, PagedPrefillAndDecodeEqualDenseAttention) {
  ModelConfig c = tiny_random_config();
  ops::RopeTable rope = ops::make_rope_table(c);
  const int64_t T = 16, H = c.n_heads, d = baseline_head_dim(c);
  Tensor x = random_rows(T, c.dim, 11);
  std::vector<int64_t> positions(T);
  for (int64_t p = 0; p < T; ++p) positions[size_t(p)] = p;
  for (const AttentionKind& kind : kBaselines) {
    SCOPED_TRACE(kind.name());
    SingleCommunicator comm;
    RandomWeights w(c, kind, 5);
    BaselineAttention attn(c, kind, w, "model.layers.0.self_attn.", comm);
    const int64_t G = kind.kv_heads(c);
    EXPECT_EQ(attn.cache_width(), 2 * G * d);
    Tensor paged = run_chunks(attn, x, rope);

    // Dense reference over all 16 tokens at once: causal attention with the GQA/MQA head mapping.
    const std::string p = "model.layers.0.self_attn.";
    Tensor q = ops::linear(x, w.load(p + "q_proj.weight")).view({T, H, d});
    Tensor k = ops::linear(x, w.load(p + "k_proj.weight")).view({T, G, d});
    Tensor v = ops::linear(x, w.load(p + "v_proj.weight")).view({T, G, d});
    ops::apply_rope(q, positions, rope);
    ops::apply_rope(k, positions, rope);
    float scale = float(c.softmax_scale() * std::sqrt(double(c.qk_head_dim()) / double(d)));
    Tensor o = ops::attention(q, k, v, scale, 0).view({T, H * d});
    Tensor dense = ops::linear(o, w.load(p + "o_proj.weight"));
    EXPECT_LT(max_abs_diff(paged, dense), 1e-5f);
    EXPECT_GT(max_abs(dense), 1e-2f);
  }
}

TEST(BaselineAttention, TensorParallelShardsSumToTheWholeLayer) {
  ModelConfig c = tiny_random_config();
  ops::RopeTable rope = ops::make_rope_table(c);
  Tensor x = random_rows(16, c.dim, 12);
  for (const AttentionKind& kind : kBaselines) {
    RandomWeights w(c, kind, 6);
    SingleCommunicator one;
    Tensor whole = run_chunks(BaselineAttention(c, kind, w, "model.layers.1.self_attn.", one), x, rope);
    for (int tp : {2, 4, 8}) {
      SCOPED_TRACE(kind.name() + " tp " + std::to_string(tp));
      Tensor sum = Tensor::zeros(whole.shape(), DType::F32);
      for (int r = 0; r < tp; ++r) {
        LoneRankCommunicator comm(r, tp);
        BaselineAttention shard(c, kind, w, "model.layers.1.self_attn.", comm);
        int64_t kv = kind.kv_heads(c);
        EXPECT_EQ(shard.cache_width(), 2 * (kv >= tp ? kv / tp : 1) * baseline_head_dim(c));
        ops::add_inplace(sum, run_chunks(shard, x, rope));
      }
      EXPECT_LT(max_abs_diff(sum, whole), 1e-5f);
    }
  }
}

TEST(BaselineAttention, GroupsThatWouldStraddleRanksAreRefused) {
  ModelConfig c = tiny_random_config();
  c.n_heads = 12;
  // 4 groups of 3 query heads over 6 ranks of 2 query heads: rank 1 would need groups 0 and 1.
  EXPECT_ERROR_MENTIONS(kv_head_layout(c, AttentionKind::gqa(4), 6, 1), "gqa:4", "6 ranks");
  EXPECT_ERROR_MENTIONS(kv_head_layout(c, AttentionKind::mha(), 5, 0), "12", "5");
  KvHeadLayout l = kv_head_layout(c, AttentionKind::gqa(3), 6, 5);  // 3 groups over 6 ranks: rank 5 reads group 2
  EXPECT_EQ(l.local_kv_heads, 1);
  EXPECT_EQ(l.first_kv_head, 2);
  EXPECT_TRUE(l.replicated());
}

TEST(AttentionKindParsing, NamesAndErrors) {
  EXPECT_EQ(parse_attention_kind("mla", 128, "--attention"), AttentionKind::mla());
  EXPECT_EQ(parse_attention_kind("gqa:8", 128, "--attention"), AttentionKind::gqa(8));
  EXPECT_EQ(parse_attention_kind("mqa", 128, "--attention").name(), "mqa");
  std::vector<AttentionKind> all = parse_attention_kinds("mla,mha,gqa:8,mqa", 128, "--attention");
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all[2].name(), "gqa:8");
  EXPECT_ERROR_MENTIONS(parse_attention_kind("gqa:7", 128, "--attention"), "--attention", "gqa:7", "128");
  EXPECT_ERROR_MENTIONS(parse_attention_kind("gqa:", 128, "--attention"), "--attention", "positive integer");
  EXPECT_ERROR_MENTIONS(parse_attention_kind("gqa:0", 128, "--attention"), "gqa:0");
  EXPECT_ERROR_MENTIONS(parse_attention_kind("flash", 128, "--attention"), "--attention", "'flash'", "mla, mha");
  EXPECT_ERROR_MENTIONS(parse_attention_kinds("mla,mla", 128, "--attention"), "twice");
}

TEST(RandomModel, MlaGivesFiniteLogits) {
  ModelConfig c = tiny_random_config();
  SingleCommunicator comm;
  RandomWeights w(c);
  DeepseekModel model(c, w, comm);  // the default attention: MLA
  EXPECT_EQ(model.cache_width(), c.latent_dim());
  CachePool pool = CachePool::allocate(c.n_layers, 8, kBlockSize, model.cache_width(), DType::F32, Device::CPU);
  ForwardBatch b = chunk_batch(0, 9);
  for (int64_t i = 0; i < 9; ++i) b.token_ids[size_t(i)] = int32_t(3 + 5 * i);
  b.logit_rows = {8};
  Tensor logits = model.forward(b, pool.layers);
  ASSERT_EQ(logits.shape(), (Shape{1, c.vocab_size}));
  for (int64_t i = 0; i < logits.numel(); ++i) ASSERT_TRUE(std::isfinite(logits.data<float>()[i]));
  EXPECT_GT(max_abs(logits), 1e-3f);
}

TEST(RandomModel, BaselineDecodeAfterPrefillEqualsFullRecompute) {
  ModelConfig c = tiny_random_config();
  std::vector<int32_t> tokens = {7, 1, 33, 5, 60, 12, 9, 41, 2, 18};
  const int64_t n = int64_t(tokens.size());
  for (const AttentionKind& kind : {AttentionKind::mla(), AttentionKind::mha(), AttentionKind::gqa(2),
                                    AttentionKind::mqa()}) {
    SCOPED_TRACE(kind.name());
    SingleCommunicator comm;
    RandomWeights w(c, kind, 9);
    DeepseekModel model(c, w, comm, {}, {}, attention_factory(kind));
    if (!kind.is_mla()) {
      EXPECT_EQ(model.cache_width(), 2 * kind.kv_heads(c) * baseline_head_dim(c));
    }
    auto step = [&](CachePool& pool, int64_t start, int64_t count) {
      ForwardBatch b = chunk_batch(start, count);
      for (int64_t i = 0; i < count; ++i) b.token_ids[size_t(i)] = tokens[size_t(start + i)];
      b.logit_rows = {count - 1};
      return model.forward(b, pool.layers);
    };
    // Prefill n - 2 tokens, then decode the last two one at a time through the cache.
    CachePool cached = CachePool::allocate(c.n_layers, 8, kBlockSize, model.cache_width(), DType::F32, Device::CPU);
    step(cached, 0, n - 2);
    step(cached, n - 2, 1);
    Tensor decoded = step(cached, n - 1, 1);
    // The whole sequence recomputed in one prefill on a fresh cache.
    CachePool fresh = CachePool::allocate(c.n_layers, 8, kBlockSize, model.cache_width(), DType::F32, Device::CPU);
    Tensor recomputed = step(fresh, 0, n);
    for (int64_t i = 0; i < decoded.numel(); ++i) ASSERT_TRUE(std::isfinite(decoded.data<float>()[i]));
    EXPECT_LT(max_abs_diff(decoded, recomputed), 1e-4f * std::max(1.0f, max_abs(recomputed)));
  }
}
