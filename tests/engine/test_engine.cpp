// The engine on the real model (v2-tiny/v3-tiny, CPU): continuous batching gives every request the answer it
// gets alone and the fixture's greedy tokens; a pool too small for all requests preempts and still finishes
// them identically; an impossible request fails alone; a repeated prompt hits the prefix cache with identical
// logits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "engine/deepseek_runner.h"
#include "engine/engine.h"
#include "runtime/step_tensors.h"
#include "runtime/safetensors.h"
#include "test_util.h"

using namespace mlarun;

namespace {

struct Request {
  std::vector<int32_t> prompt;
  int64_t max_tokens;
};

std::string fixture_dir(const std::string& name) { return mlarun::testing::data_dir() + "/" + name; }

std::vector<Request> mixed_requests(const std::string& fixture, int count, uint32_t seed) {
  SafetensorsFile ref(fixture_dir(fixture) + "/reference.safetensors");
  std::vector<Request> reqs;
  for (int i = 0; ref.contains("prompt." + std::to_string(i) + ".input_ids"); ++i) {
    Tensor ids = ref.load("prompt." + std::to_string(i) + ".input_ids", DType::I64);
    reqs.push_back({std::vector<int32_t>(ids.data<int64_t>(), ids.data<int64_t>() + ids.numel()), 10});
  }
  std::mt19937 rng(seed);
  while (int(reqs.size()) < count) {
    int len = 1 + int(rng() % 60);
    std::vector<int32_t> p;
    for (int j = 0; j < len; ++j) p.push_back(2 + int32_t(rng() % 300));
    reqs.push_back({p, 1 + int64_t(rng() % 12)});
  }
  return reqs;
}

RuntimeOptions scheduler_for(const ModelRunner& runner, int64_t max_seqs, int64_t max_tokens) {
  RuntimeOptions s;
  s.max_num_seqs = max_seqs;
  s.max_num_batched_tokens = max_tokens;
  s.max_model_len = 512;
  s.block_size = runner.block_size();
  s.num_blocks = runner.num_blocks();
  s.eos_token_id = -1;
  return s;
}

std::vector<RequestOutput> run_all(ModelRunner& runner, const RuntimeOptions& sc, const std::vector<Request>& reqs,
                                   bool keep_logits = false) {
  Engine engine(sc, runner);
  for (const Request& r : reqs) {
    SamplingParams p;
    p.max_tokens = r.max_tokens;
    p.ignore_eos = true;
    engine.add_request(r.prompt, p, RequestOptions{keep_logits, false});
  }
  return engine.run();
}

RuntimeOptions options(int64_t block_size, int64_t num_blocks, int64_t mla_absorbed_max_tokens = -1) {
  RuntimeOptions o;
  o.block_size = block_size;
  o.num_blocks = num_blocks;
  o.max_model_len = 512;
  o.mla_absorbed_max_tokens = mla_absorbed_max_tokens;
  return o;
}

// A runner that counts which MLA path each multi-token chunk of the steps it runs takes.
class PathCountingRunner final : public ModelRunner {
 public:
  explicit PathCountingRunner(DeepseekRunner& inner) : inner_(inner) {}
  Tensor execute(const ForwardBatch& batch) override {
    for (const BatchSequence& s : batch.sequences)
      if (s.num_tokens > 1) ++(uses_absorbed_path(batch, s) ? absorbed_chunks : naive_chunks);
    return inner_.execute(batch);
  }
  int64_t vocab_size() const override { return inner_.vocab_size(); }
  int64_t block_size() const override { return inner_.block_size(); }
  int64_t num_blocks() const override { return inner_.num_blocks(); }
  MlaPathRule mla_path_rule() const override { return inner_.mla_path_rule(); }
  int64_t absorbed_chunks = 0, naive_chunks = 0;

 private:
  DeepseekRunner& inner_;
};

void batched_equals_alone(const std::string& fixture) {
  SingleCommunicator comm;
  DeepseekRunner runner(fixture_dir(fixture), options(8, 400), comm);
  std::vector<Request> reqs = mixed_requests(fixture, 32, 11);
  std::vector<RequestOutput> batched = run_all(runner, scheduler_for(runner, 8, 64), reqs);
  ASSERT_EQ(batched.size(), reqs.size());
  SafetensorsFile ref(fixture_dir(fixture) + "/reference.safetensors");
  for (size_t i = 0; i < reqs.size(); ++i) {
    std::vector<RequestOutput> alone = run_all(runner, scheduler_for(runner, 1, 4096), {reqs[i]});
    EXPECT_EQ(batched[i].token_ids, alone[0].token_ids) << fixture << " request " << i;
    EXPECT_EQ(batched[i].finish_reason, FinishReason::Length);
    EXPECT_EQ(int64_t(batched[i].token_ids.size()), reqs[i].max_tokens);
    std::string greedy = "prompt." + std::to_string(i) + ".greedy";
    if (ref.contains(greedy)) {
      Tensor g = ref.load(greedy, DType::I64);
      EXPECT_EQ(batched[i].token_ids, std::vector<int32_t>(g.data<int64_t>(), g.data<int64_t>() + g.numel()))
          << fixture << " fixture prompt " << i;
    }
  }
}

}  // namespace

TEST(Engine, BatchOf32EqualsOneAtATimeV2) { batched_equals_alone("deepseek-v2-tiny"); }
TEST(Engine, BatchOf32EqualsOneAtATimeV3) { batched_equals_alone("deepseek-v3-tiny"); }

TEST(Engine, SmallPoolPreemptsAndStillFinishesEveryRequest) {
  SingleCommunicator comm;
  DeepseekRunner big(fixture_dir("deepseek-v3-tiny"), options(4, 400), comm);
  DeepseekRunner small(fixture_dir("deepseek-v3-tiny"), options(4, 40), comm);  // 160 tokens for ~16 requests
  std::vector<Request> reqs = mixed_requests("deepseek-v3-tiny", 16, 5);
  for (Request& r : reqs) r.max_tokens = 12;
  std::vector<RequestOutput> want = run_all(big, scheduler_for(big, 16, 256), reqs);
  Engine engine(scheduler_for(small, 16, 256), small);
  for (const Request& r : reqs) {
    SamplingParams p;
    p.max_tokens = r.max_tokens;
    p.ignore_eos = true;
    engine.add_request(r.prompt, p);
  }
  // One request can never fit: 200 prompt tokens need 50 blocks, the pool has 40.
  SamplingParams p;
  p.max_tokens = 4;
  int64_t impossible = engine.add_request(std::vector<int32_t>(200, 7), p);
  std::vector<RequestOutput> got = engine.run();
  EXPECT_GT(engine.scheduler().num_preemptions(), 0) << "the pool was meant to be too small";
  ASSERT_EQ(got.size(), reqs.size() + 1);
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(got[i].token_ids, want[i].token_ids) << "request " << i;
    EXPECT_EQ(got[i].finish_reason, FinishReason::Length);
  }
  const RequestOutput& bad = got[size_t(impossible)];
  EXPECT_EQ(bad.finish_reason, FinishReason::Abort);
  EXPECT_NE(bad.error.find("40 blocks"), std::string::npos) << bad.error;
  EXPECT_EQ(engine.scheduler().block_manager().stats().used, 0) << "every block returns to the pool";
}

TEST(Engine, RepeatedPromptHitsThePrefixCacheWithIdenticalLogits) {
  SingleCommunicator comm;
  DeepseekRunner runner(fixture_dir("deepseek-v2-tiny"), options(4, 100), comm);
  std::vector<Request> reqs = mixed_requests("deepseek-v2-tiny", 4, 1);
  Request repeated = reqs[3];  // the 70-token prompt
  Engine engine(scheduler_for(runner, 4, 512), runner);
  SamplingParams p;
  p.max_tokens = 5;
  p.ignore_eos = true;
  engine.add_request(repeated.prompt, p, RequestOptions{true, false});
  std::vector<RequestOutput> first = engine.run();
  engine.add_request(repeated.prompt, p, RequestOptions{true, false});
  std::vector<RequestOutput> second = engine.run();
  BlockManagerStats st = engine.scheduler().block_manager().stats();
  EXPECT_GT(st.prefix_hits, 0);
  EXPECT_GT(st.hit_rate(), 0.4);
  EXPECT_LT(engine.stats().prompt_tokens_computed, 2 * 70) << "the second prompt must reuse cached blocks";
  ASSERT_EQ(first[0].logits.size(), second[0].logits.size());
  EXPECT_EQ(first[0].token_ids, second[0].token_ids);
  for (size_t s = 0; s < first[0].logits.size(); ++s)
    for (size_t v = 0; v < first[0].logits[s].size(); ++v)
      ASSERT_NEAR(first[0].logits[s][v], second[0].logits[s][v], 1e-5f) << "step " << s << " token " << v;
}

// Prefill chunks over a cached prefix (chunked prefill, a prefix-cache hit) take the absorbed path where the rule
// says it does less work (--mla-absorbed-max-tokens 64 here; the CPU's default is 128): the engine hands the
// runner's rule to every step, and every request gets the fixture's greedy tokens and the logits of the
// decode-only rule (--mla-absorbed-max-tokens 1, every chunk naive) within 1e-4.
TEST(Engine, AbsorbedPrefillChunksGiveTheNaiveAnswer) {
  SingleCommunicator comm;
  DeepseekRunner naive_runner(fixture_dir("deepseek-v3-tiny"), options(4, 400, 1), comm);
  DeepseekRunner rule_runner(fixture_dir("deepseek-v3-tiny"), options(4, 400, 64), comm);
  std::vector<Request> reqs = mixed_requests("deepseek-v3-tiny", 8, 3);
  reqs.push_back(reqs.back());  // a prefix-cache hit: the same prompt again, and again with a longer tail
  reqs.push_back(reqs.back());
  for (int32_t t : {5, 9, 13, 17, 21, 25, 29}) reqs.back().prompt.push_back(t);
  PathCountingRunner naive(naive_runner), rule(rule_runner);
  // 6 tokens a step: prompts go in chunks, every chunk after the first over a cached prefix.
  const std::vector<RequestOutput> want = run_all(naive, scheduler_for(naive, 4, 6), reqs, true);
  const std::vector<RequestOutput> got = run_all(rule, scheduler_for(rule, 4, 6), reqs, true);
  EXPECT_EQ(naive.absorbed_chunks, 0);
  EXPECT_GT(naive.naive_chunks, 0);
  EXPECT_GT(rule.absorbed_chunks, 10) << "chunks over a prefix of 6+ tokens are well within v3-tiny's crossing";
  EXPECT_GT(rule.naive_chunks, 0) << "a prompt's first chunk has no prefix: naive";
  SafetensorsFile ref(fixture_dir("deepseek-v3-tiny") + "/reference.safetensors");
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].token_ids, want[i].token_ids) << "request " << i;
    const std::string greedy = "prompt." + std::to_string(i) + ".greedy";
    if (ref.contains(greedy)) {
      const Tensor g = ref.load(greedy, DType::I64);
      EXPECT_EQ(got[i].token_ids, std::vector<int32_t>(g.data<int64_t>(), g.data<int64_t>() + g.numel()))
          << "fixture prompt " << i;
    }
    ASSERT_EQ(got[i].logits.size(), want[i].logits.size());
    EXPECT_FALSE(got[i].logits.empty());
    float worst = 0;
    for (size_t s = 0; s < got[i].logits.size(); ++s)
      for (size_t v = 0; v < got[i].logits[s].size(); ++v)
        worst = std::max(worst, std::fabs(got[i].logits[s][v] - want[i].logits[s][v]));
    EXPECT_LT(worst, 1e-4f) << "request " << i;
  }
}
