// Whole-model parity with the Hugging Face fixtures (fp32): prompt logits at every position, then the greedy
// continuation decoded one token at a time over the paged latent cache, for several block sizes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>

#include "model/deepseek_model.h"
#include "runtime/cache_pool.h"
#include "runtime/safetensors.h"
#include "runtime/step_profiler.h"
#include "test_util.h"

using namespace mlarun;

namespace {

using mlarun::testing::max_abs_diff;

int32_t argmax(const float* v, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (v[i] > v[best]) best = i;
  return int32_t(best);
}

// One sequence in a pool whose blocks are handed out in a shuffled order, so block tables are not trivial.
struct OneSequence {
  int64_t block_size;
  std::vector<int32_t> block_table;
};

ForwardBatch make_step(const std::vector<int32_t>& tokens, int64_t start, const OneSequence& seq, bool all_logits,
                       MlaPath path) {
  ForwardBatch b;
  const int64_t n = int64_t(tokens.size());
  b.add_sequence(tokens, start, seq.block_table, seq.block_size);
  if (all_logits)
    for (int64_t i = 0; i < n; ++i) b.logit_rows.push_back(i);
  else
    b.logit_rows.push_back(n - 1);
  b.mla_path = path;
  return b;
}

// Moves the model into a new object, frees the old one and fills freed memory of its size with garbage: a layer
// that kept a reference into the old object's config would now read the garbage.
std::unique_ptr<DeepseekModel> moved(std::unique_ptr<DeepseekModel> model,
                                     std::vector<std::unique_ptr<char[]>>& garbage) {
  auto fresh = std::make_unique<DeepseekModel>(std::move(*model));
  model.reset();
  for (int i = 0; i < 16; ++i) {
    garbage.emplace_back(new char[sizeof(DeepseekModel)]);
    std::memset(garbage.back().get(), 0xff, sizeof(DeepseekModel));
  }
  return fresh;
}

// `moe_capacity_max_tokens`: steps of at most this many tokens run the routed experts in the capacity layout.
void check_fixture(const std::string& name, int64_t block_size, MlaPath prefill_path, bool move_first = false,
                   int64_t moe_capacity_max_tokens = 0) {
  SingleCommunicator comm;
  std::string dir = mlarun::testing::data_dir() + "/" + name;
  std::vector<std::unique_ptr<char[]>> garbage;
  auto model = DeepseekModel::load(dir, comm);
  if (move_first) model = moved(std::move(model), garbage);
  model->set_moe_capacity_max_tokens(moe_capacity_max_tokens);
  const ModelConfig& c = model->config();
  SafetensorsFile ref(dir + "/reference.safetensors");
  for (int i = 0;; ++i) {
    std::string p = "prompt." + std::to_string(i) + ".";
    if (!ref.contains(p + "input_ids")) break;
    Tensor ids = ref.load(p + "input_ids", DType::I64);
    Tensor want_logits = ref.load(p + "logits");
    Tensor greedy = ref.load(p + "greedy", DType::I64);
    Tensor greedy_logits = ref.load(p + "greedy_logits");
    const int64_t L = ids.numel(), N = greedy.numel(), V = c.vocab_size;
    std::vector<int32_t> prompt(ids.data<int64_t>(), ids.data<int64_t>() + L);

    int64_t blocks = (L + N + block_size - 1) / block_size + 1;
    OneSequence seq{block_size, {}};
    for (int64_t b = blocks - 1; b >= 0; --b) seq.block_table.push_back(int32_t(b));  // reversed order
    CachePool pool = CachePool::allocate(c.n_layers, blocks, block_size, c.latent_dim(), DType::F32, Device::CPU);

    Tensor logits = model->forward(make_step(prompt, 0, seq, true, prefill_path), pool.layers);
    std::printf("%s prompt %d len %lld: max abs diff %.3g\n", name.c_str(), i, (long long)L, max_abs_diff(logits.data<float>(), want_logits.data<float>(), L * V));
    EXPECT_LT(max_abs_diff(logits.data<float>(), want_logits.data<float>(), L * V), 1e-4f)
        << name << " prompt " << i << " (len " << L << ") logits";

    int32_t next = argmax(logits.data<float>() + (L - 1) * V, V);
    for (int64_t step = 0; step < N; ++step) {
      ASSERT_EQ(next, greedy.data<int64_t>()[step]) << name << " prompt " << i << " greedy step " << step;
      Tensor step_logits = model->forward(make_step({next}, L + step, seq, false, MlaPath::Auto), pool.layers);
      if (step + 1 < N) {
        EXPECT_LT(max_abs_diff(step_logits.data<float>(), greedy_logits.data<float>() + (step + 1) * V, V), 1e-4f)
            << name << " prompt " << i << " decode step " << step + 1;
      }
      next = argmax(step_logits.data<float>(), V);
    }
    // The first greedy logits are the prompt's last row.
    EXPECT_LT(max_abs_diff(logits.data<float>() + (L - 1) * V, greedy_logits.data<float>(), V), 1e-4f);
  }
}

}  // namespace

TEST(ModelParity, DeepseekV2TinyBlockSize16) { check_fixture("deepseek-v2-tiny", 16, MlaPath::Naive); }
TEST(ModelParity, DeepseekV3TinyBlockSize16) { check_fixture("deepseek-v3-tiny", 16, MlaPath::Naive); }
TEST(ModelParity, DeepseekV2TinyBlockSize1AbsorbedPrefill) { check_fixture("deepseek-v2-tiny", 1, MlaPath::Absorbed); }
TEST(ModelParity, DeepseekV3TinyBlockSize256) { check_fixture("deepseek-v3-tiny", 256, MlaPath::Naive); }
// A model is movable: its layers hold no references into the object they were built in.
TEST(ModelParity, MovedModelStillMatches) {
  check_fixture("deepseek-v3-tiny", 16, MlaPath::Naive, /*move_first=*/true);
  check_fixture("deepseek-v2-tiny", 16, MlaPath::Absorbed, /*move_first=*/true);
}

// Shapes the shared fixtures do not cover (made by tests/tools/make_shape_fixtures.py with transformers on the
// CPU): no q compression, v dim != nope dim, odd head counts, every routing variant, plain RoPE, no shared experts.
TEST(ModelParity, ShapeVariants) {
  for (const char* name : {"v2-noqlora-greedy-vdim", "v2-grouped-norope", "v3-nonorm-onegroup", "v3-grouped-noshared",
                           "v3-rope-halves"}) {
    SCOPED_TRACE(name);
    check_fixture(std::string("shapes/") + name, 4, MlaPath::Naive);
    check_fixture(std::string("shapes/") + name, 1, MlaPath::Absorbed);
  }
}

// Every reference records its bf16 error (transformers in bf16 against the fp32 reference): the GPU parity tests
// allow twice it, so a fixture without it could not be checked on a GPU.
TEST(ModelParity, EveryReferenceRecordsItsBf16Error) {
  for (const std::string& name : mlarun::testing::reference_fixtures()) {
    SafetensorsFile ref(mlarun::testing::data_dir() + "/" + name + "/reference.safetensors");
    const auto it = ref.metadata().find("bf16_vs_fp32_max_abs");
    ASSERT_NE(it, ref.metadata().end()) << name << ": no bf16_vs_fp32_max_abs (tests/tools/make_shape_fixtures.py "
                                                   "--bf16-error)";
    EXPECT_GT(std::stod(it->second), 0.0) << name;
  }
}

// The step profiler (runtime/step_profiler.h) only watches: a prefill and a decode step give the same logits, bit
// for bit, with and without it, and its split holds the attention, MoE, GEMM and base time the model marks and no
// communication on one rank.
TEST(ModelParity, TimeSplitLeavesTheLogitsAlone) {
  SingleCommunicator comm;
  auto model = DeepseekModel::load(mlarun::testing::data_dir() + "/deepseek-v3-tiny", comm);  // layers 1, 2: MoE
  const ModelConfig& c = model->config();
  const std::vector<int32_t> prompt = {5, 17, 42, 7, 99, 3};
  const OneSequence seq{4, {3, 1, 0, 2}};
  const auto run = [&](StepProfiler* profiler, TimeSplit* split) {
    CachePool pool = CachePool::allocate(c.n_layers, 4, seq.block_size, c.latent_dim(), DType::F32, Device::CPU);
    std::vector<Tensor> logits;
    for (const ForwardBatch& step : {make_step(prompt, 0, seq, true, MlaPath::Auto),
                                     make_step({11}, int64_t(prompt.size()), seq, false, MlaPath::Auto)}) {
      if (profiler) profiler->begin_step();
      logits.push_back(model->forward(step, pool.layers));
      if (!profiler) continue;
      profiler->end_step();
      *split += profiler->split();
    }
    return logits;
  };
  TimeSplit split;
  StepProfiler profiler;
  const std::vector<Tensor> plain = run(nullptr, nullptr), watched = run(&profiler, &split);
  ASSERT_EQ(plain.size(), watched.size());
  for (size_t i = 0; i < plain.size(); ++i) {
    ASSERT_EQ(plain[i].shape(), watched[i].shape());
    EXPECT_EQ(std::memcmp(plain[i].raw(), watched[i].raw(), plain[i].nbytes()), 0) << "step " << i;
  }
  for (ProfileCategory cat : {ProfileCategory::Attention, ProfileCategory::Moe, ProfileCategory::DenseGemm,
                              ProfileCategory::NormRopeOther})
    EXPECT_GT(split[cat], 0) << profile_category_name(cat);
  EXPECT_EQ(split[ProfileCategory::Communication], 0);
}

// The capacity layout of the routed experts (T rows per local expert, sized without a host copy) gives Hugging
// Face's logits as the compact one does: for decode steps only (the CUDA default's kind of split) and for every
// step, prompts included, on both fixtures and every routing variant.
TEST(ModelParity, CapacityMoeLayout) {
  for (const char* name : {"deepseek-v2-tiny", "deepseek-v3-tiny", "shapes/v2-grouped-norope",
                           "shapes/v3-nonorm-onegroup", "shapes/v3-grouped-noshared"}) {
    SCOPED_TRACE(name);
    check_fixture(name, 16, MlaPath::Naive, false, /*moe_capacity_max_tokens=*/1);
    check_fixture(name, 16, MlaPath::Naive, false, /*moe_capacity_max_tokens=*/1 << 20);
  }
  SingleCommunicator comm;
  auto model = DeepseekModel::load(mlarun::testing::data_dir() + "/deepseek-v2-tiny", comm);
  EXPECT_ERROR_MENTIONS(model->set_moe_capacity_max_tokens(-1), "--moe-capacity-max-tokens", "-1");
}
