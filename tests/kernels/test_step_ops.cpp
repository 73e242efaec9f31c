// The step path on the CPU: StepTensors lays a batch out as the kernels read it (parts by MLA path, cu_seqlens,
// block tables, context slots) and refuses slots or blocks outside the cache; the tensor forms of the index ops
// equal their list forms; the MoE permutation and combine equal group_by_expert + scatter_add_rows bit for bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/ops.h"
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
  Tensor experts = Tensor::empty({T, K}, DType::I32), weights = Tensor::empty({T, K}, DType::F32);
  for (int64_t t = 0; t < T; ++t) {
    std::vector<int32_t> all = {0, 1, 2, 3, 4, 5, 6, 7};
    std::shuffle(all.begin(), all.end(), rng);
    for (int64_t k = 0; k < K; ++k) {
      experts.data<int32_t>()[t * K + k] = all[size_t(k)];
      weights.data<float>()[t * K + k] = std::uniform_real_distribution<float>(0.1f, 1.0f)(rng);
    }
  }
  (void)E;
  ops::Routing routing{experts, weights};
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
  Tensor got = ops::combine_experts(out, p, routing);
  EXPECT_EQ(list<float>(got), list<float>(want)) << "bit for bit: the same sums in the same order";
}
