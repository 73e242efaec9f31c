// The two MLA formulations compute the same function: the naive path (latents up-projected to per-head K/V)
// and the absorbed path (W_UK folded into the query, W_UV into the output, attention over the latent cache)
// agree within 1e-5 on the same inputs, for prefill chunks and for decode, on both fixtures' first layer.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "model/mla_attention.h"
#include "runtime/cache_pool.h"
#include "runtime/safetensors.h"
#include "test_util.h"

using namespace mlarun;

namespace {

void compare_paths(const std::string& fixture) {
  SingleCommunicator comm;
  std::string dir = mlarun::testing::data_dir() + "/" + fixture;
  ModelConfig c = load_model_config_from_dir(dir);
  Checkpoint ckpt(dir);
  MLAttention attn(c, ckpt, "model.layers.1.self_attn.", comm);
  ops::RopeTable rope = ops::make_rope_table(c);
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 1.0f);

  // A 20-token prompt in two chunks (12 then 8 tokens), then 3 decode steps, block size 5.
  const int64_t bs = 5;
  std::vector<int32_t> table = {3, 1, 4, 0, 2};
  auto step = [&](int64_t start, int64_t n, MlaPath path) {
    ForwardBatch b;
    b.add_sequence(std::vector<int32_t>(size_t(n), 0), start, table, bs);
    b.mla_path = path;
    return b;
  };
  CachePool naive_cache = CachePool::allocate(1, 5, bs, c.latent_dim(), DType::F32, Device::CPU);
  CachePool absorbed_cache = CachePool::allocate(1, 5, bs, c.latent_dim(), DType::F32, Device::CPU);
  std::vector<std::pair<int64_t, int64_t>> chunks = {{0, 12}, {12, 8}, {20, 1}, {21, 1}, {22, 1}};
  for (auto [start, n] : chunks) {
    Tensor x = Tensor::empty({n, c.dim}, DType::F32);
    for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = dist(rng);
    Tensor a = attn.forward(x, step(start, n, MlaPath::Naive), naive_cache.layers[0], rope);
    Tensor b = attn.forward(x, step(start, n, MlaPath::Absorbed), absorbed_cache.layers[0], rope);
    float worst = 0;
    for (int64_t i = 0; i < a.numel(); ++i) worst = std::max(worst, std::fabs(a.data<float>()[i] - b.data<float>()[i]));
    EXPECT_LT(worst, 1e-5f) << fixture << " chunk at " << start << " of " << n << " tokens";
    float scale = 0;
    for (int64_t i = 0; i < a.numel(); ++i) scale = std::max(scale, std::fabs(a.data<float>()[i]));
    EXPECT_GT(scale, 1e-2f) << "outputs too small for the comparison to mean anything";
  }
}

}  // namespace

TEST(MlaPaths, NaiveEqualsAbsorbedV2Tiny) { compare_paths("deepseek-v2-tiny"); }
TEST(MlaPaths, NaiveEqualsAbsorbedV3Tiny) { compare_paths("deepseek-v3-tiny"); }
