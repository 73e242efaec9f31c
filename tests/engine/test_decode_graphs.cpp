// Decode graphs on the CPU (engine/decode_graphs.h): the buckets, which steps qualify, and the two things a graph
// relies on that the CPU can check. Padding: a decode step grown to its bucket gives the real sequences the same
// logits and writes nothing into the cache beyond their own rows (both MoE layouts). The fixed step layout: two
// different steps of one bucket pack into the same buffer at the same addresses, block tables padded to the
// graph's width. The capture and replay themselves need a GPU (tests/model/test_gpu_model.cpp).
#include <gtest/gtest.h>

#include <cstring>

#include "engine/decode_graphs.h"
#include "model/deepseek_model.h"
#include "runtime/cache_pool.h"
#include "test_util.h"

using namespace mlarun;

namespace {

// S sequences decoding one token each after `cached` tokens, in blocks of 4 tokens: sequence j in blocks
// n j .. n j + n - 1 for the n blocks its context needs.
ForwardBatch decode_step(int64_t S, int64_t cached, int32_t first_token = 3) {
  ForwardBatch b;
  const int64_t n = (cached + 1 + 3) / 4;
  for (int64_t j = 0; j < S; ++j) {
    std::vector<int32_t> table;
    for (int64_t k = 0; k < n; ++k) table.push_back(int32_t(n * j + k));
    b.logit_rows.push_back(b.add_sequence({int32_t(first_token + 5 * j)}, cached, table, 4));
  }
  return b;
}

std::vector<float> host(const Tensor& t) { return std::vector<float>(t.data<float>(), t.data<float>() + t.numel()); }

}  // namespace

TEST(DecodeGraphs, BucketsFollowVllmsList) {
  EXPECT_EQ(decode_graph_buckets(1), (std::vector<int64_t>{1}));
  EXPECT_EQ(decode_graph_buckets(8), (std::vector<int64_t>{1, 2, 4, 8}));
  EXPECT_EQ(decode_graph_buckets(20), (std::vector<int64_t>{1, 2, 4, 8, 16, 20}));
  EXPECT_TRUE(decode_graph_buckets(0).empty());
  const std::vector<int64_t> b = decode_graph_buckets(256);
  EXPECT_EQ(b.size(), size_t(3 + 32));
  EXPECT_EQ(decode_graph_bucket(b, 1), 1);
  EXPECT_EQ(decode_graph_bucket(b, 3), 4);
  EXPECT_EQ(decode_graph_bucket(b, 9), 16);
  EXPECT_EQ(decode_graph_bucket(b, 256), 256);
  EXPECT_EQ(decode_graph_bucket(b, 257), 0) << "beyond the largest bucket: eager";
}

TEST(DecodeGraphs, OnlyOneTokenDecodeStepsInBatchOrderQualify) {
  EXPECT_EQ(decode_graph_unfit(decode_step(3, 5)), "");
  ForwardBatch chunk = decode_step(1, 0);
  chunk.add_sequence({1, 2}, 0, {6}, 4);
  chunk.logit_rows.push_back(2);
  EXPECT_NE(decode_graph_unfit(chunk).find("one new token"), std::string::npos);
  ForwardBatch no_logits = decode_step(2, 5);
  no_logits.logit_rows.pop_back();
  EXPECT_NE(decode_graph_unfit(no_logits).find("one row per sequence"), std::string::npos);
  ForwardBatch reordered = decode_step(2, 5);
  std::swap(reordered.logit_rows[0], reordered.logit_rows[1]);
  EXPECT_NE(decode_graph_unfit(reordered).find("order"), std::string::npos);
  ForwardBatch naive = decode_step(2, 5);
  naive.mla_path = MlaPath::Naive;
  EXPECT_NE(decode_graph_unfit(naive), "");
  EXPECT_NE(decode_graph_unfit(ForwardBatch{}), "");
  EXPECT_ERROR_MENTIONS(pad_decode_batch(chunk, 4), "not a decode step");
  EXPECT_ERROR_MENTIONS(pad_decode_batch(decode_step(3, 5), 2), "3 sequences do not fit 2");
}

// The real rows of a padded step: the same logits as unpadded, bit for bit on the CPU (every op is per row or per
// sequence), and the cache changed only at the real sequences' new slots.
TEST(DecodeGraphs, PaddingChangesNeitherTheRealLogitsNorOtherCacheRows) {
  SingleCommunicator comm;
  auto model = DeepseekModel::load(mlarun::testing::data_dir() + "/deepseek-v3-tiny", comm);  // MoE layers
  const ModelConfig& c = model->config();
  for (int64_t capacity : {0, 64}) {
    SCOPED_TRACE("moe capacity max tokens " + std::to_string(capacity));
    model->set_moe_capacity_max_tokens(capacity);
    CachePool pool = CachePool::allocate(c.n_layers, 16, 4, c.latent_dim(), DType::F32, Device::CPU);
    for (Tensor& layer : pool.layers)  // a cache full of earlier rows
      for (int64_t i = 0; i < layer.numel(); ++i) layer.data<float>()[i] = 0.01f * float(i % 97) - 0.4f;
    std::vector<Tensor> before;
    for (const Tensor& layer : pool.layers) before.push_back(layer.clone());
    const ForwardBatch step = decode_step(3, 5);
    const ForwardBatch padded = pad_decode_batch(step, 8);
    ASSERT_EQ(padded.sequences.size(), size_t(8));
    EXPECT_EQ(padded.slot_mapping[5], -1);
    const Tensor want = model->forward(step, pool.layers);
    std::vector<Tensor> after_real;
    for (const Tensor& layer : pool.layers) after_real.push_back(layer.clone());
    for (size_t l = 0; l < pool.layers.size(); ++l) pool.layers[l] = before[l].clone();
    const Tensor got = model->forward(padded, pool.layers);
    ASSERT_EQ(got.dim(0), 8);
    EXPECT_EQ(host(got.rows(0, 3)), host(want));
    for (size_t l = 0; l < pool.layers.size(); ++l)
      EXPECT_EQ(host(pool.layers[l]), host(after_real[l])) << "layer " << l << ": padding wrote into the cache";
  }
}

TEST(DecodeGraphs, FixedStepLayoutKeepsItsAddressesAndPadsTheTables) {
  FixedStepBuffer buffer;
  const StepTensors a = StepTensors::build_fixed(pad_decode_batch(decode_step(3, 5), 4), Device::CPU, 4, 16, 6, buffer);
  ASSERT_TRUE(buffer.bytes.defined());
  const void* where = buffer.bytes.raw();
  EXPECT_EQ(a.block_tables.shape(), (Shape{4, 6})) << "padded to the graph's 6 columns";
  EXPECT_EQ(a.absorbed.block_tables.shape(), (Shape{4, 6}));
  EXPECT_EQ(a.absorbed.max_blocks, 6);
  EXPECT_EQ(a.absorbed.block_tables.data<int32_t>()[6 + 1], 3) << "sequence 1's second block";
  EXPECT_EQ(a.absorbed.block_tables.data<int32_t>()[6 + 2], 0) << "past its blocks: zero";
  // Another step of the same bucket: other tokens, longer contexts, fewer real sequences.
  const StepTensors b =
      StepTensors::build_fixed(pad_decode_batch(decode_step(2, 7, 9), 4), Device::CPU, 4, 16, 6, buffer);
  EXPECT_EQ(buffer.bytes.raw(), where);
  for (auto [x, y] : {std::pair{&a.token_ids, &b.token_ids}, {&a.slot_mapping, &b.slot_mapping},
                      {&a.absorbed.seq_lens, &b.absorbed.seq_lens},
                      {&a.absorbed.block_tables, &b.absorbed.block_tables},
                      {&a.logit_rows, &b.logit_rows}}) {
    EXPECT_EQ(x->raw(), y->raw()) << "every view at the same address";
    EXPECT_EQ(x->shape(), y->shape());
  }
  EXPECT_EQ(b.token_ids.data<int32_t>()[1], 14);
  EXPECT_EQ(b.absorbed.seq_lens.data<int32_t>()[1], 8);
  EXPECT_EQ(b.absorbed.seq_lens.data<int32_t>()[3], 1) << "a padding sequence reads one row";
  EXPECT_ERROR_MENTIONS(StepTensors::build_fixed(pad_decode_batch(decode_step(2, 7), 8), Device::CPU, 4, 16, 6, buffer),
                        "fixed layout", "other sizes");
  FixedStepBuffer other;
  EXPECT_ERROR_MENTIONS(StepTensors::build_fixed(decode_step(1, 30), Device::CPU, 4, 16, 6, other),
                        "31 tokens of context", "6 blocks of 4");
}

TEST(DecodeGraphs, OffOnTheCpu) {
  SingleCommunicator comm;
  auto model = DeepseekModel::load(mlarun::testing::data_dir() + "/deepseek-v2-tiny", comm);
  std::vector<Tensor> cache;
  DecodeGraphs graphs(*model, cache, comm, {8, 4, 16, 4});
  HostStaging staging;
  EXPECT_EQ(graphs.unfit(decode_step(2, 5)), "not on the GPU");
  EXPECT_EQ(graphs.describe(), "off (not on the GPU)");
  DecodeGraphs eager(*model, cache, comm, {0, 4, 16, 4});
  EXPECT_EQ(eager.describe(), "off (--enforce-eager)");
  EXPECT_FALSE(graphs.run(decode_step(2, 5), staging).defined());
  EXPECT_EQ(graphs.captures(), 0);
  EXPECT_EQ(graphs.buckets(), (std::vector<int64_t>{1, 2, 4, 8}));
}
