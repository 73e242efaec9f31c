// Sampler: greedy ties, top-k / top-p limits that reduce to greedy, seeded reproducibility, and empirical
// frequencies against the softmax (with top-k and top-p renormalisation). Per-request RNG isolation is the
// engine's: tests/engine/test_sequence_rng.cpp.
#include <cmath>

#include "engine/sequence.h"
#include "kernels/cpu/sampling.h"
#include "test_util.h"

namespace mlarun {
namespace {

SamplingParams params(double temperature, int64_t top_k = 0, double top_p = 1, uint64_t seed = 0) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.seed = seed;
  return p;
}

std::vector<double> softmax(const std::vector<float>& logits, double temperature) {
  std::vector<double> p(logits.size());
  double total = 0;
  for (size_t i = 0; i < logits.size(); ++i) total += p[i] = std::exp(logits[i] / temperature);
  for (double& x : p) x /= total;
  return p;
}

std::vector<double> frequencies(const std::vector<float>& logits, const SamplingParams& p, int draws) {
  std::mt19937_64 rng(p.seed);
  std::vector<double> freq(logits.size(), 0);
  for (int i = 0; i < draws; ++i) freq[sample(logits.data(), logits.size(), p, rng)] += 1.0 / draws;
  return freq;
}

TEST(Sampler, GreedyTakesTheLowestIndexAmongTies) {
  const std::vector<float> logits = {1, 3, 3, 2};
  std::mt19937_64 rng(0);
  const std::mt19937_64 before = rng;
  EXPECT_EQ(sample(logits.data(), 4, params(0), rng), 1);
  EXPECT_EQ(rng, before) << "greedy must not consume randomness";
  EXPECT_EQ(argmax_token(logits.data(), 4), 1);
  const std::vector<float> with_neg_inf = {-INFINITY, -5, -INFINITY};
  EXPECT_EQ(sample(with_neg_inf.data(), 3, params(0), rng), 1);
}

TEST(Sampler, TopKOneAndTinyTopPAreGreedy) {
  std::mt19937 gen(7);
  std::uniform_int_distribution<int> pick(0, 20);  // small range: plenty of ties
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<float> logits(50);
    for (float& x : logits) x = static_cast<float>(pick(gen)) / 4;
    const int32_t greedy = argmax_token(logits.data(), 50);
    std::mt19937_64 rng(trial);
    EXPECT_EQ(sample(logits.data(), 50, params(1.0, 1), rng), greedy);
    EXPECT_EQ(sample(logits.data(), 50, params(0.7, 0, 1e-9), rng), greedy);
    EXPECT_EQ(sample(logits.data(), 50, params(2.0, 5, 1e-9), rng), greedy);
  }
}

TEST(Sampler, SameSeedSameTokensDifferentSeedsDiffer) {
  std::vector<float> logits(32);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = static_cast<float>(std::sin(i * 1.7));
  auto draw_sequence = [&](uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<int32_t> out;
    for (int i = 0; i < 64; ++i) out.push_back(sample(logits.data(), 32, params(1.0, 0, 1, seed), rng));
    return out;
  };
  EXPECT_EQ(draw_sequence(42), draw_sequence(42));
  EXPECT_NE(draw_sequence(42), draw_sequence(43));
}

TEST(Sampler, FrequenciesMatchTheSoftmax) {
  const std::vector<float> logits = {0.0f, 1.0f, 2.0f, 0.5f};
  const int draws = 20000;
  const double tol = 0.015;  // about 4 standard deviations at 20k draws
  for (double temperature : {1.0, 2.0}) {
    const std::vector<double> want = softmax(logits, temperature);
    const std::vector<double> got = frequencies(logits, params(temperature, 0, 1, 5), draws);
    for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(got[i], want[i], tol) << "T=" << temperature << " token " << i;
  }
}

TEST(Sampler, TopKAndTopPRenormaliseTheKeptTokens) {
  const std::vector<float> logits = {0.0f, 1.0f, 2.0f, 0.5f};
  const std::vector<double> p = softmax(logits, 1.0);  // {0.078, 0.213, 0.579, 0.129}
  const double top2 = p[2] + p[1];
  const std::vector<double> want = {0, p[1] / top2, p[2] / top2, 0};
  // top_k 2 keeps tokens 2 and 1; so does top_p 0.75 (0.579 < 0.75 <= 0.579 + 0.213).
  for (const SamplingParams& sp : {params(1.0, 2, 1, 11), params(1.0, 0, 0.75, 12), params(1.0, 3, 0.75, 13)}) {
    const std::vector<double> got = frequencies(logits, sp, 20000);
    for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(got[i], want[i], 0.015) << "top_k " << sp.top_k << " token " << i;
  }
}

TEST(Sampler, UniformIsInTheUnitIntervalAndBuiltFromTheRawDraw) {
  std::mt19937_64 rng(123), raw(123);
  for (int i = 0; i < 1000; ++i) {
    const double u = uniform_unit(rng);
    EXPECT_GE(u, 0.0);
    EXPECT_LT(u, 1.0);
    EXPECT_EQ(u, static_cast<double>(raw() >> 11) / 9007199254740992.0);
  }
}

TEST(Sampler, RejectsBadInputs) {
  const std::vector<float> nan_logits = {0.0f, NAN, 1.0f};
  const std::vector<float> all_neg_inf = {-INFINITY, -INFINITY};
  std::mt19937_64 rng(0);
  EXPECT_ERROR_MENTIONS(sample(nan_logits.data(), 3, params(1.0), rng), "logits[1]");
  EXPECT_ERROR_MENTIONS(sample(all_neg_inf.data(), 2, params(1.0), rng), "-inf");
  EXPECT_ERROR_MENTIONS(sample(nan_logits.data(), 0, params(1.0), rng), "vocab");
  EXPECT_ERROR_MENTIONS(params(1.0, 0, 0.0).validate(), "top_p", "0");
  EXPECT_ERROR_MENTIONS(params(1.0, -2).validate(), "top_k", "-2");
  SamplingParams p;
  p.max_tokens = 0;
  EXPECT_ERROR_MENTIONS(p.validate(), "max_tokens", "0");
  p = SamplingParams{};
  p.stop_token_ids = {5, -3};
  EXPECT_ERROR_MENTIONS(p.validate(), "stop_token_ids", "-3");
}

}  // namespace
}  // namespace mlarun
