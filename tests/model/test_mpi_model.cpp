// Tensor-parallel model parity: every rank builds the model over the MPI communicator (loading only its own
// slices) and runs the fixture prompts, then checks its logits against the Hugging Face reference (1e-4), against
// a single-rank model it runs itself (1e-5), and its greedy tokens against the fixture's. Run under mpiexec
// (np 2 and 4 for v2-tiny, np 2 for v3-tiny; a --gtest_filter picks the fixtures for each size). Also the step
// time split's communication category (runtime/step_profiler.h), which only a run over several ranks can fill.
//
// Lockstep matters: the ranks meet in a collective inside every forward, so every rank must run exactly the
// same steps. Decoding therefore feeds the fixture's greedy token (checked with EXPECT, never ASSERT), and an
// exception on any rank ends the whole job through abort_all instead of leaving the others in a collective.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "model/deepseek_model.h"
#include "parallel/bootstrap.h"
#include "parallel/mpi_communicator.h"
#include "runtime/cache_pool.h"
#include "runtime/model_config.h"
#include "runtime/safetensors.h"
#include "runtime/step_profiler.h"
#include "test_util.h"

using namespace mlarun;

namespace {

using mlarun::testing::max_abs_diff;

int64_t argmax(const float* v, int64_t n) { return std::max_element(v, v + n) - v; }

// One sequence whose cache blocks are handed out in reverse order, so block tables are not the identity.
struct OneSequence {
  int64_t block_size;
  std::vector<int32_t> block_table;

  ForwardBatch step(const std::vector<int32_t>& tokens, int64_t start, bool all_logits) const {
    ForwardBatch b;
    const int64_t n = int64_t(tokens.size());
    b.add_sequence(tokens, start, block_table, block_size);
    for (int64_t i = all_logits ? 0 : n - 1; i < n; ++i) b.logit_rows.push_back(i);
    return b;
  }
};

// A model and a paged cache of its own (the cache is re-made for each prompt).
struct ModelUnderTest {
  std::unique_ptr<DeepseekModel> model;
  CachePool cache;

  ModelUnderTest(const ModelConfig& config, const std::string& dir, Communicator& comm)
      : model(std::make_unique<DeepseekModel>(config, Checkpoint(dir), comm)) {}
  void fresh_cache(int64_t blocks, int64_t block_size) {
    const ModelConfig& c = model->config();
    cache = CachePool::allocate(c.n_layers, blocks, block_size, c.latent_dim(), DType::F32, Device::CPU);
  }
  Tensor forward(const ForwardBatch& b) { return model->forward(b, cache.layers); }
};

void check_tensor_parallel_fixture(const std::string& name) {
  DistributedContext ctx = init_distributed();
  ASSERT_GE(ctx.world_size, 2) << "run under mpiexec with at least 2 ranks";
  const std::string dir = mlarun::testing::data_dir() + "/" + name;
  const std::string who = name + " on rank " + std::to_string(ctx.rank) + "/" + std::to_string(ctx.world_size);
  MpiCommunicator comm;
  SingleCommunicator alone;
  const ModelConfig config = load_model_config_from_dir(dir);
  const int64_t V = config.vocab_size, block_size = 4;
  SafetensorsFile ref(dir + "/reference.safetensors");
  ModelUnderTest parallel(config, dir, comm);
  ModelUnderTest single(config, dir, alone);

  for (int i = 0;; ++i) {
    const std::string p = "prompt." + std::to_string(i) + ".";
    if (!ref.contains(p + "input_ids")) {
      EXPECT_GT(i, 0) << name << ": the fixture has no prompts";
      break;
    }
    Tensor ids = ref.load(p + "input_ids", DType::I64);
    Tensor want_logits = ref.load(p + "logits");
    Tensor greedy = ref.load(p + "greedy", DType::I64);
    const int64_t L = ids.numel(), N = greedy.numel();
    const std::vector<int32_t> prompt(ids.data<int64_t>(), ids.data<int64_t>() + L);

    const int64_t blocks = (L + N + block_size - 1) / block_size;
    OneSequence seq{block_size, {}};
    for (int64_t b = blocks - 1; b >= 0; --b) seq.block_table.push_back(int32_t(b));
    parallel.fresh_cache(blocks, block_size);
    single.fresh_cache(blocks, block_size);

    Tensor logits = parallel.forward(seq.step(prompt, 0, true));
    Tensor single_logits = single.forward(seq.step(prompt, 0, true));
    ASSERT_EQ(logits.shape(), (Shape{L, V})) << who;  // same shape on every rank: leaving here stays in lockstep
    EXPECT_LT(max_abs_diff(logits.data<float>(), want_logits.data<float>(), L * V), 1e-4f)
        << who << ", prompt " << i << ": logits against the HF reference";
    EXPECT_LT(max_abs_diff(logits.data<float>(), single_logits.data<float>(), L * V), 1e-5f)
        << who << ", prompt " << i << ": logits against the single-rank model";

    const float* last = logits.data<float>() + (L - 1) * V;
    for (int64_t step = 0; step < N; ++step) {
      const int64_t want = greedy.data<int64_t>()[step];
      EXPECT_EQ(argmax(last, V), want) << who << ", prompt " << i << ", greedy step " << step;
      const std::vector<int32_t> next{int32_t(want)};  // the fixture's token, so all ranks stay in lockstep
      Tensor step_logits = parallel.forward(seq.step(next, L + step, false));
      Tensor single_step = single.forward(seq.step(next, L + step, false));
      EXPECT_LT(max_abs_diff(step_logits.data<float>(), single_step.data<float>(), V), 1e-5f)
          << who << ", prompt " << i << ", decode step " << step << ": against the single-rank model";
      logits = step_logits;
      last = logits.data<float>();
    }
  }
}

// Any exception on one rank would strand the others in a collective: end the job, loudly, instead.
template <typename Fn>
void on_every_rank_or_abort(Fn&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    abort_all(std::string("test_mpi_model: ") + e.what(), 2);
  }
}

}  // namespace

TEST(MpiModelParity, DeepseekV2Tiny) {
  on_every_rank_or_abort([] { check_tensor_parallel_fixture("deepseek-v2-tiny"); });
}

TEST(MpiModelParity, DeepseekV3Tiny) {
  on_every_rank_or_abort([] { check_tensor_parallel_fixture("deepseek-v3-tiny"); });
}

// At tp 2 the collectives (embedding and o_proj all-reduces, the MoE's, the LM head's all-gather) count as
// communication, the categories still add up to the step's wall time, and the profiler changes no logit.
TEST(MpiModelTimeSplit, CollectivesCountAsCommunication) {
  on_every_rank_or_abort([] {
    const std::string dir = mlarun::testing::data_dir() + "/deepseek-v2-tiny";
    MpiCommunicator comm;
    ModelUnderTest tp(load_model_config_from_dir(dir), dir, comm);
    const OneSequence seq{4, {2, 0, 1}};
    const std::vector<int32_t> prompt = {5, 17, 42, 7, 99, 3};
    tp.fresh_cache(3, seq.block_size);
    const Tensor plain = tp.forward(seq.step(prompt, 0, true));
    tp.fresh_cache(3, seq.block_size);
    StepProfiler profiler;
    const auto start = std::chrono::steady_clock::now();
    profiler.begin_step();
    const Tensor watched = tp.forward(seq.step(prompt, 0, true));
    profiler.end_step();
    const double wall =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    const TimeSplit split = profiler.split();
    ASSERT_EQ(plain.shape(), watched.shape());
    EXPECT_EQ(std::memcmp(plain.raw(), watched.raw(), plain.nbytes()), 0) << "rank " << comm.rank();
    for (ProfileCategory c : kProfileCategories) EXPECT_GT(split[c], 0) << profile_category_name(c);
    EXPECT_LE(split.total_ms(), wall);
    EXPECT_GT(split.total_ms(), 0.95 * wall);
  });
}
