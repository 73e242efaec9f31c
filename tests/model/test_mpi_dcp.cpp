// Decode context parallelism (docs/layouts.md §2.6) on the real fixtures: every rank builds the model over the MPI
// communicator with a DCP group of N consecutive ranks (comm.split), its cache holding only every N-th token, and
// runs each fixture prompt three ways: one prefill (naive path, all-gather of the context), chunked prefill
// (naive over a cached prefix) and the prompt forced onto the absorbed path (per-row LSE merge), then greedy
// decode steps (absorbed path). Logits must match the Hugging Face reference (1e-4) and a single-rank model
// (1e-5), greedy tokens the fixture's. With a quantized cache (fp8, int8, and bf16 on the CPU: each rank stores its
// tokens quantized, prefill all-gathers the stored rows, decode reads its slice dequantized) the same three ways
// and the decode must match the same tp at dcp 1 with the same cache dtype (1e-5) and pick its greedy tokens. The
// naive prefill in pieces of a tiny context-row budget must match it unpieced (1e-5). Run
// under mpiexec: np 2 (tp 2 / dcp 2) and np 4 (tp 4 / dcp 4 and tp 4 / dcp 2); a fixture whose heads or experts
// do not split over tp is skipped (the same on every rank).
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
#include "runtime/runtime_options.h"
#include "runtime/safetensors.h"
#include "test_util.h"

using namespace mlarun;

namespace {

using mlarun::testing::max_abs_diff;

int64_t argmax(const float* v, int64_t n) { return std::max_element(v, v + n) - v; }

struct Runner {
  std::unique_ptr<DeepseekModel> model;
  CachePool cache;
  int64_t rank_block_size, group_block_size;
  std::vector<int32_t> table;  // the group's blocks, handed out in reverse order

  KvCacheDtype kv;

  Runner(const ModelConfig& c, const std::string& dir, Communicator& comm, Communicator* dcp, int64_t bs,
         KvCacheDtype kv = KvCacheDtype::Auto)
      : model(std::make_unique<DeepseekModel>(c, Checkpoint(dir), comm, Placement{}, LoadProgress{},
                                              mla_attention_factory(), dcp)),
        rank_block_size(bs),
        group_block_size(bs * (dcp ? dcp->world_size() : 1)),
        kv(kv) {}
  void fresh(int64_t tokens) {
    const ModelConfig& c = model->config();
    const int64_t blocks = (tokens + group_block_size - 1) / group_block_size;
    const KvCacheStorage row = kv_cache_storage(kv, DType::F32, c.kv_lora_rank, c.qk_rope_head_dim);
    cache = CachePool::allocate(c.n_layers, blocks, rank_block_size, row.width, row.dtype, Device::CPU);
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

// A quantized cache: every way of running the prompt against the same tp at dcp 1 with the same cache dtype
// (chunked prefill chunk by chunk, the absorbed prompt, one prefill), then greedy decode on dcp 1's tokens (every
// rank runs both models, so all stay in lockstep). Not against one rank: tp changes the hidden states' rounding
// (the o_proj all-reduce), and a value that lands on a rounding boundary of the quantizer then takes the
// neighbouring code, a difference of one quantization step that no DCP bug is needed for.
void check_fixture_quantized(const std::string& name, Communicator& comm, Communicator& dcp, KvCacheDtype kv) {
  const std::string dir = mlarun::testing::data_dir() + "/" + name;
  const std::string who = name + " " + kv_cache_dtype_name(kv) + " tp " + std::to_string(comm.world_size()) +
                          " dcp " + std::to_string(dcp.world_size()) + " rank " + std::to_string(comm.rank());
  const ModelConfig config = load_model_config_from_dir(dir);
  const int64_t V = config.vocab_size;
  SafetensorsFile ref(dir + "/reference.safetensors");
  Runner par(config, dir, comm, &dcp, 2, kv);
  Runner one(config, dir, comm, nullptr, 2 * dcp.world_size(), kv);  // dcp 1, the group's block
  auto same = [&](const Tensor& got, const Tensor& want, const std::string& what) {
    EXPECT_LT(max_abs_diff(got.data<float>(), want.data<float>(), got.numel()), 1e-5f) << who << ": " << what;
  };
  for (int i = 0; ref.contains("prompt." + std::to_string(i) + ".input_ids"); ++i) {
    Tensor ids = ref.load("prompt." + std::to_string(i) + ".input_ids", DType::I64);
    const int64_t L = ids.numel(), N = 6;
    const std::vector<int32_t> prompt(ids.data<int64_t>(), ids.data<int64_t>() + L);
    const std::string at = "prompt " + std::to_string(i);

    par.fresh(L + N);
    one.fresh(L + N);
    for (int64_t s = 0; s < L; s += 5) {
      const std::vector<int32_t> chunk(prompt.begin() + s, prompt.begin() + std::min(L, s + 5));
      same(par.step(chunk, s, true), one.step(chunk, s, true), at + ": chunk at " + std::to_string(s));
    }
    // The prompt's last rows forced onto the absorbed path (several query rows a sequence, the per-row merge) over
    // a prefix the naive path wrote. (The whole prompt absorbed is not compared: the merge's rounding reaches the
    // next layer's latents of every token, and one of them on a quantizer boundary moves by a step.)
    const int64_t tail = std::min<int64_t>(3, L - 1);
    if (tail > 0) {  // a one-token prompt has no prefix
      par.fresh(L + N);
      one.fresh(L + N);
      const std::vector<int32_t> head(prompt.begin(), prompt.end() - tail), rest(prompt.end() - tail, prompt.end());
      same(par.step(head, 0, true), one.step(head, 0, true), at + ": prefix");
      same(par.step(rest, L - tail, true, MlaPath::Absorbed), one.step(rest, L - tail, true, MlaPath::Absorbed),
           at + ": absorbed rows");
    }

    par.fresh(L + N);
    one.fresh(L + N);
    Tensor logits = par.step(prompt, 0, true);
    Tensor single = one.step(prompt, 0, true);
    same(logits, single, at + ": prefill");
    for (int64_t step = 0; step < N; ++step) {
      const float* last = single.data<float>() + (single.dim(0) - 1) * V;
      const int64_t token = argmax(last, V);
      EXPECT_EQ(argmax(logits.data<float>() + (logits.dim(0) - 1) * V, V), token) << who << ", " << at << ", greedy "
                                                                                    << step;
      const std::vector<int32_t> next{int32_t(token)};
      logits = par.step(next, L + step, false);
      single = one.step(next, L + step, false);
      same(logits, single, at + ", decode " + std::to_string(step));
    }
  }
}

// The naive prefill in pieces (model/prefill_pieces.h: budgets of 3 and 7 context rows, cut after the group's
// all-gather) gives the unpieced logits, chunk by chunk and for one prefill, with the f32 and int8 caches, and
// never holds K/V for more rows than the budget.
void check_fixture_pieced(const std::string& name, Communicator& comm, Communicator& dcp) {
  const std::string dir = mlarun::testing::data_dir() + "/" + name;
  const ModelConfig config = load_model_config_from_dir(dir);
  SafetensorsFile ref(dir + "/reference.safetensors");
  int last = 0;  // the longest prompt, the last one
  while (ref.contains("prompt." + std::to_string(last + 1) + ".input_ids")) ++last;
  Tensor ids = ref.load("prompt." + std::to_string(last) + ".input_ids", DType::I64);
  const int64_t L = ids.numel();
  EXPECT_GT(L, 7) << name << ": a prompt too short to need pieces";
  const std::vector<int32_t> prompt(ids.data<int64_t>(), ids.data<int64_t>() + L);
  for (KvCacheDtype kv : {KvCacheDtype::Auto, KvCacheDtype::Int8})
    for (int64_t budget : {3, 7}) {
      const std::string who = name + " " + kv_cache_dtype_name(kv) + " budget " + std::to_string(budget) +
                              " rank " + std::to_string(comm.rank());
      Runner whole(config, dir, comm, &dcp, 2, kv), pieced(config, dir, comm, &dcp, 2, kv);
      pieced.model->set_mla_backend(MlaBackendKind::Batched, {budget});
      auto same = [&](const Tensor& got, const Tensor& want, const std::string& what) {
        EXPECT_LT(max_abs_diff(got.data<float>(), want.data<float>(), got.numel()), 1e-5f) << who << ": " << what;
        EXPECT_LE(pieced.model->mla_backend().kv_rows_peak(), budget) << who << ": " << what;
      };
      whole.fresh(L);
      pieced.fresh(L);
      for (int64_t s = 0; s < L; s += 5) {
        const std::vector<int32_t> chunk(prompt.begin() + s, prompt.begin() + std::min(L, s + 5));
        same(pieced.step(chunk, s, true), whole.step(chunk, s, true), "chunk at " + std::to_string(s));
      }
      whole.fresh(L);
      pieced.fresh(L);
      same(pieced.step(prompt, 0, true), whole.step(prompt, 0, true), "prefill");
    }
}

// The fixtures whose heads and experts split over the job's ranks (the same decision on every rank).
std::vector<std::string> fixtures_for(int64_t tp) {
  std::vector<std::string> names;
  for (const std::string& name : mlarun::testing::reference_fixtures()) {
    try {
      load_model_config_from_dir(mlarun::testing::data_dir() + "/" + name).validate_for_tp(tp);
      names.push_back(name);
    } catch (const Error&) {
    }
  }
  return names;
}

void check_all_quantized(int64_t dcp_size) {
  DistributedContext ctx = init_distributed();
  ASSERT_GE(ctx.world_size, 2) << "run under mpiexec with at least 2 ranks";
  if (ctx.world_size % dcp_size != 0) GTEST_SKIP() << "dcp " << dcp_size << " does not divide " << ctx.world_size;
  MpiCommunicator comm;
  std::unique_ptr<Communicator> dcp = comm.split(int(comm.rank() / dcp_size), int(comm.rank() % dcp_size));
  const std::vector<std::string> names = fixtures_for(comm.world_size());
  EXPECT_GE(names.size(), 2u);
  for (const std::string& name : names)
    for (KvCacheDtype kv : {KvCacheDtype::Fp8, KvCacheDtype::Int8, KvCacheDtype::Bf16})
      check_fixture_quantized(name, comm, *dcp, kv);
}

void check_all_pieced(int64_t dcp_size) {
  DistributedContext ctx = init_distributed();
  ASSERT_GE(ctx.world_size, 2) << "run under mpiexec with at least 2 ranks";
  if (ctx.world_size % dcp_size != 0) GTEST_SKIP() << "dcp " << dcp_size << " does not divide " << ctx.world_size;
  MpiCommunicator comm;
  std::unique_ptr<Communicator> dcp = comm.split(int(comm.rank() / dcp_size), int(comm.rank() % dcp_size));
  for (const std::string& name : fixtures_for(comm.world_size())) check_fixture_pieced(name, comm, *dcp);
}

void check_all(int64_t dcp_size) {
  DistributedContext ctx = init_distributed();
  ASSERT_GE(ctx.world_size, 2) << "run under mpiexec with at least 2 ranks";
  if (ctx.world_size % dcp_size != 0) GTEST_SKIP() << "dcp " << dcp_size << " does not divide " << ctx.world_size;
  MpiCommunicator comm;
  std::unique_ptr<Communicator> dcp = comm.split(int(comm.rank() / dcp_size), int(comm.rank() % dcp_size));
  ASSERT_EQ(dcp->world_size(), dcp_size);
  ASSERT_EQ(dcp->rank(), comm.rank() % dcp_size);
  const std::vector<std::string> names = fixtures_for(comm.world_size());
  EXPECT_GE(names.size(), 2u);
  for (const std::string& name : names) check_fixture(name, comm, *dcp);
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
// np 2: tp 2 / dcp 2; np 4: tp 4 / dcp 2 (and tp 4 / dcp 4).
TEST(MpiDcpParity, QuantizedCacheDcp2) { on_every_rank_or_abort([] { check_all_quantized(2); }); }
TEST(MpiDcpParity, QuantizedCacheDcp4) { on_every_rank_or_abort([] { check_all_quantized(4); }); }
TEST(MpiDcpParity, PiecedPrefillDcp2) { on_every_rank_or_abort([] { check_all_pieced(2); }); }
