// Every CPU reference op against straightforward math written here in double precision, on random inputs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "kernels/ops.h"
#include "test_util.h"

using namespace mlarun;

namespace {

Tensor random_tensor(const Shape& shape, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> dist(0.0f, scale);
  Tensor t = Tensor::empty(shape, DType::F32);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

void expect_close(const Tensor& a, const std::vector<double>& b, double tol, const char* what) {
  ASSERT_EQ(a.numel(), int64_t(b.size())) << what;
  for (int64_t i = 0; i < a.numel(); ++i) ASSERT_NEAR(a.data<float>()[i], b[size_t(i)], tol) << what << " at " << i;
}

// Reference attention in double: q [Tq,H,D], k [Tk,Hkv,D], v [Tk,Hkv,Dv].
std::vector<double> naive_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale, int64_t off) {
  int64_t Tq = q.dim(0), H = q.dim(1), D = q.dim(2), Hkv = k.dim(1), Dv = v.dim(2);
  std::vector<double> o(static_cast<size_t>(Tq * H * Dv), 0.0);
  for (int64_t i = 0; i < Tq; ++i)
    for (int64_t h = 0; h < H; ++h) {
      int64_t kh = h / (H / Hkv), n = off + i + 1;
      std::vector<double> s(static_cast<size_t>(n));
      double mx = -1e300, sum = 0;
      for (int64_t t = 0; t < n; ++t) {
        double d = 0;
        for (int64_t j = 0; j < D; ++j) d += double(q.data<float>()[(i * H + h) * D + j]) * k.data<float>()[(t * Hkv + kh) * D + j];
        s[size_t(t)] = d * scale;
        mx = std::max(mx, s[size_t(t)]);
      }
      for (auto& x : s) sum += (x = std::exp(x - mx));
      for (int64_t t = 0; t < n; ++t)
        for (int64_t j = 0; j < Dv; ++j)
          o[size_t((i * H + h) * Dv + j)] += s[size_t(t)] / sum * v.data<float>()[(t * Hkv + kh) * Dv + j];
    }
  return o;
}

}  // namespace

TEST(CpuOps, LinearMatchesDoubleLoop) {
  std::mt19937 rng(1);
  Tensor x = random_tensor({5, 37}, rng), w = random_tensor({11, 37}, rng);
  std::vector<double> want(55);
  for (int m = 0; m < 5; ++m)
    for (int n = 0; n < 11; ++n)
      for (int k = 0; k < 37; ++k) want[size_t(m * 11 + n)] += double(x.data<float>()[m * 37 + k]) * w.data<float>()[n * 37 + k];
  expect_close(ops::linear(x, w), want, 1e-4, "linear");
  EXPECT_ERROR_MENTIONS(ops::linear(x, random_tensor({11, 36}, rng)), "linear", "[5, 37]", "[11, 36]");
}

TEST(CpuOps, HeadLinearIsPerHeadLinear) {
  std::mt19937 rng(2);
  Tensor x = random_tensor({3, 4, 8}, rng), w = random_tensor({4, 6, 8}, rng);
  Tensor y = ops::head_linear(x, w);
  std::vector<double> want(3 * 4 * 6);
  for (int t = 0; t < 3; ++t)
    for (int h = 0; h < 4; ++h)
      for (int n = 0; n < 6; ++n)
        for (int k = 0; k < 8; ++k)
          want[size_t((t * 4 + h) * 6 + n)] += double(x.data<float>()[(t * 4 + h) * 8 + k]) * w.data<float>()[(h * 6 + n) * 8 + k];
  expect_close(y, want, 1e-4, "head_linear");
}

// MLA's naive-path K and V: head h's nope keys and values from its rows of wkv_b, the rope columns shared.
TEST(CpuOps, MlaUpProjectIsPerHeadKeysWithTheSharedRopeAndValues) {
  std::mt19937 rng(3);
  const int n = 4, H = 3, nope = 5, vd = 7, R = 9, Dr = 2;  // v dim != nope dim
  Tensor rows = random_tensor({n, R + Dr}, rng), wkv_b = random_tensor({H * (nope + vd), R}, rng);
  const ops::KeysValues kv = ops::mla_up_project(rows, wkv_b, nope, vd);
  ASSERT_EQ(kv.k.shape(), (Shape{n, H, nope + Dr}));
  ASSERT_EQ(kv.v.shape(), (Shape{n, H, vd}));
  std::vector<double> want_k(size_t(n * H * (nope + Dr))), want_v(size_t(n * H * vd));
  auto dot = [&](int t, int w_row) {
    double acc = 0;
    for (int c = 0; c < R; ++c)
      acc += double(rows.data<float>()[t * (R + Dr) + c]) * wkv_b.data<float>()[w_row * R + c];
    return acc;
  };
  for (int t = 0; t < n; ++t)
    for (int h = 0; h < H; ++h) {
      for (int j = 0; j < nope; ++j) want_k[size_t((t * H + h) * (nope + Dr) + j)] = dot(t, h * (nope + vd) + j);
      for (int j = 0; j < Dr; ++j)
        want_k[size_t((t * H + h) * (nope + Dr) + nope + j)] = rows.data<float>()[t * (R + Dr) + R + j];
      for (int j = 0; j < vd; ++j) want_v[size_t((t * H + h) * vd + j)] = dot(t, h * (nope + vd) + nope + j);
    }
  expect_close(kv.k, want_k, 1e-4, "mla_up_project k");
  expect_close(kv.v, want_v, 1e-4, "mla_up_project v");
  EXPECT_ERROR_MENTIONS(ops::mla_up_project(rows, random_tensor({H * (nope + vd) + 1, R}, rng), nope, vd),
                        "mla_up_project", "[37, 9]", "nope 5 + v 7");
  EXPECT_ERROR_MENTIONS(ops::mla_up_project(random_tensor({n, R}, rng), wkv_b, nope, vd), "mla_up_project", "[4, 9]",
                        "9 + rope");
}

TEST(CpuOps, RmsNormSiluMulAndEmbedding) {
  std::mt19937 rng(3);
  Tensor x = random_tensor({3, 16}, rng), w = random_tensor({16}, rng);
  std::vector<double> want(48);
  for (int r = 0; r < 3; ++r) {
    double ss = 0;
    for (int i = 0; i < 16; ++i) ss += double(x.data<float>()[r * 16 + i]) * x.data<float>()[r * 16 + i];
    double inv = 1.0 / std::sqrt(ss / 16 + 1e-6);
    for (int i = 0; i < 16; ++i) want[size_t(r * 16 + i)] = x.data<float>()[r * 16 + i] * inv * w.data<float>()[i];
  }
  expect_close(ops::rms_norm(x, w, 1e-6f), want, 1e-5, "rms_norm");

  Tensor g = random_tensor({10}, rng, 3.0f), u = random_tensor({10}, rng);
  std::vector<double> sm(10);
  for (int i = 0; i < 10; ++i) {
    double a = g.data<float>()[i];
    sm[size_t(i)] = a / (1 + std::exp(-a)) * u.data<float>()[i];
  }
  expect_close(ops::silu_mul(g, u), sm, 1e-5, "silu_mul");

  Tensor table = random_tensor({4, 3}, rng);  // rows 4..7 of an 8-token vocabulary
  Tensor e = ops::embedding({5, 1, 7}, table, 4);
  std::vector<double> emb = {table.data<float>()[3], table.data<float>()[4], table.data<float>()[5], 0, 0, 0,
                             table.data<float>()[9], table.data<float>()[10], table.data<float>()[11]};
  expect_close(e, emb, 0, "embedding");
}

TEST(CpuOps, YarnFrequenciesFollowTheSpec) {
  ModelConfig c;  // ModelArgs defaults: rope 64, theta 1e4, factor 40, original 4096, beta 32/1 -> low 10, high 23
  c.format = "deepseek";
  ops::RopeTable t = ops::make_rope_table(c);
  ASSERT_EQ(t.rotary_dim(), 64);
  for (int i = 0; i < 32; ++i) {
    double f = std::pow(10000.0, -2.0 * i / 64);
    double ramp = std::clamp((i - 10.0) / 13.0, 0.0, 1.0);
    EXPECT_NEAR(t.inv_freq[size_t(i)], f / 40 * ramp + f * (1 - ramp), 1e-6 * f) << i;
  }
  EXPECT_NEAR(t.inv_freq[16], 0.55 * std::pow(10000.0, -0.5), 0.005 * std::pow(10000.0, -0.5));
  c.use_yarn = false;
  EXPECT_NEAR(ops::make_rope_table(c).inv_freq[31], std::pow(10000.0, -62.0 / 64), 1e-9);
}

TEST(CpuOps, RopeRotatesAdjacentPairsOfTheTail) {
  std::mt19937 rng(4);
  ModelConfig c;
  c.qk_rope_head_dim = 8;
  c.use_yarn = false;
  ops::RopeTable table = ops::make_rope_table(c);
  Tensor x = random_tensor({3, 2, 12}, rng);  // 4 untouched values, then 8 rotary ones
  Tensor orig = x.clone();
  std::vector<int64_t> pos = {0, 5, 1000};
  ops::apply_rope(x, pos, table);
  for (int t = 0; t < 3; ++t)
    for (int h = 0; h < 2; ++h) {
      const float* a = orig.data<float>() + (t * 2 + h) * 12;
      const float* b = x.data<float>() + (t * 2 + h) * 12;
      for (int i = 0; i < 4; ++i) EXPECT_EQ(a[i], b[i]);
      for (int i = 0; i < 4; ++i) {
        double ang = double(pos[size_t(t)]) * table.inv_freq[size_t(i)];
        double re = a[4 + 2 * i] * std::cos(ang) - a[5 + 2 * i] * std::sin(ang);
        double im = a[4 + 2 * i] * std::sin(ang) + a[5 + 2 * i] * std::cos(ang);
        EXPECT_NEAR(b[4 + 2 * i], re, 2e-4);
        EXPECT_NEAR(b[5 + 2 * i], im, 2e-4);
      }
    }
}

TEST(CpuOps, CausalAttentionWithOffsetAndGqa) {
  std::mt19937 rng(5);
  Tensor q = random_tensor({4, 6, 16}, rng), k = random_tensor({9, 2, 16}, rng), v = random_tensor({9, 2, 5}, rng);
  Tensor lse;
  Tensor o = ops::attention(q, k, v, 0.3f, 5, &lse);
  expect_close(o, naive_attention(q, k, v, 0.3, 5), 1e-5, "attention");
  EXPECT_ERROR_MENTIONS(ops::attention(q, k, v, 0.3f, 6), "attention", "need that many keys");
  // One key: the output is that key's value whatever the score.
  Tensor o1 = ops::attention(q.rows(0, 1), k.rows(0, 1), v.rows(0, 1), 0.3f, 0);
  for (int h = 0; h < 6; ++h)
    for (int j = 0; j < 5; ++j) EXPECT_FLOAT_EQ(o1.data<float>()[h * 5 + j], v.data<float>()[(h / 3) * 5 + j]);
}

TEST(CpuOps, PagedCacheWriteGatherAndMlaAttention) {
  std::mt19937 rng(6);
  const int64_t bs = 3, width = 10, R = 7;
  Tensor pool = Tensor::empty({5, bs, width}, DType::F32);
  for (int64_t i = 0; i < pool.numel(); ++i) pool.data<float>()[i] = NAN;  // unused slots must never be read
  std::vector<int32_t> table = {4, 0, 2};  // shuffled blocks
  Tensor rows = random_tensor({8, width}, rng);
  std::vector<int64_t> slots;
  for (int64_t p = 0; p < 8; ++p) slots.push_back(table[size_t(p / bs)] * bs + p % bs);
  std::vector<int64_t> with_pad = slots;
  with_pad.push_back(-1);
  Tensor padded = Tensor::empty({9, width}, DType::F32);
  std::memcpy(padded.data<float>(), rows.data<float>(), rows.nbytes());
  for (int64_t j = 0; j < width; ++j) padded.data<float>()[8 * width + j] = 99;
  ops::write_cache(pool, with_pad, padded);
  Tensor back = ops::gather_cache(pool, table, 8);
  for (int64_t i = 0; i < back.numel(); ++i) ASSERT_EQ(back.data<float>()[i], rows.data<float>()[i]);

  // MLA over the pool equals dense attention with K = rows, V = rows[:, :R] (one shared KV head).
  Tensor q = random_tensor({2, 4, width}, rng);
  Tensor o = ops::mla_paged_attention(q, pool, table, R, 0.25f, 6);
  Tensor v = Tensor::empty({8, 1, R}, DType::F32);
  for (int t = 0; t < 8; ++t) std::memcpy(v.data<float>() + t * R, rows.data<float>() + t * width, size_t(R) * 4);
  expect_close(o, naive_attention(q, rows.view({8, 1, width}), v, 0.25, 6), 1e-5, "mla_paged_attention");
  EXPECT_ERROR_MENTIONS(ops::gather_cache(pool, table, 10), "gather_cache", "10");
  EXPECT_ERROR_MENTIONS(ops::write_cache(pool, {15}, rows.rows(0, 1)), "slot 15");
}

TEST(CpuOps, RoutingVariants) {
  // 8 experts in 4 groups of 2; logits chosen so each variant picks differently.
  Tensor logits = Tensor::from_f32({1, 8}, {3.0f, -1.0f, 2.5f, 2.4f, 0.1f, 0.2f, 2.9f, -3.0f});
  ops::RoutingParams p;
  p.top_k = 3;
  p.scale = 2.0f;
  ops::Routing greedy = ops::route(logits, Tensor(), p);
  std::vector<int32_t> want = {0, 6, 2};
  for (int j = 0; j < 3; ++j) EXPECT_EQ(greedy.experts.data<int32_t>()[j], want[size_t(j)]);
  double z = 0;
  for (int e = 0; e < 8; ++e) z += std::exp(double(logits.data<float>()[e]));
  EXPECT_NEAR(greedy.weights.data<float>()[0], 2.0 * std::exp(3.0) / z, 1e-6);

  // Group-limited greedy keeps the 2 groups with the largest max: group 0 (3.0) and group 3 (2.9).
  p.method = TopkMethod::GroupLimitedGreedy;
  p.n_groups = 4;
  p.topk_groups = 2;
  ops::Routing limited = ops::route(logits, Tensor(), p);
  want = {0, 6, 1};
  for (int j = 0; j < 3; ++j) EXPECT_EQ(limited.experts.data<int32_t>()[j], want[size_t(j)]);

  // noaux_tc: sigmoid + bias picks; groups by the sum of their top two biased scores; weights unbiased, renormalised.
  p.method = TopkMethod::NoauxTc;
  p.score_func = ScoreFunc::Sigmoid;
  p.normalize = true;
  p.scale = 2.5f;
  Tensor bias = Tensor::from_f32({8}, {0, 0, 0, 0, 1.0f, 1.0f, 0, 0});  // lifts group 2 above group 3
  ops::Routing tc = ops::route(logits, bias, p);
  auto sig = [](double x) { return 1 / (1 + std::exp(-x)); };
  // Group sums: g0 = s(3)+s(-1), g1 = s(2.5)+s(2.4), g2 = s(.1)+s(.2)+2, g3 = s(2.9)+s(-3): keep g2 and g1.
  want = {5, 4, 2};
  for (int j = 0; j < 3; ++j) EXPECT_EQ(tc.experts.data<int32_t>()[j], want[size_t(j)]);
  double sum = sig(0.2) + sig(0.1) + sig(2.5);
  EXPECT_NEAR(tc.weights.data<float>()[2], 2.5 * sig(2.5) / sum, 1e-6);
  EXPECT_ERROR_MENTIONS(ops::route(logits, Tensor(), p), "noaux_tc", "bias");
}

TEST(CpuOps, RopeHalvesLayoutWhenNotInterleaved) {
  ModelConfig c;
  c.qk_rope_head_dim = 4;
  c.use_yarn = false;
  c.rope_interleaved = false;
  ops::RopeTable table = ops::make_rope_table(c);
  EXPECT_FALSE(table.interleaved);
  Tensor x = Tensor::from_f32({1, 1, 5}, {9, 1, 2, 3, 4});  // one untouched value, then [x0 x1 | y0 y1]
  ops::apply_rope(x, {7}, table);
  const float* o = x.data<float>();
  EXPECT_EQ(o[0], 9.0f);
  for (int i = 0; i < 2; ++i) {
    double ang = 7.0 * table.inv_freq[size_t(i)];
    double a = 1 + i, b = 3 + i;  // pair (i, i + 2)
    EXPECT_NEAR(o[1 + i], a * std::cos(ang) - b * std::sin(ang), 1e-5);
    EXPECT_NEAR(o[3 + i], a * std::sin(ang) + b * std::cos(ang), 1e-5);
  }
}
