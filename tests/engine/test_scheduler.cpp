// Scheduler: mixed prefill/decode steps, chunked prefill, recompute preemption, aborts and stop conditions, driven
// by a fake model whose next token is a function of the whole prefix. The fake also keeps a token-level cache and
// checks, before every sample, that each cached position holds exactly its own prefix: a wrong prefix hit, a
// written shared block or an incomplete recompute after preemption fails the test.
#include <map>
#include <numeric>
#include <random>

#include "engine/scheduler.h"
#include "test_util.h"

namespace mlarun {
namespace {

constexpr int32_t kVocab = 64;

// keys[p] identifies tokens[0..p] (what a real cache entry at position p depends on).
std::vector<uint64_t> prefix_keys(const std::vector<int32_t>& tokens) {
  std::vector<uint64_t> keys(tokens.size());
  uint64_t h = 1469598103934665603ull;
  for (size_t p = 0; p < tokens.size(); ++p) keys[p] = h = (h ^ static_cast<uint64_t>(tokens[p] + 1)) * 1099511628211ull;
  return keys;
}
int32_t next_token(uint64_t key) { return static_cast<int32_t>((key >> 17) % kVocab); }

class FakeModel {
 public:
  explicit FakeModel(const Scheduler& s)
      : sched_(s), cache_(static_cast<size_t>(s.config().num_blocks * s.config().block_size), 0) {}

  std::vector<int32_t> step(const ScheduledBatch& batch) {
    const int64_t bs = sched_.config().block_size;
    for (const ScheduledSequence& s : batch.seqs) {  // write every new token's entry first, as one forward does
      const std::vector<uint64_t> keys = prefix_keys(s.seq->token_ids());
      EXPECT_EQ(s.start_pos, s.seq->num_cached_tokens);
      for (int64_t p = s.start_pos; p < s.start_pos + s.num_new_tokens; ++p) {
        const int64_t slot = s.seq->slot(p, bs);
        EXPECT_EQ(sched_.block_manager().ref_count(static_cast<int32_t>(slot / bs)), 1)
            << "sequence " << s.seq->id() << " writes position " << p << " into a shared block";
        cache_[slot] = keys[p];
      }
    }
    std::vector<int32_t> sampled;
    for (const ScheduledSequence& s : batch.seqs) {
      if (!s.samples) continue;
      const std::vector<uint64_t> keys = prefix_keys(s.seq->token_ids());
      const int64_t end = s.start_pos + s.num_new_tokens;
      EXPECT_EQ(end, s.seq->num_tokens());
      for (int64_t q = 0; q < end; ++q)
        EXPECT_EQ(cache_[s.seq->slot(q, bs)], keys[q]) << "sequence " << s.seq->id() << " position " << q;
      sampled.push_back(next_token(keys[end - 1]));
    }
    return sampled;
  }

 private:
  const Scheduler& sched_;
  std::vector<uint64_t> cache_;  // what each slot holds: the key of the prefix written there
};

std::unique_ptr<Sequence> request(int64_t id, std::vector<int32_t> prompt, int64_t max_tokens) {
  SamplingParams p;
  p.max_tokens = max_tokens;
  return std::make_unique<Sequence>(id, std::move(prompt), p);
}
std::vector<int32_t> iota_tokens(int32_t n, int32_t first = 1) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), first);
  return t;
}

// Steps until every request finishes; checks the per-step budgets and that no step is empty.
std::map<int64_t, std::unique_ptr<Sequence>> run(Scheduler& sched, FakeModel& model) {
  std::map<int64_t, std::unique_ptr<Sequence>> done;
  for (int step = 0; step < 100000 && !sched.is_finished(); ++step) {
    ScheduledBatch batch = sched.schedule();
    if (batch.empty()) {
      ADD_FAILURE() << "no progress at step " << step;
      break;
    }
    EXPECT_LE(batch.num_tokens(), sched.config().max_num_batched_tokens);
    EXPECT_LE(static_cast<int64_t>(batch.seqs.size()), sched.config().max_num_seqs);
    sched.postprocess(batch, model.step(batch));
    for (auto& seq : sched.take_finished()) done[seq->id()] = std::move(seq);
  }
  for (auto& seq : sched.take_finished()) done[seq->id()] = std::move(seq);
  EXPECT_TRUE(sched.is_finished());
  EXPECT_EQ(sched.block_manager().stats().used, 0);
  return done;
}

// The completion of one request run by itself in a roomy pool.
std::vector<int32_t> run_alone(RuntimeOptions cfg, const Sequence& req) {
  cfg.num_blocks = 4096;
  cfg.max_num_batched_tokens = 4096;
  Scheduler sched(cfg);
  FakeModel model(sched);
  sched.add(std::make_unique<Sequence>(req.id(), req.token_ids(), req.params()));
  auto done = run(sched, model);
  return done.at(req.id())->completion_tokens();
}

RuntimeOptions small_config() {
  RuntimeOptions cfg;
  cfg.block_size = 4;
  cfg.num_blocks = 32;
  cfg.max_num_batched_tokens = 64;
  cfg.max_model_len = 128;
  return cfg;
}

TEST(Scheduler, ConfigErrorsNameTheField) {
  RuntimeOptions cfg = small_config();
  cfg.max_num_seqs = 0;
  EXPECT_ERROR_MENTIONS(Scheduler{cfg}, "--max-num-seqs", "0");
  cfg = small_config();
  cfg.block_size = 300;
  EXPECT_ERROR_MENTIONS(Scheduler{cfg}, "--block-size", "300");
  cfg = small_config();
  cfg.num_blocks = -1;
  EXPECT_ERROR_MENTIONS(Scheduler{cfg}, "block count is not resolved", "-1");
}

TEST(Scheduler, MixesPrefillAndDecodeInOneStep) {
  Scheduler sched(small_config());
  FakeModel model(sched);
  sched.add(request(1, iota_tokens(5), 8));
  ScheduledBatch first = sched.schedule();
  ASSERT_EQ(first.seqs.size(), 1u);
  EXPECT_TRUE(first.seqs[0].is_prefill && first.seqs[0].samples);
  EXPECT_EQ(first.seqs[0].num_new_tokens, 5);
  sched.postprocess(first, model.step(first));

  sched.add(request(2, iota_tokens(6, 50), 8));
  ScheduledBatch mixed = sched.schedule();
  ASSERT_EQ(mixed.seqs.size(), 2u);
  const ScheduledSequence& decode = mixed.seqs[0];
  const ScheduledSequence& prefill = mixed.seqs[1];
  EXPECT_EQ(decode.seq->id(), 1);
  EXPECT_FALSE(decode.is_prefill);
  EXPECT_EQ(decode.num_new_tokens, 1);
  EXPECT_EQ(decode.start_pos, 5);
  EXPECT_EQ(prefill.seq->id(), 2);
  EXPECT_TRUE(prefill.is_prefill && prefill.samples);
  EXPECT_EQ(prefill.num_new_tokens, 6);
  EXPECT_EQ(prefill.start_pos, 0);
  EXPECT_EQ(mixed.num_tokens(), 7);
  sched.postprocess(mixed, model.step(mixed));
  EXPECT_EQ(sched.num_running(), 2);
}

TEST(Scheduler, ChunksAPromptLongerThanTheTokenBudget) {
  RuntimeOptions cfg = small_config();
  cfg.max_num_batched_tokens = 8;
  Scheduler sched(cfg);
  FakeModel model(sched);
  sched.add(request(1, iota_tokens(3), 10));
  ScheduledBatch b = sched.schedule();
  sched.postprocess(b, model.step(b));
  sched.add(request(2, iota_tokens(20, 30), 4));
  const int64_t expected_start[] = {0, 7, 14};
  const int64_t expected_chunk[] = {7, 7, 6};  // the decode of request 1 takes one token of each step's 8
  for (int step = 0; step < 3; ++step) {
    b = sched.schedule();
    ASSERT_EQ(b.seqs.size(), 2u);
    EXPECT_FALSE(b.seqs[0].is_prefill);
    EXPECT_EQ(b.seqs[1].seq->id(), 2);
    EXPECT_EQ(b.seqs[1].start_pos, expected_start[step]);
    EXPECT_EQ(b.seqs[1].num_new_tokens, expected_chunk[step]);
    EXPECT_EQ(b.seqs[1].samples, step == 2);
    EXPECT_EQ(b.num_samples(), step == 2 ? 2 : 1);
    sched.postprocess(b, model.step(b));
  }
  // Positions holding a slot: request 1's 0..5 (its 7th token is not written yet), request 2's 0..19.
  EXPECT_EQ(sched.block_manager().stats().tokens_stored, 6 + 20);
  auto done = run(sched, model);
  Sequence alone(2, iota_tokens(20, 30), done.at(2)->params());
  EXPECT_EQ(done.at(2)->completion_tokens(), run_alone(cfg, alone));
  EXPECT_EQ(done.at(2)->num_completion_tokens(), 4);
}

TEST(Scheduler, PreemptionByRecomputeFinishesEveryRequestWithItsOwnOutput) {
  RuntimeOptions cfg = small_config();
  cfg.block_size = 2;
  cfg.num_blocks = 6;  // 12 slots for four requests that each grow to 8-10 tokens
  cfg.max_num_batched_tokens = 16;
  std::vector<std::unique_ptr<Sequence>> reqs;
  const int32_t prompt_lens[] = {3, 4, 5, 3};
  for (int i = 0; i < 4; ++i) reqs.push_back(request(i, iota_tokens(prompt_lens[i], 10 * i), 6));
  Scheduler sched(cfg);
  FakeModel model(sched);
  for (auto& r : reqs) sched.add(std::make_unique<Sequence>(*r));
  auto done = run(sched, model);
  EXPECT_GT(sched.num_preemptions(), 0);
  ASSERT_EQ(done.size(), 4u);
  for (auto& r : reqs) {
    const Sequence& out = *done.at(r->id());
    EXPECT_EQ(out.finish_reason, FinishReason::Length);
    EXPECT_EQ(out.num_prompt_tokens(), r->num_prompt_tokens());
    EXPECT_EQ(out.num_completion_tokens(), 6);
    EXPECT_EQ(out.completion_tokens(), run_alone(cfg, *r)) << "request " << r->id();
  }
}

TEST(Scheduler, PreemptsTheNewestAndRecomputesAllItsTokens) {
  RuntimeOptions cfg = small_config();
  cfg.block_size = 2;
  cfg.num_blocks = 4;
  Scheduler sched(cfg);
  FakeModel model(sched);
  sched.add(request(1, {5, 6}, 6));
  sched.add(request(2, {7, 8}, 6));
  ScheduledBatch b;
  for (int step = 0; step < 4; ++step) {  // at the 4th step both need a third block and only one is left
    b = sched.schedule();
    sched.postprocess(b, model.step(b));
  }
  ASSERT_EQ(sched.num_preemptions(), 1);
  ASSERT_EQ(b.seqs.size(), 1u);
  EXPECT_EQ(b.seqs[0].seq->id(), 1);
  ASSERT_EQ(sched.num_waiting(), 1);
  while (sched.num_waiting() > 0) {  // wait for request 2 to be readmitted
    b = sched.schedule();
    sched.postprocess(b, model.step(b));
  }
  const ScheduledSequence& readmitted = b.seqs.back();
  EXPECT_EQ(readmitted.seq->id(), 2);
  EXPECT_TRUE(readmitted.is_prefill && readmitted.samples);
  EXPECT_EQ(readmitted.seq->num_prompt_tokens(), 2);
  EXPECT_EQ(readmitted.start_pos + readmitted.num_new_tokens, readmitted.seq->num_tokens() - 1);  // + its sample
  EXPECT_EQ(readmitted.seq->num_completion_tokens(), 4);  // 3 kept from before, 1 new
  run(sched, model);
}

TEST(Scheduler, RandomLoadWithSharedPrefixesMatchesRunningAlone) {
  RuntimeOptions cfg = small_config();
  cfg.num_blocks = 20;
  cfg.max_num_batched_tokens = 16;
  cfg.max_num_seqs = 6;
  cfg.max_model_len = 64;
  cfg.eos_token_id = 3;
  std::mt19937 gen(1234);
  const std::vector<int32_t> prefixes[] = {iota_tokens(12, 100), iota_tokens(9, 200), {}};
  std::vector<std::unique_ptr<Sequence>> reqs;
  for (int i = 0; i < 30; ++i) {
    std::vector<int32_t> prompt = prefixes[gen() % 3];
    for (uint32_t n = 1 + gen() % 30; n > 0; --n) prompt.push_back(static_cast<int32_t>(gen() % kVocab));
    reqs.push_back(request(i, prompt, 1 + gen() % 20));
  }
  Scheduler sched(cfg);
  FakeModel model(sched);
  for (auto& r : reqs) sched.add(std::make_unique<Sequence>(*r));
  auto done = run(sched, model);
  EXPECT_GT(sched.num_preemptions(), 0);
  EXPECT_GT(sched.block_manager().stats().prefix_hits, 0);
  EXPECT_EQ(sched.block_manager().num_free_blocks(), cfg.num_blocks);
  ASSERT_EQ(done.size(), reqs.size());
  for (auto& r : reqs) {
    const Sequence& out = *done.at(r->id());
    EXPECT_NE(out.finish_reason, FinishReason::Abort) << out.error_message;
    EXPECT_EQ(out.completion_tokens(), run_alone(cfg, *r)) << "request " << r->id();
  }
}

TEST(Scheduler, RequestThatCanNeverRunIsAbortedWhileOthersComplete) {
  RuntimeOptions cfg = small_config();
  cfg.num_blocks = 4;  // 16 slots
  cfg.max_model_len = 100;
  Scheduler sched(cfg);
  FakeModel model(sched);
  SamplingParams bad;
  bad.temperature = -1;
  sched.add(request(1, iota_tokens(4), 4));
  sched.add(request(2, iota_tokens(10), 10));  // 19 positions: 5 blocks
  sched.add(request(3, {}, 4));
  sched.add(request(4, iota_tokens(101), 1));
  sched.add(std::make_unique<Sequence>(5, iota_tokens(4), bad));
  sched.add(request(6, iota_tokens(5, 40), 4));
  std::map<int64_t, std::unique_ptr<Sequence>> aborted;
  for (auto& seq : sched.take_finished()) aborted[seq->id()] = std::move(seq);
  ASSERT_EQ(aborted.size(), 4u);
  for (auto& [id, seq] : aborted) {
    EXPECT_EQ(seq->finish_reason, FinishReason::Abort);
    EXPECT_STREQ(finish_reason_name(seq->finish_reason), "abort");
  }
  EXPECT_NE(aborted[2]->error_message.find("needs up to 5 cache blocks"), std::string::npos) << aborted[2]->error_message;
  EXPECT_NE(aborted[2]->error_message.find("holds 4 blocks"), std::string::npos);
  EXPECT_NE(aborted[3]->error_message.find("empty prompt"), std::string::npos);
  EXPECT_NE(aborted[4]->error_message.find("longer than max_model_len (100)"), std::string::npos);
  EXPECT_NE(aborted[5]->error_message.find("temperature"), std::string::npos);
  auto done = run(sched, model);
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(done.at(1)->num_completion_tokens(), 4);
  EXPECT_EQ(done.at(6)->num_completion_tokens(), 4);
}

TEST(Scheduler, StopsOnEosStopIdsMaxTokensAndMaxModelLen) {
  RuntimeOptions cfg = small_config();
  cfg.max_model_len = 8;
  cfg.eos_token_id = 2;
  Scheduler sched(cfg);
  std::map<int64_t, std::vector<int32_t>> script = {
      {1, {5, 2, 5}}, {2, {2, 2, 2, 2}}, {3, {4, 9, 4}}, {4, {1, 1, 1}}, {5, {1, 1, 1}}};
  sched.add(request(1, iota_tokens(3), 10));  // EOS
  auto ignore = request(2, iota_tokens(3), 3);
  SamplingParams p = ignore->params();
  p.ignore_eos = true;
  sched.add(std::make_unique<Sequence>(2, iota_tokens(3), p));  // EOS ignored: runs to max_tokens
  p = SamplingParams{};
  p.max_tokens = 10;
  p.stop_token_ids = {9};
  sched.add(std::make_unique<Sequence>(3, iota_tokens(3), p));  // stop id
  sched.add(request(4, iota_tokens(3), 2));                      // max_tokens
  sched.add(request(5, iota_tokens(6), 100));                    // max_model_len 8: two tokens
  std::map<int64_t, std::unique_ptr<Sequence>> done;
  for (int step = 0; step < 20 && !sched.is_finished(); ++step) {
    ScheduledBatch b = sched.schedule();
    std::vector<int32_t> sampled;
    for (const auto& s : b.seqs)
      if (s.samples) sampled.push_back(script[s.seq->id()][s.seq->num_completion_tokens()]);
    sched.postprocess(b, sampled);
    for (auto& seq : sched.take_finished()) done[seq->id()] = std::move(seq);
  }
  ASSERT_EQ(done.size(), 5u);
  EXPECT_EQ(done[1]->completion_tokens(), (std::vector<int32_t>{5, 2}));
  EXPECT_STREQ(finish_reason_name(done[1]->finish_reason), "stop");
  EXPECT_EQ(done[2]->completion_tokens(), (std::vector<int32_t>{2, 2, 2}));
  EXPECT_STREQ(finish_reason_name(done[2]->finish_reason), "length");
  EXPECT_EQ(done[3]->completion_tokens(), (std::vector<int32_t>{4, 9}));
  EXPECT_EQ(done[3]->finish_reason, FinishReason::Stop);
  EXPECT_EQ(done[4]->completion_tokens(), (std::vector<int32_t>{1, 1}));
  EXPECT_EQ(done[4]->finish_reason, FinishReason::Length);
  EXPECT_EQ(done[5]->num_tokens(), 8);
  EXPECT_EQ(done[5]->finish_reason, FinishReason::Length);
  EXPECT_EQ(sched.block_manager().num_free_blocks(), cfg.num_blocks);
}

TEST(Scheduler, RepeatedPromptHitsThePrefixCacheWithoutWritingSharedBlocks) {
  Scheduler sched(small_config());
  FakeModel model(sched);  // asserts every written slot's block has ref count 1
  sched.add(request(1, iota_tokens(12), 8));
  ScheduledBatch b = sched.schedule();
  sched.postprocess(b, model.step(b));
  sched.add(request(2, iota_tokens(12), 8));
  b = sched.schedule();
  ASSERT_EQ(b.seqs.size(), 2u);
  const ScheduledSequence& second = b.seqs[1];
  EXPECT_EQ(second.start_pos, 8);  // two of three blocks hit; the last token's block is computed
  EXPECT_EQ(second.num_new_tokens, 4);
  const BlockManager& bm = sched.block_manager();
  EXPECT_EQ(bm.stats().shared, 2);
  EXPECT_GT(bm.stats().hit_rate(), 0.0);
  for (int64_t p = second.start_pos; p < second.start_pos + second.num_new_tokens; ++p)
    EXPECT_EQ(bm.ref_count(static_cast<int32_t>(second.seq->slot(p, 4) / 4)), 1);
  sched.postprocess(b, model.step(b));
  auto done = run(sched, model);
  EXPECT_EQ(done.at(1)->completion_tokens(), done.at(2)->completion_tokens());
}

TEST(Scheduler, RespectsMaxNumSeqsAndAbortFreesBlocks) {
  RuntimeOptions cfg = small_config();
  cfg.max_num_seqs = 2;
  Scheduler sched(cfg);
  for (int i = 1; i <= 3; ++i) sched.add(request(i, iota_tokens(5, 10 * i), 4));
  ScheduledBatch b = sched.schedule();
  EXPECT_EQ(b.seqs.size(), 2u);
  EXPECT_EQ(sched.num_waiting(), 1);
  EXPECT_ERROR_MENTIONS(sched.postprocess(b, {1}), "2 sampling sequences", "1 tokens");
  sched.postprocess(b, {1, 1});
  EXPECT_TRUE(sched.abort(1, "client went away"));
  EXPECT_TRUE(sched.abort(3, "client went away"));
  EXPECT_FALSE(sched.abort(99, "unknown"));
  auto finished = sched.take_finished();
  ASSERT_EQ(finished.size(), 2u);
  EXPECT_EQ(finished[0]->finish_reason, FinishReason::Abort);
  EXPECT_EQ(finished[0]->error_message, "client went away");
  EXPECT_EQ(sched.num_running(), 1);
  EXPECT_EQ(sched.num_waiting(), 0);
  EXPECT_EQ(sched.block_manager().stats().used, 2);  // only request 2's 6 tokens remain
}

}  // namespace
}  // namespace mlarun
