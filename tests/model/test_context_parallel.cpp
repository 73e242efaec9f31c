// Decode context parallelism's single-process pieces (docs/layouts.md §2.6): the token placement (which rank
// stores a position, at which local slot), StepTensors under DCP (local slots, local key counts on the absorbed
// path, padded slots and gather rows on the naive path), the LSE merge (partial outputs over disjoint key sets
// sum to full attention), the option checks, and the scheduler's virtual blocks.
#include <gtest/gtest.h>

#include <random>

#include "engine/scheduler.h"
#include "kernels/ops.h"
#include "runtime/model_config.h"
#include "runtime/runtime_options.h"
#include "runtime/step_tensors.h"
#include "test_util.h"

using namespace mlarun;

namespace {
template <typename T>
std::vector<T> list(const Tensor& t) {
  return std::vector<T>(t.data<T>(), t.data<T>() + t.numel());
}
}  // namespace

TEST(ContextParallel, TokenPOfTheGroupLivesOnRankPModNAtLocalPositionPDivN) {
  const int64_t bs = 4, N = 2;
  const std::vector<int32_t> table = {7, 3, 5};  // the group's blocks of bs * N = 8 tokens
  for (int64_t r = 0; r < N; ++r) {
    const ContextParallel cp{N, r};
    for (int64_t p = 0; p < 24; ++p) {
      const int64_t local = context_parallel_local_slot(cache_slot(table, p, bs * N), bs, cp);
      if (p % N != r) {
        EXPECT_EQ(local, -1) << p;
        continue;
      }
      const int64_t lp = p / N;  // the rank's own sequence of tokens, paged with the same block ids
      EXPECT_EQ(local, table[size_t(lp / bs)] * bs + lp % bs) << "rank " << r << " position " << p;
    }
    EXPECT_EQ(context_parallel_local_slot(-1, bs, cp), -1);
  }
  EXPECT_EQ(context_parallel_local_len(0, {2, 0}), 0);
  EXPECT_EQ(context_parallel_local_len(1, {2, 1}), 0);
  EXPECT_EQ(context_parallel_local_len(5, {2, 0}), 3);
  EXPECT_EQ(context_parallel_local_len(5, {2, 1}), 2);
  EXPECT_EQ(context_parallel_local_len(5, {4, 3}), 1);
}

TEST(ContextParallel, StepTensorsGiveEachRankItsOwnRows) {
  ForwardBatch b;
  b.add_sequence({1, 2, 3}, 2, {4, 1}, 8);  // prefill chunk at 2..4 (naive), group blocks of 8 = 2 ranks x 4
  b.add_sequence({7}, 2, {0}, 8);           // decode at position 2 (absorbed)
  const StepTensors r0 = StepTensors::build(b, Device::CPU, 4, 6, nullptr, {2, 0});
  const StepTensors r1 = StepTensors::build(b, Device::CPU, 4, 6, nullptr, {2, 1});
  // Positions 2, 3, 4 of block 4 and position 2 of block 0: even positions on rank 0 at local p / 2.
  EXPECT_EQ(list<int64_t>(r0.slot_mapping), (std::vector<int64_t>{4 * 4 + 1, -1, 4 * 4 + 2, 0 * 4 + 1}));
  EXPECT_EQ(list<int64_t>(r1.slot_mapping), (std::vector<int64_t>{-1, 4 * 4 + 1, -1, -1}));
  // Absorbed: the decode at position 2 sees local rows {0, 2} on rank 0, {1} on rank 1.
  EXPECT_EQ(list<int32_t>(r0.absorbed.token_keys), (std::vector<int32_t>{2}));
  EXPECT_EQ(list<int32_t>(r1.absorbed.token_keys), (std::vector<int32_t>{1}));
  EXPECT_EQ(r0.absorbed.dcp_size, 2);
  // Naive: context of 5 -> ceil(5 / 2) = 3 rows per rank (rank 1 pads its third), gathered back in order.
  EXPECT_EQ(list<int64_t>(r0.naive.kv_slots), (std::vector<int64_t>{16, 17, 18}));
  EXPECT_EQ(list<int64_t>(r1.naive.kv_slots), (std::vector<int64_t>{16, 17, 16}));
  EXPECT_EQ(list<int64_t>(r0.naive.context_rows), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(r0.naive.total_k, 5);
  EXPECT_EQ(list<int32_t>(r0.naive.seq_lens), (std::vector<int32_t>{5}));
  EXPECT_ERROR_MENTIONS(StepTensors::build(b, Device::CPU, 4, 6, nullptr, {2, 2}), "group of 2");
}

TEST(ContextParallel, LseMergeOfDisjointKeySetsIsFullAttention) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  const int64_t Tk = 9, H = 3, D = 5, Dv = 4, N = 3;
  auto randn = [&](const Shape& s) {
    std::vector<float> v(size_t(s[0] * s[1] * s[2]));
    for (float& x : v) x = nd(rng);
    return Tensor::from_f32(s, v);
  };
  Tensor q = randn({1, H, D}), k = randn({Tk, 1, D}), v = randn({Tk, 1, Dv});
  Tensor full = ops::attention(q, k, v, 0.4f, Tk - 1);
  // Rank r holds keys r, r + N, ...: attention over those alone, with its log-sum-exp.
  std::vector<Tensor> parts, lses;
  for (int64_t r = 0; r < N; ++r) {
    std::vector<int64_t> rows;
    for (int64_t t = r; t < Tk; t += N) rows.push_back(t);
    const int64_t n = int64_t(rows.size());
    Tensor lse;
    parts.push_back(ops::attention(q, ops::gather_rows(k.view({Tk, D}), rows).view({n, 1, D}),
                                   ops::gather_rows(v.view({Tk, Dv}), rows).view({n, 1, Dv}), 0.4f, n - 1, &lse));
    lses.push_back(lse);
  }
  Tensor lse_all = ops::concat_last_dim(ops::concat_last_dim(lses[0], lses[1]), lses[2]);  // [1, N * H]
  Tensor sum = Tensor::zeros({1, H, Dv}, DType::F32);
  for (int64_t r = 0; r < N; ++r) {
    ops::lse_merge_rescale(parts[size_t(r)], lse_all, r);
    ops::add_inplace(sum, parts[size_t(r)]);
  }
  EXPECT_LT(mlarun::testing::max_abs_diff(sum.data<float>(), full.data<float>(), H * Dv), 1e-6f);
  // A rank that saw no key (lse -inf) contributes nothing.
  Tensor none = Tensor::from_f32({1, 1, 2}, {5, 5});
  ops::lse_merge_rescale(none, Tensor::from_f32({1, 2}, {0.0f, -INFINITY}), 1);
  EXPECT_EQ(list<float>(none), (std::vector<float>{0, 0}));
}

TEST(ContextParallel, OptionsNameDcpAndTheGroupBlock) {
  RuntimeOptions o;
  o.tp = 4;
  o.decode_context_parallel_size = 3;
  EXPECT_ERROR_MENTIONS(o.validate(), "--decode-context-parallel-size (--dcp)", "divide");
  o.decode_context_parallel_size = 0;
  EXPECT_ERROR_MENTIONS(o.validate(), "--dcp");
  o.decode_context_parallel_size = 2;
  o.block_size = 16;
  o.validate();
  EXPECT_EQ(o.scheduler_block_size(), 32);
}

TEST(ContextParallel, TheSchedulerCountsTheGroupsBlocks) {
  RuntimeOptions o;
  o.tp = 2;
  o.decode_context_parallel_size = 2;
  o.block_size = 4;
  o.num_blocks = 3;  // 3 blocks of 8 tokens across the group
  o.max_model_len = 64;
  Scheduler s(o);
  EXPECT_EQ(s.block_manager().block_size(), 8);
  SamplingParams p;
  p.max_tokens = 4;
  s.add(std::make_unique<Sequence>(0, std::vector<int32_t>(20, 5), p));  // 23 positions: 3 group blocks
  s.add(std::make_unique<Sequence>(1, std::vector<int32_t>(30, 5), p));  // 33 positions: 5 > 3
  std::vector<std::unique_ptr<Sequence>> done = s.take_finished();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0]->id(), 1);
  EXPECT_NE(done[0]->error_message.find("3 blocks of 8 tokens"), std::string::npos) << done[0]->error_message;
  ScheduledBatch batch = s.schedule();
  ASSERT_EQ(batch.seqs.size(), 1u);
  EXPECT_EQ(batch.seqs[0].seq->block_table.size(), 3u);
}
