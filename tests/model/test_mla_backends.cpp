// The MLA backend seam (model/mla_backend.h) on the CPU: the batched backend (one gather and one up-projection per
// step for the prefill sequences, varlen attention, the absorbed part through the step's layout; what the GPU
// runs, here on the CPU ops) computes what the reference backend computes, within 1e-5, over steps that mix
// prefill chunks on a cached prefix with decodes, on both fixtures. The reference is what every parity test uses.
// The same with the quantized caches (--kv-cache-dtype fp8/int8, and bf16 on the CPU): both backends read the
// dequantized rows, so they agree as closely; every read goes through the cache, so the result does not depend
// on how the tokens were chunked.
#include <gtest/gtest.h>

#include <cmath>

#include "model/deepseek_model.h"
#include "runtime/cache_pool.h"
#include "runtime/runtime_options.h"
#include "test_util.h"

using namespace mlarun;

namespace {

// Three steps over two sequences, block size 4: prefills, then a chunk beside a decode, then two decodes.
std::vector<Tensor> run_steps(DeepseekModel& model, KvCacheDtype kv = KvCacheDtype::Auto) {
  const ModelConfig& c = model.config();
  const KvCacheStorage row = kv_cache_storage(kv, DType::F32, c.kv_lora_rank, c.qk_rope_head_dim);
  CachePool pool = CachePool::allocate(c.n_layers, 12, 4, row.width, row.dtype, Device::CPU);
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

float max_diff(const Tensor& a, const Tensor& b) {
  float worst = 0;
  for (int64_t i = 0; i < a.numel(); ++i) worst = std::max(worst, std::fabs(a.data<float>()[i] - b.data<float>()[i]));
  return worst;
}

void compare(const std::string& fixture, KvCacheDtype kv = KvCacheDtype::Auto) {
  SingleCommunicator comm;
  auto model = DeepseekModel::load(mlarun::testing::data_dir() + "/" + fixture, comm);
  EXPECT_STREQ(model->mla_backend().name(), "reference") << "the CPU default is the reference";
  std::vector<Tensor> want = run_steps(*model, kv);
  model->set_mla_backend(MlaBackendKind::Batched);
  std::vector<Tensor> got = run_steps(*model, kv);
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

TEST(MlaBackends, BatchedMatchesReferenceOnQuantizedCaches) {
  for (const char* fixture : {"deepseek-v2-tiny", "deepseek-v3-tiny"})
    for (KvCacheDtype kv : {KvCacheDtype::Bf16, KvCacheDtype::Fp8, KvCacheDtype::Int8}) {
      SCOPED_TRACE(std::string(fixture) + " " + kv_cache_dtype_name(kv));
      compare(fixture, kv);
    }
}

// A quantized cache changes the logits (it is read), a little (it is close), and fp8 more than int8 here.
TEST(MlaBackends, QuantizedCachesAreReadAndClose) {
  SingleCommunicator comm;
  auto model = DeepseekModel::load(mlarun::testing::data_dir() + "/deepseek-v3-tiny", comm);
  const std::vector<Tensor> exact = run_steps(*model);
  for (KvCacheDtype kv : {KvCacheDtype::Bf16, KvCacheDtype::Fp8, KvCacheDtype::Int8}) {
    const std::vector<Tensor> q = run_steps(*model, kv);
    for (size_t s = 0; s < exact.size(); ++s) {
      const float d = max_diff(exact[s], q[s]);
      EXPECT_GT(d, 0.0f) << kv_cache_dtype_name(kv) << " step " << s << ": the cache was not read quantized";
      EXPECT_LT(d, 0.5f) << kv_cache_dtype_name(kv) << " step " << s;
    }
  }
}

// Every read of the context goes through the cache, this step's own tokens included: prefilling 11 tokens at once
// and one token a step give the same logits.
TEST(MlaBackends, QuantizedCacheResultDoesNotDependOnChunking) {
  SingleCommunicator comm;
  auto model = DeepseekModel::load(mlarun::testing::data_dir() + "/deepseek-v2-tiny", comm);
  const ModelConfig& c = model->config();
  const std::vector<int32_t> a = {5, 17, 42, 3, 8, 13, 21, 34, 55, 1, 2}, table = {7, 2, 9};
  for (KvCacheDtype kv : {KvCacheDtype::Fp8, KvCacheDtype::Int8}) {
    const KvCacheStorage row = kv_cache_storage(kv, DType::F32, c.kv_lora_rank, c.qk_rope_head_dim);
    CachePool whole = CachePool::allocate(c.n_layers, 12, 4, row.width, row.dtype, Device::CPU);
    CachePool steps = CachePool::allocate(c.n_layers, 12, 4, row.width, row.dtype, Device::CPU);
    ForwardBatch all;
    all.add_sequence(a.data(), int64_t(a.size()), 0, table, 4);
    for (int64_t i = 0; i < int64_t(a.size()); ++i) all.logit_rows.push_back(i);
    const Tensor want = model->forward(all, whole.layers);
    for (int64_t i = 0; i < int64_t(a.size()); ++i) {
      ForwardBatch one;
      one.add_sequence(a.data() + i, 1, i, table, 4);
      one.logit_rows.push_back(0);
      const Tensor got = model->forward(one, steps.layers);
      float worst = 0;
      for (int64_t v = 0; v < got.numel(); ++v)
        worst = std::max(worst, std::fabs(got.data<float>()[v] - want.data<float>()[i * got.numel() + v]));
      EXPECT_LT(worst, 1e-4f) << kv_cache_dtype_name(kv) << " position " << i;
    }
  }
}
