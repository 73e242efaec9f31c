// RandomWeights: deterministic values, slices equal to slices of the whole tensor, scales that keep activations
// finite, and exactly the tensors a model of that config and attention kind loads (nothing missing, nothing
// extra), on one rank and as one rank of eight.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "bench/baseline_attention.h"
#include "bench/random_weights.h"
#include "kernels/ops.h"
#include "kernels/random_normal.h"
#include "model/deepseek_model.h"
#include "random_model_util.h"
#include "test_util.h"

using namespace mlarun;
using mlarun::testing::LoneRankCommunicator;
using mlarun::testing::max_abs_diff;
using mlarun::testing::tiny_random_config;

namespace {

// Records every tensor the model asks for.
class RecordingSource final : public WeightSource {
 public:
  explicit RecordingSource(const WeightSource& inner) : inner_(inner) {}
  std::string source_name() const override { return inner_.source_name(); }
  bool contains(const std::string& t) const override { return inner_.contains(t); }
  Shape shape_of(const std::string& t) const override { return inner_.shape_of(t); }
  Tensor load(const std::string& t, DType dtype) const override {
    loaded.insert(t);
    return inner_.load(t, dtype);
  }
  Tensor load_slice(const std::string& t, int dim, int64_t begin, int64_t end, DType dtype) const override {
    loaded.insert(t);
    return inner_.load_slice(t, dim, begin, end, dtype);
  }
  mutable std::set<std::string> loaded;

 private:
  const WeightSource& inner_;
};

}  // namespace

TEST(RandomWeights, DeterministicForASeed) {
  ModelConfig c = tiny_random_config();
  RandomWeights a(c, AttentionKind::mla(), 1), b(c, AttentionKind::mla(), 1), other(c, AttentionKind::mla(), 2);
  for (const std::string& name : a.tensor_names()) {
    Tensor x = a.load(name), y = b.load(name);
    EXPECT_EQ(max_abs_diff(x, y), 0.0f) << name;
    EXPECT_EQ(max_abs_diff(x, a.load(name)), 0.0f) << name;  // and on every call
  }
  EXPECT_GT(max_abs_diff(a.load("lm_head.weight"), other.load("lm_head.weight")), 0.1f);
  // Different tensors of the same shape differ.
  EXPECT_GT(max_abs_diff(a.load("model.layers.0.mlp.gate_proj.weight"), a.load("model.layers.0.mlp.up_proj.weight")),
            0.1f);
}

TEST(RandomWeights, SlicesEqualSlicesOfTheWholeTensor) {
  ModelConfig c = tiny_random_config();
  RandomWeights w(c, AttentionKind::gqa(2), 3);
  for (const std::string name : {"model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight",
                                 "model.embed_tokens.weight", "model.norm.weight"}) {
    Tensor whole = w.load(name);
    const Shape s = whole.shape();
    for (int dim = 0; dim < int(s.size()); ++dim) {
      int64_t n = s[size_t(dim)], begin = n / 4, end = n / 4 + n / 2;
      Tensor part = w.load_slice(name, dim, begin, end);
      int64_t rows = s.size() == 2 ? s[0] : 1, cols = s.size() == 2 ? s[1] : s[0];
      for (int64_t r = 0; r < part.dim(0); ++r)
        for (int64_t k = 0; k < (part.ndim() == 2 ? part.dim(1) : 1); ++k) {
          int64_t R = dim == 0 && s.size() == 2 ? r + begin : r, K = dim == 1 ? k + begin : k;
          float expect = s.size() == 2 ? whole.data<float>()[R * cols + K] : whole.data<float>()[r + begin];
          float got = part.data<float>()[r * (part.ndim() == 2 ? part.dim(1) : 1) + k];
          ASSERT_EQ(got, expect) << name << " dim " << dim << " at " << r << "," << k;
        }
      (void)rows;
    }
  }
  EXPECT_ERROR_MENTIONS(w.load_slice("model.norm.weight", 0, 0, c.dim + 1), "random weights", "model.norm.weight");
  EXPECT_ERROR_MENTIONS(w.load("model.layers.0.self_attn.kv_b_proj.weight"), "random weights",
                        "model.layers.0.self_attn.kv_b_proj.weight");
}

TEST(RandomWeights, ScalesKeepActivationsFinite) {
  ModelConfig c = tiny_random_config();
  c.dim = 256;
  c.inter_dim = 512;
  RandomWeights w(c);
  Tensor m = w.load("model.layers.0.mlp.gate_proj.weight");  // [512, 256]
  double sum = 0, sq = 0;
  for (int64_t i = 0; i < m.numel(); ++i) sum += m.data<float>()[i], sq += double(m.data<float>()[i]) * m.data<float>()[i];
  double mean = sum / double(m.numel()), sd = std::sqrt(sq / double(m.numel()) - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.002);
  EXPECT_NEAR(sd, 1.0 / std::sqrt(256.0), 0.05 / std::sqrt(256.0));
  Tensor norm = w.load("model.norm.weight");
  for (int64_t i = 0; i < norm.numel(); ++i) EXPECT_NEAR(norm.data<float>()[i], 1.0f, 0.2f);
}

TEST(RandomWeights, HoldsExactlyWhatTheModelLoads) {
  ModelConfig c = tiny_random_config();
  c.score_func = ScoreFunc::Sigmoid;  // adds e_score_correction_bias
  c.topk_method = TopkMethod::NoauxTc;
  c.has_gate_bias = true;
  c.norm_topk_prob = true;
  c.n_routed_experts = 8;  // so that 8 ranks own one expert each
  c.validate();
  for (const AttentionKind& kind : {AttentionKind::mla(), AttentionKind::mha(), AttentionKind::gqa(2),
                                    AttentionKind::mqa()}) {
    SCOPED_TRACE(kind.name());
    RandomWeights w(c, kind);
    RecordingSource one_rank(w);
    SingleCommunicator single;
    DeepseekModel model(c, one_rank, single, {}, {}, attention_factory(kind));
    std::vector<std::string> names = w.tensor_names();
    EXPECT_EQ(std::set<std::string>(names.begin(), names.end()), one_rank.loaded);
    EXPECT_TRUE(w.contains("model.layers.1.mlp.gate.e_score_correction_bias"));
    EXPECT_EQ(w.contains("model.layers.0.self_attn.kv_a_proj_with_mqa.weight"), kind.is_mla());

    // Rank 3 of 8 loads its own expert only (its slices of the rest come through load_slice).
    RecordingSource rank3(w);
    LoneRankCommunicator comm(3, 8);
    DeepseekModel shard(c, rank3, comm, {}, {}, attention_factory(kind));
    EXPECT_TRUE(rank3.loaded.count("model.layers.1.mlp.experts.3.gate_proj.weight"));
    EXPECT_FALSE(rank3.loaded.count("model.layers.1.mlp.experts.4.gate_proj.weight"));
  }
}

TEST(RandomWeights, DeepseekV2ShapesCountItsParameters) {
  ModelConfig c = load_model_config(mlarun::testing::source_dir() + "/configs/config_236B.json");
  RandomWeights w(c);
  EXPECT_EQ(w.total_values(), c.num_params());  // every tensor of the 236B model, with the config's shapes
  EXPECT_EQ(w.shape_of("model.layers.59.mlp.experts.159.down_proj.weight"), (Shape{5120, 1536}));
  RandomWeights mha(c, AttentionKind::gqa(8));
  EXPECT_EQ(mha.shape_of("model.layers.0.self_attn.k_proj.weight"), (Shape{8 * 128, 5120}));
  EXPECT_EQ(mha.shape_of("model.layers.0.self_attn.q_proj.weight"), (Shape{128 * 128, 5120}));
  // A rank's slice of a large tensor is generated alone: 1/8 of q_proj's rows.
  Tensor part = mha.load_slice("model.layers.0.self_attn.q_proj.weight", 0, 0, 16 * 128);
  EXPECT_EQ(part.shape(), (Shape{16 * 128, 5120}));
}

// The values are a fixed function of (stream, index): the formula the benchmarks have always used (written out
// here again), and ops::fill_random_normal (the GPU's way to make them, checked against these on a GPU by
// GpuModelKernels.RandomWeightsMadeOnTheGpuAreTheHostsValues) makes the same ones on the CPU, in f32 and bf16.
TEST(RandomWeights, ValuesAreAFixedFunctionOfStreamAndIndex) {
  EXPECT_EQ(random_values::kNormalScale, std::sqrt(3.0f) / 65536.0f);
  const auto mix = [](uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
  };
  for (uint64_t i = 0; i < 10000; ++i) {
    const uint64_t stream = 77 + 1000003 * (i % 7);
    const uint64_t r = mix(stream ^ mix(i));
    const float sum = float((r & 0xffff) + ((r >> 16) & 0xffff) + ((r >> 32) & 0xffff) + (r >> 48)) + 2.0f;
    ASSERT_EQ(random_values::normal(stream, i), (sum - 2.0f * 65536.0f) * (std::sqrt(3.0f) / 65536.0f)) << i;
  }
  Tensor f = Tensor::empty({3, 5}, DType::F32), b = Tensor::empty({3, 5}, DType::BF16);
  ops::fill_random_normal(f, 41, 5, 11, 2, 0.5f, 1.0f);
  ops::fill_random_normal(b, 41, 5, 11, 2, 0.5f, 1.0f);
  for (int64_t o = 0; o < 3; ++o)
    for (int64_t i = 0; i < 5; ++i) {
      float want = 0;
      random_normal_values(41, o * 11 + 2 + i, &want, 1);
      want = want * 0.5f + 1.0f;
      EXPECT_EQ(f.data<float>()[o * 5 + i], want);
      EXPECT_EQ(static_cast<const uint16_t*>(b.raw())[o * 5 + i], float_to_bf16(want));
    }
  EXPECT_ERROR_MENTIONS(ops::fill_random_normal(f, 41, 4, 11, 2, 1.0f, 0.0f), "whole rows");
}
