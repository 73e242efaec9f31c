// Parallel layers load exactly their slice, and FP8 weights are dequantised with their 128x128 block scales
// (docs/model.md §5), whole or sharded, checked against values computed here.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "parallel/parallel_layers.h"
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
