// MoE routing and token choice on the GPU against the CPU reference, on fresh random logits: every scoring and
// selection variant (softmax/sigmoid, greedy, group-limited, noaux_tc with bias, normalised, scaled) must pick the
// same experts with the same weights, and the token permutation must match; argmax and top-k/top-p sampling must
// pick the host sampler's tokens (a uniform within rounding of a boundary may pick the neighbour: at most 1%).
// Skips without a GPU.
#include <gtest/gtest.h>

#include "gpu_test_util.h"
#include "kernels/ops.h"

using namespace mlarun;
using namespace mlarun::testing;

TEST(GpuOps, RoutingEveryVariantMatchesTheCpu) {
  MLARUN_GPU_OR_SKIP();
  std::mt19937 rng(31);
  struct Variant { ScoreFunc score; TopkMethod method; int64_t E, groups, keep, k; bool normalize; float scale; };
  const Variant variants[] = {
      {ScoreFunc::Softmax, TopkMethod::Greedy, 64, 1, 1, 6, false, 1.0f},                 // V2-Lite style
      {ScoreFunc::Softmax, TopkMethod::GroupLimitedGreedy, 160, 8, 3, 6, false, 16.0f},   // V2
      {ScoreFunc::Sigmoid, TopkMethod::NoauxTc, 256, 8, 4, 8, true, 2.5f},                // V3
      {ScoreFunc::Sigmoid, TopkMethod::NoauxTc, 16, 1, 1, 2, true, 1.0f},
  };
  for (const Variant& v : variants) {
    ops::RoutingParams p;
    p.score_func = v.score;
    p.method = v.method;
    p.n_groups = v.groups;
    p.topk_groups = v.keep;
    p.top_k = v.k;
    p.normalize = v.normalize;
    p.scale = v.scale;
    const int64_t T = 300;
    Tensor logits = random_f32({T, v.E}, rng, 2.0f);
    Tensor bias = v.method == TopkMethod::NoauxTc ? random_f32({v.E}, rng, 0.1f) : Tensor();
    ops::Routing ref = ops::route(logits, bias, p);
    ops::Routing got = ops::route(logits.to(Device::CUDA), bias.defined() ? bias.to(Device::CUDA) : Tensor(), p);
    Tensor experts = got.experts.to(Device::CPU), weights = got.weights.to(Device::CPU);
    int64_t same = 0;
    for (int64_t i = 0; i < T * v.k; ++i) same += experts.data<int32_t>()[i] == ref.experts.data<int32_t>()[i];
    EXPECT_EQ(same, T * v.k) << v.E << " experts, top " << v.k;
    EXPECT_LT(rel_error(weights, ref.weights), 1e-5);
    ops::ExpertGroups g_ref = ops::group_by_expert(ref, v.E / 4, v.E / 2), g = ops::group_by_expert(got, v.E / 4, v.E / 2);
    EXPECT_EQ(g.tokens, g_ref.tokens);
    EXPECT_EQ(g.offsets, g_ref.offsets);
  }
}

TEST(GpuOps, ArgmaxAndSamplingPickTheHostSamplersTokens) {
  MLARUN_GPU_OR_SKIP();
  std::mt19937 rng(32);
  const int64_t R = 64, V = 129280;
  Tensor logits = random_f32({R, V}, rng, 3.0f);
  for (int64_t r = 0; r < R; r += 7) logits.data<float>()[r * V + 1000] = logits.data<float>()[r * V + 77] = 30.0f;  // ties
  Tensor gpu = logits.to(Device::CUDA);
  EXPECT_EQ(ops::argmax_rows(gpu), ops::argmax_rows(logits));
  EXPECT_EQ(ops::argmax_rows(ops::convert(gpu, DType::BF16)), ops::argmax_rows(bf16_rounded(logits)));

  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::vector<SamplingParams> params(static_cast<size_t>(R));
  std::vector<double> uniforms(static_cast<size_t>(R));
  int64_t same = 0, total = 0;
  auto kind = [](double temperature, double top_p, int64_t top_k) {
    SamplingParams p;
    p.temperature = temperature;
    p.top_p = top_p;
    p.top_k = top_k;
    return p;
  };
  const SamplingParams kinds[] = {kind(1.0, 1.0, 0),   kind(0.7, 0.9, 0), kind(1.3, 1.0, 50),
                                  kind(0.8, 0.5, 200), kind(0, 1, 0),     kind(1.0, 1, 1)};
  for (int round = 0; round < 4; ++round) {
    for (int64_t r = 0; r < R; ++r) {
      params[size_t(r)] = kinds[size_t((r + round) % 6)];
      uniforms[size_t(r)] = unit(rng);
    }
    std::vector<int32_t> want = ops::sample_rows(logits, params, uniforms);
    std::vector<int32_t> got = ops::sample_rows(gpu, params, uniforms);
    for (int64_t r = 0; r < R; ++r) same += want[size_t(r)] == got[size_t(r)];
    total += R;
  }
  EXPECT_GE(double(same), 0.99 * double(total)) << same << " of " << total << " draws agree";
}
