// The MLA backend seam (model/mla_backend.h) on the CPU: the batched backend (one gather and one up-projection per
// step for the prefill sequences, varlen attention, the absorbed part through the step's layout; what the GPU
// runs, here on the CPU ops) computes what the reference backend computes, within 1e-5, over steps that mix
// prefill chunks on a cached prefix with decodes, on both fixtures. The reference is what every parity test uses.
#include <gtest/gtest.h>

#include <cmath>

#include "model/deepseek_model.h"
#include "runtime/cache_pool.h"
#include "test_util.h"

using namespace mlarun;

namespace {

// Three steps over two sequences, block size 4: prefills, then a chunk beside a decode, then two decodes.
std::vector<Tensor> run_steps(DeepseekModel& model) {
  const ModelConfig& c = model.config();
  CachePool pool = CachePool::allocate(c.n_layers, 12, 4, model.cache_width(), DType::F32, Device::CPU);
  const std::vector<int32_t> a_table = {7, 2, 9, 0}, b_table = {5, 11, 3};
  const std::vector<int32_t> a = {5, 17, 42, 3, 8, 13, 21, 34, 55, 1, 2}, b = {9, 100, 4, 6, 12, 30, 7};
  std::vector<Tensor> out;
  auto step = [&](std::vector<std::tuple<const std::vector<int32_t>*, int64_t, int64_t, const std::vector<int32_t>*>> seqs) {
    ForwardBatch batch;
    for (auto [tokens, start, n, table] : seqs) {
      const int64_t first = batch.add_sequence(tokens->data() + start, n, start, *table, 4);
      for (int64_t i = 0; i < n; ++i) batch.logit_rows.push_back(first + i);
    }
    out.push_back(model.forward(batch, pool.layers));
  };
  step({{&a, 0, 7, &a_table}, {&b, 0, 5, &b_table}});   // two prefills (naive part is the whole step)
  step({{&b, 5, 1, &b_table}, {&a, 7, 3, &a_table}});   // decode + chunk over a cached prefix (mixed)
  step({{&a, 10, 1, &a_table}, {&b, 6, 1, &b_table}});  // decodes only (absorbed part is the whole step)
  return out;
}

void compare(const std::string& fixture) {
  SingleCommunicator comm;
  auto model = DeepseekModel::load(mlarun::testing::data_dir() + "/" + fixture, comm);
  EXPECT_STREQ(model->mla_backend().name(), "reference") << "the CPU default is the reference";
  std::vector<Tensor> want = run_steps(*model);
  model->set_mla_backend(MlaBackendKind::Batched);
  std::vector<Tensor> got = run_steps(*model);
  ASSERT_EQ(want.size(), got.size());
  for (size_t s = 0; s < want.size(); ++s) {
    ASSERT_EQ(want[s].shape(), got[s].shape());
    float worst = 0, scale = 0;
    for (int64_t i = 0; i < want[s].numel(); ++i) {
      worst = std::max(worst, std::fabs(want[s].data<float>()[i] - got[s].data<float>()[i]));
      scale = std::max(scale, std::fabs(want[s].data<float>()[i]));
    }
    EXPECT_LT(worst, 1e-5f * std::max(1.0f, scale)) << fixture << " step " << s;
    EXPECT_GT(scale, 1e-3f);
  }
}

}  // namespace

TEST(MlaBackends, BatchedMatchesReferenceV2Tiny) { compare("deepseek-v2-tiny"); }
TEST(MlaBackends, BatchedMatchesReferenceV3Tiny) { compare("deepseek-v3-tiny"); }
