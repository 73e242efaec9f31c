// The engine under decode context parallelism (docs/layouts.md §2.6), under mpiexec -np 2: tp 2 / dcp 2 with a
// cache too small for the requests (preemption by recompute) and with prefix caching gives every request the
// tokens it gets at dcp 1 (a single-rank runner whose block holds as many tokens as the group's block), and the
// start-up capacity counts the group's tokens; the same with a quantized cache (fp8, int8) against dcp 1 with the
// same cache dtype. Every rank runs the same engine steps (rank 0 samples and broadcasts), so the ranks stay in
// lockstep; an exception on any rank ends the job through abort_all.
#include <gtest/gtest.h>

#include <random>

#include "engine/deepseek_runner.h"
#include "engine/engine.h"
#include "parallel/bootstrap.h"
#include "parallel/mpi_communicator.h"
#include "test_util.h"

using namespace mlarun;

namespace {

std::string fixture_dir(const std::string& name) { return mlarun::testing::data_dir() + "/" + name; }

struct Request {
  std::vector<int32_t> prompt;
  int64_t max_tokens;
};

std::vector<Request> requests(int count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<Request> reqs;
  for (int i = 0; i < count; ++i) {
    std::vector<int32_t> p;
    for (int j = 0, len = 1 + int(rng() % 40); j < len; ++j) p.push_back(2 + int32_t(rng() % 300));
    reqs.push_back({p, 1 + int64_t(rng() % 12)});
  }
  reqs.push_back({reqs[0].prompt, 6});  // a repeated prompt: a prefix-cache hit
  return reqs;
}

RuntimeOptions options(int64_t tp, int64_t dcp, int64_t block_size, int64_t num_blocks, bool prefix_caching,
                       KvCacheDtype kv) {
  RuntimeOptions o;
  o.kv_cache_dtype = kv;
  o.tp = tp;
  o.decode_context_parallel_size = dcp;
  o.block_size = block_size;
  o.num_blocks = num_blocks;
  o.max_model_len = 512;
  o.max_num_seqs = 16;
  o.max_num_batched_tokens = 96;
  o.enable_prefix_caching = prefix_caching;
  return o;
}

struct Outcome {
  std::vector<RequestOutput> outputs;
  int64_t preemptions = 0;
  BlockManagerStats stats;
};

Outcome run(DeepseekRunner& runner, const RuntimeOptions& o, const std::vector<Request>& reqs) {
  Engine engine(o, runner);
  for (const Request& r : reqs) {
    SamplingParams p;
    p.max_tokens = r.max_tokens;
    p.ignore_eos = true;
    engine.add_request(r.prompt, p);
  }
  Outcome out;
  out.outputs = engine.run();
  out.preemptions = engine.scheduler().num_preemptions();
  out.stats = engine.scheduler().block_manager().stats();
  return out;
}

void same_tokens_as_dcp1(const std::string& fixture, int64_t rank_block_size, int64_t blocks, bool prefix_caching,
                         KvCacheDtype kv = KvCacheDtype::Auto) {
  DistributedContext ctx = init_distributed();
  ASSERT_EQ(ctx.world_size, 2) << "run under mpiexec -np 2";
  MpiCommunicator comm;
  SingleCommunicator alone;
  const std::vector<Request> reqs = requests(14, 7);
  // dcp 1: one rank, blocks of the group's size, a pool large enough to never preempt.
  const RuntimeOptions ref_opt = options(1, 1, 2 * rank_block_size, 400, prefix_caching, kv);
  DeepseekRunner ref_runner(fixture_dir(fixture), ref_opt, alone);
  const Outcome want = run(ref_runner, ref_opt, reqs);
  const RuntimeOptions opt = options(2, 2, rank_block_size, blocks, prefix_caching, kv);
  DeepseekRunner runner(fixture_dir(fixture), opt, comm);
  EXPECT_EQ(runner.block_size(), 2 * rank_block_size) << "the scheduler counts the group's blocks";
  EXPECT_EQ(runner.capacity().tokens(), blocks * 2 * rank_block_size) << "the capacity counts the group's tokens";
  const Outcome got = run(runner, opt, reqs);
  ASSERT_EQ(got.outputs.size(), want.outputs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(got.outputs[i].token_ids, want.outputs[i].token_ids)
        << fixture << " " << kv_cache_dtype_name(kv) << " request " << i;
    EXPECT_EQ(got.outputs[i].finish_reason, FinishReason::Length) << fixture << " request " << i;
  }
  EXPECT_EQ(got.stats.used, 0) << "every block returns to the pool";
  if (blocks < 60) {
    EXPECT_GT(got.preemptions, 0) << "the pool was meant to be too small";
  }
  if (prefix_caching) {
    EXPECT_GT(got.stats.prefix_hits, 0) << "the repeated prompt hits the prefix cache";
  }
}

template <typename Fn>
void on_every_rank_or_abort(Fn&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    abort_all(std::string("test_mpi_dcp_engine: ") + e.what(), 2);
  }
}

}  // namespace

// 24 blocks of 2 x 2 tokens: 96 tokens for 15 requests of up to 52 tokens each.
TEST(MpiDcpEngine, PreemptionGivesTheDcp1TokensV3) {
  on_every_rank_or_abort([] { same_tokens_as_dcp1("deepseek-v3-tiny", 2, 24, false); });
}
TEST(MpiDcpEngine, PreemptionAndPrefixCachingGiveTheDcp1TokensV2) {
  on_every_rank_or_abort([] { same_tokens_as_dcp1("deepseek-v2-tiny", 2, 24, true); });
}
TEST(MpiDcpEngine, PrefixCachingWithoutPreemptionV3) {
  on_every_rank_or_abort([] { same_tokens_as_dcp1("deepseek-v3-tiny", 4, 200, true); });
}
// A quantized cache: each rank's slice stored in fp8/int8, preempted and recomputed, prefixes shared.
TEST(MpiDcpEngine, QuantizedCachePreemptionAndPrefixCachingGiveTheDcp1TokensFp8) {
  on_every_rank_or_abort([] {
    for (const char* fixture : {"deepseek-v2-tiny", "deepseek-v3-tiny"})
      same_tokens_as_dcp1(fixture, 2, 24, true, KvCacheDtype::Fp8);
  });
}
TEST(MpiDcpEngine, QuantizedCachePreemptionAndPrefixCachingGiveTheDcp1TokensInt8) {
  on_every_rank_or_abort([] {
    for (const char* fixture : {"deepseek-v2-tiny", "deepseek-v3-tiny"})
      same_tokens_as_dcp1(fixture, 2, 24, true, KvCacheDtype::Int8);
  });
}
