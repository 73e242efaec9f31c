// The step path on the CPU: StepTensors lays a batch out as the kernels read it (parts by MLA path, cu_seqlens,
// block tables, context slots, mla_decode's view of long absorbed chunks) and refuses slots or blocks outside the
// cache; the tensor forms of the index ops
// equal their list forms; the MoE permutation and combine equal group_by_expert + scatter_add_rows bit for bit,
// in the compact and the capacity layout.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/ops.h"
#include "random_routing.h"
#include "runtime/step_tensors.h"
#include "test_util.h"

using namespace mlarun;

namespace {

template <typename T>
std::vector<T> list(const Tensor& t) {
  return std::vector<T>(t.data<T>(), t.data<T>() + t.numel());
}

ForwardBatch mixed_batch() {
  ForwardBatch b;
  b.add_sequence({1, 2, 3}, 4, {5, 1}, 4);  // prefill chunk at 4..6 (naive)
  b.add_sequence({7}, 2, {0}, 4);           // decode at position 2 (absorbed)
  b.logit_rows = {2, 3};
  return b;
}

}  // namespace

TEST(StepTensors, LaysOutTheBatchByPath) {
  const StepTensors st = StepTensors::build(mixed_batch(), Device::CPU, 4, 6);
  EXPECT_EQ(list<int32_t>(st.token_ids), (std::vector<int32_t>{1, 2, 3, 7}));
  EXPECT_EQ(list<int64_t>(st.slot_mapping), (std::vector<int64_t>{4, 5, 6, 2}));
  EXPECT_EQ(list<int32_t>(st.block_tables), (std::vector<int32_t>{5, 1, 0, 0}));
  EXPECT_EQ(list<int32_t>(st.seq_lens), (std::vector<int32_t>{7, 3}));
  EXPECT_EQ(list<int32_t>(st.cu_seqlens_k), (std::vector<int32_t>{0, 7, 10}));
  EXPECT_EQ(st.naive.seqs, (std::vector<int64_t>{0}));
  EXPECT_EQ(list<int64_t>(st.naive.rows), (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(list<int64_t>(st.naive.kv_slots), (std::vector<int64_t>{20, 21, 22, 23, 4, 5, 6}));
  EXPECT_EQ(st.naive.cu_seqlens_q_host, (std::vector<int32_t>{0, 3}));
  EXPECT_FALSE(st.naive.whole_step);
  EXPECT_EQ(list<int64_t>(st.absorbed.rows), (std::vector<int64_t>{3}));
  EXPECT_EQ(list<int32_t>(st.absorbed.token_keys), (std::vector<int32_t>{3}));
  EXPECT_EQ(st.absorbed.max_q, 1);
}

// An absorbed part with a sequence of more than 4 new tokens (a prefill chunk sent down the absorbed path) gets
// mla_decode's view: pseudo-sequences of at most 4 rows, each row seeing exactly the keys it sees in the part
// (token_keys), each pseudo-sequence reading its sequence's table row, the rows in the part's order.
TEST(StepTensors, AbsorbedChunksGetADecodeViewThatKeepsEveryRowsKeys) {
  ForwardBatch b;
  b.add_sequence({1, 2, 3, 4, 5, 6, 7, 8, 9}, 5, {3, 1, 4, 2}, 4);  // 9 rows after 5 cached: pieces of 4, 4, 1
  b.add_sequence({7}, 2, {0}, 4);                                    // a decode
  b.add_sequence({1, 2, 3, 4}, 0, {5}, 4);                           // 4 rows: one piece
  b.mla_path = MlaPath::Absorbed;
  const StepTensors st = StepTensors::build(b, Device::CPU, 4, 7);
  const StepPart& part = st.absorbed;
  ASSERT_EQ(part.max_q, 9);
  ASSERT_EQ(part.decode_view_seqs, 5);
  EXPECT_EQ(list<int32_t>(part.decode_view_seq_lens), (std::vector<int32_t>{9, 13, 14, 3, 4}));
  EXPECT_EQ(list<int32_t>(part.decode_view_cu_q), (std::vector<int32_t>{0, 4, 8, 9, 10, 14}));
  EXPECT_EQ(list<int32_t>(part.decode_view_tables),
            (std::vector<int32_t>{3, 1, 4, 2, 3, 1, 4, 2, 3, 1, 4, 2, 0, 0, 0, 0, 5, 0, 0, 0}));

  // Random batches: row j of a pseudo-sequence with L keys and n rows sees L - n + j + 1 keys (mla_decode's
  // causal rule); that must be the row's token_keys, and its table the row's own (token_table_start).
  std::mt19937 rng(11);
  for (int trial = 0; trial < 50; ++trial) {
    ForwardBatch r;
    int32_t next_block = 0;
    const int seqs = 1 + int(rng() % 6);
    for (int i = 0; i < seqs; ++i) {
      const int64_t start = int64_t(rng() % 40), n = 1 + int64_t(rng() % 19);
      std::vector<int32_t> table;
      for (int64_t t = 0; t < (start + n + 7) / 8; ++t) table.push_back(next_block++);
      r.add_sequence(std::vector<int32_t>(size_t(n), 1), start, table, 8);
    }
    r.mla_path = MlaPath::Absorbed;
    const StepTensors t = StepTensors::build(r, Device::CPU, 8, next_block);
    const StepPart& a = t.absorbed;
    if (a.max_q <= StepPart::kDecodeViewMaxQ) {
      EXPECT_EQ(a.decode_view_seqs, 0);
      continue;
    }
    const auto lens = list<int32_t>(a.decode_view_seq_lens), cu = list<int32_t>(a.decode_view_cu_q);
    const auto vtab = list<int32_t>(a.decode_view_tables), tab = list<int32_t>(a.block_tables);
    const auto keys = list<int32_t>(a.token_keys), start = list<int32_t>(a.token_table_start);
    ASSERT_EQ(cu.back(), a.num_tokens);
    for (int64_t g = 0; g < a.decode_view_seqs; ++g) {
      const int32_t n = cu[size_t(g + 1)] - cu[size_t(g)];
      ASSERT_GE(n, 1);
      ASSERT_LE(n, StepPart::kDecodeViewMaxQ);
      for (int32_t j = 0; j < n; ++j) {
        const size_t row = size_t(cu[size_t(g)] + j);
        EXPECT_EQ(lens[size_t(g)] - n + j + 1, keys[row]) << "trial " << trial << " row " << row;
        for (int64_t c = 0; c < a.max_blocks; ++c)
          ASSERT_EQ(vtab[size_t(g * a.max_blocks + c)], tab[size_t(start[row] + c)]) << "trial " << trial;
      }
    }
  }
}

TEST(StepTensors, RefusesSlotsAndBlocksOutsideTheCache) {
  EXPECT_ERROR_MENTIONS(StepTensors::build(mixed_batch(), Device::CPU, 4, 5), "block 5 outside the pool of 5 blocks");
  ForwardBatch b = mixed_batch();
  b.slot_mapping[0] = 99;
  EXPECT_ERROR_MENTIONS(StepTensors::build(b, Device::CPU, 4, 6), "slot 99 outside the cache of 24 slots");
}

TEST(StepOps, TensorFormsEqualListForms) {
  std::mt19937 rng(3);
  std::normal_distribution<float> dist;
  Tensor x = Tensor::empty({6, 5}, DType::F32);
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = dist(rng);
  Tensor rows = Tensor::empty({3}, DType::I64);
  const std::vector<int64_t> r = {4, 0, 2};
  for (int i = 0; i < 3; ++i) rows.data<int64_t>()[i] = r[size_t(i)];
  Tensor a = ops::gather_rows(x, rows), b = ops::gather_rows(x, r);
  EXPECT_EQ(list<float>(a), list<float>(b));
  Tensor back = Tensor::zeros({6, 5}, DType::F32);
  ops::scatter_rows(back, rows, a);
  for (int64_t i : r)
    for (int64_t d = 0; d < 5; ++d) EXPECT_EQ(back.data<float>()[i * 5 + d], x.data<float>()[i * 5 + d]);
}

TEST(StepOps, ExpertPermutationAndCombineEqualTheHostGrouping) {
  std::mt19937 rng(11);
  const int64_t T = 9, K = 3, E = 8, D = 4, first = 2, local = 4;
  const ops::Routing routing = mlarun::testing::random_routing(T, K, E, rng);
  const Tensor& experts = routing.experts;
  ops::ExpertGroups g = ops::group_by_expert(routing, first, local);
  ops::ExpertPermutation p = ops::permute_by_expert(routing, first, local);
  EXPECT_EQ(p.offsets, g.offsets);
  EXPECT_EQ(list<int64_t>(p.tokens), g.tokens);
  EXPECT_EQ(list<float>(p.weights), g.weights);
  for (int64_t i = 0; i < T * K; ++i) {
    const int64_t s = p.slot_of.data<int64_t>()[i];
    const int64_t e = experts.data<int32_t>()[i] - first;
    if (e < 0 || e >= local) {
      EXPECT_EQ(s, -1);
    } else {
      ASSERT_GE(s, g.offsets[size_t(e)]);
      ASSERT_LT(s, g.offsets[size_t(e + 1)]);
      EXPECT_EQ(g.tokens[size_t(s)], i / K);
    }
  }
  const int64_t A = g.offsets.back();
  Tensor out = Tensor::empty({A, D}, DType::F32);
  std::normal_distribution<float> dist;
  for (int64_t i = 0; i < out.numel(); ++i) out.data<float>()[i] = dist(rng);
  Tensor want = Tensor::zeros({T, D}, DType::F32);
  ops::scatter_add_rows(want, g.tokens, out, g.weights);
  Tensor got = ops::combine_experts(out, p.slot_of, routing);
  EXPECT_EQ(list<float>(got), list<float>(want)) << "bit for bit: the same sums in the same order";
}

// The capacity layout holds each local expert's tokens in ascending order down its column of the [T, n] grid
// (the order group_by_expert gives), -1 below; each local assignment's slot names its row; and combining the
// same expert outputs placed in either layout gives the same sums bit for bit.
TEST(StepOps, CapacityLayoutHoldsTheHostGroupingAndCombinesAlike) {
  std::mt19937 rng(12);
  const int64_t T = 11, K = 3, E = 8, D = 5;
  const ops::Routing routing = mlarun::testing::random_routing(T, K, E, rng);
  for (auto [first, n] : {std::pair<int64_t, int64_t>{0, 8}, {2, 4}, {6, 2}}) {
    const ops::ExpertGroups g = ops::group_by_expert(routing, first, n);
    const ops::ExpertCapacityLayout c = ops::permute_to_capacity(routing, first, n);
    ASSERT_EQ(c.tokens.numel(), T * n);
    EXPECT_EQ(c.num_experts, n);
    for (int64_t j = 0; j < n; ++j) {
      const int64_t count = g.offsets[size_t(j + 1)] - g.offsets[size_t(j)];
      EXPECT_EQ(c.counts.data<int64_t>()[j], count) << "expert " << first + j;
      for (int64_t row = 0; row < T; ++row)
        EXPECT_EQ(c.tokens.data<int64_t>()[row * n + j],
                  row < count ? g.tokens[size_t(g.offsets[size_t(j)] + row)] : -1)
            << "expert " << first + j << " row " << row;
    }
    const ops::ExpertPermutation p = ops::permute_by_expert(routing, first, n);
    Tensor compact = Tensor::empty({p.tokens.numel(), D}, DType::F32);
    Tensor grid = Tensor::empty({T * n, D}, DType::F32);
    std::fill_n(grid.data<float>(), grid.numel(), std::nanf(""));  // an empty row must never be read
    std::normal_distribution<float> dist;
    for (int64_t i = 0; i < T * K; ++i) {
      const int64_t e = routing.experts.data<int32_t>()[i] - first;
      const int64_t s = c.slot_of.data<int64_t>()[i];
      if (e < 0 || e >= n) {
        EXPECT_EQ(s, -1);
        continue;
      }
      ASSERT_EQ(s % n, e);
      EXPECT_EQ(c.tokens.data<int64_t>()[s], i / K);
      for (int64_t d = 0; d < D; ++d) {  // the same output for the assignment in both layouts
        const float v = dist(rng);
        compact.data<float>()[p.slot_of.data<int64_t>()[i] * D + d] = v;
        grid.data<float>()[s * D + d] = v;
      }
    }
    EXPECT_EQ(list<float>(ops::combine_experts(grid, c.slot_of, routing)),
              list<float>(ops::combine_experts(compact, p.slot_of, routing)));
  }
}

TEST(StepOps, CapacityLayoutRefusesATokenPickingAnExpertTwice) {
  Tensor experts = Tensor::empty({2, 2}, DType::I32), weights = Tensor::zeros({2, 2}, DType::F32);
  for (int32_t i = 0; i < 4; ++i) experts.data<int32_t>()[i] = i == 3 ? 1 : i % 2;  // token 1: experts 0 and 1 ...
  EXPECT_NO_THROW(ops::permute_to_capacity({experts, weights}, 0, 2));
  experts.data<int32_t>()[2] = 1;  // ... now 1 and 1
  EXPECT_ERROR_MENTIONS(ops::permute_to_capacity({experts, weights}, 0, 2), "expert 1", "more than once");
}

// expert_linear over a capacity grid: expert j's rows c < counts[j] are its product (head_linear's rows), every
// other row zero; mismatched shapes are refused naming the operands.
TEST(StepOps, ExpertLinearComputesOnlyTheRowsThatHoldTokens) {
  std::mt19937 rng(13);
  const int64_t T = 5, n = 4, K = 6, N = 3;
  std::normal_distribution<float> dist;
  Tensor x = Tensor::empty({T, n, K}, DType::F32), w = Tensor::empty({n, N, K}, DType::F32);
  for (Tensor* t : {&x, &w})
    for (int64_t i = 0; i < t->numel(); ++i) t->data<float>()[i] = dist(rng);
  Tensor counts = Tensor::empty({n}, DType::I64);
  const int64_t c[] = {0, 5, 2, 1};
  std::copy(c, c + n, counts.data<int64_t>());
  const Tensor got = ops::expert_linear(x, w, counts), all = ops::head_linear(x, w);
  for (int64_t r = 0; r < T; ++r)
    for (int64_t j = 0; j < n; ++j)
      for (int64_t o = 0; o < N; ++o) {
        const int64_t i = (r * n + j) * N + o;
        EXPECT_EQ(got.data<float>()[i], r < c[j] ? all.data<float>()[i] : 0.f) << "row " << r << " expert " << j;
      }
  EXPECT_ERROR_MENTIONS(ops::expert_linear(x, w, Tensor::zeros({n + 1}, DType::I64)), "expert_linear", "counts");
  EXPECT_ERROR_MENTIONS(ops::expert_linear(x, Tensor::zeros({n, N, K + 1}, DType::F32), counts), "expert weights");
}

// The tensor form of gather_rows gives a zero row for index -1 (the capacity layout's empty rows).
TEST(StepOps, GatherRowsGivesZerosForMinusOne) {
  Tensor x = Tensor::from_f32({3, 2}, {1, 2, 3, 4, 5, 6});
  Tensor rows = Tensor::empty({4}, DType::I64);
  const int64_t idx[] = {2, -1, 0, -1};
  std::copy(idx, idx + 4, rows.data<int64_t>());
  EXPECT_EQ(list<float>(ops::gather_rows(x, rows)), (std::vector<float>{5, 6, 0, 0, 1, 2, 0, 0}));
}
