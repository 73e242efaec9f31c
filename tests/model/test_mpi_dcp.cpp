// Decode context parallelism (docs/layouts.md §2.6) on the real fixtures: every rank builds the model over the MPI
// communicator with a DCP group of N consecutive ranks (comm.split), its cache holding only every N-th token, and
// runs each fixture prompt three ways: one prefill (naive path, all-gather of the context), chunked prefill
// (naive over a cached prefix) and the prompt forced onto the absorbed path (per-row LSE merge), then greedy
// decode steps (absorbed path). Logits must match the Hugging Face reference (1e-4) and a single-rank model
// (1e-5), greedy tokens the fixture's. Run under mpiexec: np 2 (tp 2 / dcp 2) and np 4 (tp 4 / dcp 4 and
// tp 4 / dcp 2); a fixture whose heads or experts do not split over tp is skipped (the same on every rank).
//
// Lockstep: every rank runs exactly the same steps (the fixture's tokens are fed, EXPECT never ASSERT inside the
// loops), and an exception on any rank ends the job through abort_all.
#include <gtest/gtest.h>

#include <algorithm>

#include "model/deepseek_model.h"
#include "parallel/bootstrap.h"
#include "parallel/mpi_communicator.h"
#include "runtime/cache_pool.h"
#include "runtime/model_config.h"
#include "runtime/safetensors.h"
#include "test_util.h"

using namespace mlarun;

namespace {

using mlarun::testing::max_abs_diff;

int64_t argmax(const float* v, int64_t n) { return std::max_element(v, v + n) - v; }

const std::vector<std::string> kFixtures = {"deepseek-v2-tiny",          "deepseek-v3-tiny",
                                            "shapes/v2-grouped-norope",  "shapes/v2-noqlora-greedy-vdim",
                                            "shapes/v3-grouped-noshared", "shapes/v3-nonorm-onegroup",
                                            "shapes/v3-rope-halves"};

struct Runner {
  std::unique_ptr<DeepseekModel> model;
  CachePool cache;
  int64_t rank_block_size, group_block_size;
  std::vector<int32_t> table;  // the group's blocks, handed out in reverse order

  Runner(const ModelConfig& c, const std::string& dir, Communicator& comm, Communicator* dcp, int64_t bs)
      : model(std::make_unique<DeepseekModel>(c, Checkpoint(dir), comm, Placement{}, LoadProgress{},
                                              mla_attention_factory(), dcp)),
        rank_block_size(bs),
        group_block_size(bs * (dcp ? dcp->world_size() : 1)) {}
  void fresh(int64_t tokens) {
    const ModelConfig& c = model->config();
    const int64_t blocks = (tokens + group_block_size - 1) / group_block_size;
    cache = CachePool::allocate(c.n_layers, blocks, rank_block_size, c.latent_dim(), DType::F32, Device::CPU);
    table.clear();
    for (int64_t b = blocks - 1; b >= 0; --b) table.push_back(int32_t(b));
  }
  Tensor step(const std::vector<int32_t>& tokens, int64_t start, bool all_logits, MlaPath path = MlaPath::Auto) {
    ForwardBatch b;
    b.mla_path = path;
    const int64_t n = int64_t(tokens.size());
    b.add_sequence(tokens, start, table, group_block_size);
    for (int64_t i = all_logits ? 0 : n - 1; i < n; ++i) b.logit_rows.push_back(i);
    return model->forward(b, cache.layers);
  }
};

void check_fixture(const std::string& name, Communicator& comm, Communicator& dcp) {
  const std::string dir = mlarun::testing::data_dir() + "/" + name;
  const std::string who = name + " tp " + std::to_string(comm.world_size()) + " dcp " +
                          std::to_string(dcp.world_size()) + " rank " + std::to_string(comm.rank());
  const ModelConfig config = load_model_config_from_dir(dir);
  const int64_t V = config.vocab_size;
  SafetensorsFile ref(dir + "/reference.safetensors");
  SingleCommunicator alone;
  Runner par(config, dir, comm, &dcp, 2);  // 2 tokens per rank block: contexts cross many blocks
  Runner one(config, dir, alone, nullptr, 2 * dcp.world_size());
  for (int i = 0; ref.contains("prompt." + std::to_string(i) + ".input_ids"); ++i) {
    const std::string p = "prompt." + std::to_string(i) + ".";
    Tensor ids = ref.load(p + "input_ids", DType::I64);
    Tensor want = ref.load(p + "logits");
    Tensor greedy = ref.load(p + "greedy", DType::I64);
    const int64_t L = ids.numel(), N = greedy.numel();
    const std::vector<int32_t> prompt(ids.data<int64_t>(), ids.data<int64_t>() + L);
    const std::string at = who + ", prompt " + std::to_string(i);

    // The prompt in chunks of 5 (naive path over the cached prefix), then forced onto the absorbed path.
    par.fresh(L + N);
    for (int64_t s = 0; s < L; s += 5) {
      const std::vector<int32_t> chunk(prompt.begin() + s, prompt.begin() + std::min(L, s + 5));
      Tensor got = par.step(chunk, s, true);
      EXPECT_LT(max_abs_diff(got.data<float>(), want.data<float>() + s * V, got.numel()), 1e-4f)
          << at << ": chunk at " << s << " against the HF reference";
    }
    par.fresh(L + N);
    Tensor absorbed = par.step(prompt, 0, true, MlaPath::Absorbed);
    EXPECT_LT(max_abs_diff(absorbed.data<float>(), want.data<float>(), L * V), 1e-4f) << at << ": absorbed prompt";

    par.fresh(L + N);
    one.fresh(L + N);
    Tensor logits = par.step(prompt, 0, true);
    Tensor single = one.step(prompt, 0, true);
    EXPECT_LT(max_abs_diff(logits.data<float>(), want.data<float>(), L * V), 1e-4f) << at << ": prefill vs HF";
    EXPECT_LT(max_abs_diff(logits.data<float>(), single.data<float>(), L * V), 1e-5f) << at << ": prefill vs 1 rank";
    const float* last = logits.data<float>() + (L - 1) * V;
    for (int64_t step = 0; step < N; ++step) {
      const int64_t token = greedy.data<int64_t>()[step];
      EXPECT_EQ(argmax(last, V), token) << at << ", greedy step " << step;
      const std::vector<int32_t> next{int32_t(token)};  // the fixture's token: every rank stays in lockstep
      logits = par.step(next, L + step, false);
      single = one.step(next, L + step, false);
      EXPECT_LT(max_abs_diff(logits.data<float>(), single.data<float>(), V), 1e-5f) << at << ", decode " << step;
      last = logits.data<float>();
    }
  }
}

void check_all(int64_t dcp_size) {
  DistributedContext ctx = init_distributed();
  ASSERT_GE(ctx.world_size, 2) << "run under mpiexec with at least 2 ranks";
  if (ctx.world_size % dcp_size != 0) GTEST_SKIP() << "dcp " << dcp_size << " does not divide " << ctx.world_size;
  MpiCommunicator comm;
  std::unique_ptr<Communicator> dcp = comm.split(int(comm.rank() / dcp_size), int(comm.rank() % dcp_size));
  ASSERT_EQ(dcp->world_size(), dcp_size);
  ASSERT_EQ(dcp->rank(), comm.rank() % dcp_size);
  int checked = 0;
  for (const std::string& name : kFixtures) {
    const ModelConfig config = load_model_config_from_dir(mlarun::testing::data_dir() + "/" + name);
    try {
      config.validate_for_tp(comm.world_size());
    } catch (const Error&) {
      continue;  // heads or experts do not split over tp: the same decision on every rank
    }
    check_fixture(name, comm, *dcp);
    ++checked;
  }
  EXPECT_GE(checked, 2);
}

template <typename Fn>
void on_every_rank_or_abort(Fn&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    abort_all(std::string("test_mpi_dcp: ") + e.what(), 2);
  }
}

}  // namespace

TEST(MpiDcpParity, Dcp2) { on_every_rank_or_abort([] { check_all(2); }); }
TEST(MpiDcpParity, Dcp4) { on_every_rank_or_abort([] { check_all(4); }); }
