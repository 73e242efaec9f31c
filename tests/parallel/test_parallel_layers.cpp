// Parallel layers load exactly their slice, and FP8 weights are dequantised with their 128x128 block scales
// (docs/model.md §5), whole or sharded, checked against values computed here; a weight of a dtype its layer does
// not take (an integer, FP8 without scales) is an error naming file, tensor and dtype.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "parallel/parallel_layers.h"
#include "checkpoint_edit.h"
#include "runtime/safetensors.h"
#include "test_util.h"

using namespace mlarun;

namespace {

// A communicator that only knows its place (the layers here do not communicate while loading).
class PlaceOnlyCommunicator final : public Communicator {
 public:
  PlaceOnlyCommunicator(int rank, int world) : rank_(rank), world_(world) {}
  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  const char* backend() const override { return "test"; }
  void all_reduce_sum(Tensor&) override { FAIL() << "unexpected all_reduce"; }
  Tensor all_gather_last_dim(const Tensor& t) override { return t; }
  void broadcast(void*, size_t, int) override {}
  void barrier() override {}
  [[noreturn]] void abort_all(const std::string& m, int) override { fail(m); }

 private:
  int rank_, world_;
};

}  // namespace

TEST(ParallelLayers, Fp8WeightsAreDequantisedWithBlockScales) {
  mlarun::testing::ScratchDir dir;
  const int64_t out = 260, in = 130;  // partial blocks on both axes: scales [3, 2]
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  std::vector<float> q(size_t(out * in));
  for (auto& v : q) v = fp8_e4m3_to_float(float_to_fp8_e4m3(dist(rng)));  // exactly representable
  Tensor wq = Tensor::from_f32({out, in}, q).to_dtype(DType::F8_E4M3);
  Tensor scale = Tensor::from_f32({3, 2}, {0.5f, 2.0f, 0.25f, 4.0f, 1.5f, 3.0f});
  write_safetensors(dir.file("model.safetensors"), {{"w.weight", wq}, {"w.weight_scale_inv", scale}});
  Checkpoint ckpt(dir.path().string());
  auto expected = [&](int64_t i, int64_t j) { return q[size_t(i * in + j)] * scale.data<float>()[(i / 128) * 2 + j / 128]; };

  ReplicatedLinear whole(ckpt, "w.weight", in, out);
  for (int64_t i = 0; i < out; ++i)
    for (int64_t j = 0; j < in; ++j) ASSERT_EQ(whole.weight().data<float>()[i * in + j], expected(i, j)) << i << "," << j;

  PlaceOnlyCommunicator rank1(1, 2);
  ColumnParallelLinear column(ckpt, "w.weight", in, out, rank1);  // rows [130, 260)
  for (int64_t i = 0; i < out / 2; ++i)
    for (int64_t j = 0; j < in; ++j) ASSERT_EQ(column.weight().data<float>()[i * in + j], expected(130 + i, j));

  write_safetensors(dir.file("model.safetensors"), {{"w.weight", wq}, {"w.weight_scale_inv", scale.view({2, 3})}});
  EXPECT_ERROR_MENTIONS(ReplicatedLinear(Checkpoint(dir.path().string()), "w.weight", in, out), "w.weight_scale_inv",
                        "[2, 3]", "[3, 2]");
}

TEST(ParallelLayers, ShardsAreTheRightSlicesAndShapesAreChecked) {
  mlarun::testing::ScratchDir dir;
  std::vector<float> v(24);
  for (int i = 0; i < 24; ++i) v[size_t(i)] = float(i);
  write_safetensors(dir.file("model.safetensors"), {{"w.weight", Tensor::from_f32({4, 6}, v)}});
  Checkpoint ckpt(dir.path().string());
  PlaceOnlyCommunicator rank1(1, 2);
  ColumnParallelLinear col(ckpt, "w.weight", 6, 4, rank1);
  EXPECT_EQ(col.weight().shape(), (Shape{2, 6}));
  EXPECT_EQ(col.weight().data<float>()[0], 12.0f);
  EXPECT_ERROR_MENTIONS(ReplicatedLinear(ckpt, "w.weight", 4, 6), "w.weight", "[4, 6]", "[6, 4]");
  EXPECT_ERROR_MENTIONS(ReplicatedLinear(ckpt, "missing.weight", 6, 4), "no tensor 'missing.weight'");
  PlaceOnlyCommunicator rank0of3(0, 3);
  EXPECT_ERROR_MENTIONS(ColumnParallelLinear(ckpt, "w.weight", 6, 4, rank0of3), "w.weight", "3 ranks");
}

// A weight must be a float (F32, F16, BF16) or F8_E4M3 with its block scales: an integer relabelled in place would
// otherwise load as numbers that mean nothing. The error names the file, the tensor and the dtype.
TEST(ParallelLayers, WeightDtypesAreChecked) {
  mlarun::testing::ScratchDir dir;
  Tensor w = Tensor::from_f32({4, 6}, std::vector<float>(24, 1.0f));
  const std::string file = dir.file("model.safetensors");
  for (DType ok : {DType::F32, DType::F16, DType::BF16}) {
    write_safetensors(file, {{"w.weight", w.to_dtype(ok)}});
    EXPECT_EQ(ReplicatedLinear(Checkpoint(dir.path().string()), "w.weight", 6, 4).weight().data<float>()[0], 1.0f);
  }
  Tensor ints = Tensor::empty({4, 6}, DType::I32);
  write_safetensors(file, {{"w.weight", ints}, {"norm.weight", Tensor::empty({6}, DType::I64)}});
  Checkpoint bad(dir.path().string());
  EXPECT_ERROR_MENTIONS(ReplicatedLinear(bad, "w.weight", 6, 4), file.c_str(), "'w.weight'", "dtype I32",
                        "F32, F16 or BF16", "w.weight_scale_inv");
  EXPECT_ERROR_MENTIONS(load_checked(bad, "norm.weight", {6}), file.c_str(), "'norm.weight'", "dtype I64");
  PlaceOnlyCommunicator rank1(1, 2);
  EXPECT_ERROR_MENTIONS(ColumnParallelLinear(bad, "w.weight", 6, 4, rank1), "'w.weight'", "dtype I32");

  // FP8 is read only with its scales, and the scales must be floats.
  write_safetensors(file, {{"w.weight", w.to_dtype(DType::F8_E4M3)}});
  EXPECT_ERROR_MENTIONS(ReplicatedLinear(Checkpoint(dir.path().string()), "w.weight", 6, 4), file.c_str(),
                        "dtype F8_E4M3", "no 'w.weight_scale_inv'");
  write_safetensors(file, {{"w.weight", w.to_dtype(DType::F8_E4M3)}, {"w.weight_scale_inv", Tensor::empty({1, 1}, DType::I32)}});
  EXPECT_ERROR_MENTIONS(ReplicatedLinear(Checkpoint(dir.path().string()), "w.weight", 6, 4), file.c_str(),
                        "'w.weight_scale_inv'", "dtype I32");
  write_safetensors(file, {{"norm.weight", Tensor::from_f32({6}, std::vector<float>(6, 1.0f)).to_dtype(DType::F8_E4M3)}});
  EXPECT_ERROR_MENTIONS(load_checked(Checkpoint(dir.path().string()), "norm.weight", {6}), "dtype F8_E4M3",
                        "F32, F16 or BF16");
}

// The case: lm_head.weight of a real fixture relabelled I32 (same byte size, a well-formed file) used to
// load and generate garbage. Also a V3 gate bias in one shard of the sharded fixture.
TEST(ParallelLayers, RelabelledFixtureTensorIsRefused) {
  mlarun::testing::ScratchDir dir;
  mlarun::testing::copy_checkpoint(mlarun::testing::data_dir() + "/deepseek-v2-tiny", dir.path().string());
  const std::string file = mlarun::testing::relabel_dtype(dir.path().string(), "lm_head.weight", "I32");
  ASSERT_FALSE(file.empty());
  Checkpoint ckpt(dir.path().string());
  PlaceOnlyCommunicator single(0, 1);
  const Shape shape = ckpt.shape_of("lm_head.weight");
  EXPECT_ERROR_MENTIONS(ParallelLMHead(ckpt, "lm_head.weight", shape[1], shape[0], single), file.c_str(),
                        "'lm_head.weight'", "dtype I32");

  mlarun::testing::ScratchDir v3;
  mlarun::testing::copy_checkpoint(mlarun::testing::data_dir() + "/deepseek-v3-tiny", v3.path().string());
  const std::string bias = "model.layers.1.mlp.gate.e_score_correction_bias";
  const std::string shard = mlarun::testing::relabel_dtype(v3.path().string(), bias, "I32");
  ASSERT_FALSE(shard.empty());
  Checkpoint v3_ckpt(v3.path().string());
  EXPECT_ERROR_MENTIONS(load_checked(v3_ckpt, bias, v3_ckpt.shape_of(bias)), shard.c_str(), bias.c_str(), "dtype I32");
}
