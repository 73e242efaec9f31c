// The ops added so the model never touches memory itself (slices, concatenation, transposes, row gathers and
// scatter-adds, copies into views, conversions, the fused residual norm, the MoE token permutation, batched paged
// MLA attention, batch sampling) against straightforward loops written here; plus the device-independent pieces of
// the GPU path that run on any machine: placement, allocator rounding, stream guards. (Cache planning by dtype is
// an engine matter: tests/engine/test_cache_plan.cpp.)
#include <gtest/gtest.h>

#include <random>

#include "kernels/cpu/sampling.h"
#include "kernels/ops.h"
#include "runtime/device.h"
#include "runtime/device_allocator.h"
#include "runtime/placement.h"
#include "test_util.h"

using namespace mlarun;

namespace {

Tensor random_tensor(const Shape& shape, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  Tensor t = Tensor::empty(shape, DType::F32);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

float at(const Tensor& t, int64_t i) { return t.data<float>()[i]; }

}  // namespace

TEST(CpuDataOps, NarrowConcatTransposeAreTheObviousLoops) {
  std::mt19937 rng(1);
  Tensor x = random_tensor({3, 4, 10}, rng);
  Tensor n = ops::narrow_last_dim(x, 6, 3);
  ASSERT_EQ(n.shape(), (Shape{3, 4, 3}));
  for (int64_t r = 0; r < 12; ++r)
    for (int64_t j = 0; j < 3; ++j) EXPECT_EQ(at(n, r * 3 + j), at(x, r * 10 + 6 + j));

  Tensor b = random_tensor({3, 1, 2}, rng);  // broadcast over the 4 heads
  Tensor c = ops::concat_last_dim(x, b);
  ASSERT_EQ(c.shape(), (Shape{3, 4, 12}));
  for (int64_t t = 0; t < 3; ++t)
    for (int64_t h = 0; h < 4; ++h) {
      for (int64_t j = 0; j < 10; ++j) EXPECT_EQ(at(c, (t * 4 + h) * 12 + j), at(x, (t * 4 + h) * 10 + j));
      for (int64_t j = 0; j < 2; ++j) EXPECT_EQ(at(c, (t * 4 + h) * 12 + 10 + j), at(b, t * 2 + j));
    }
  Tensor same = random_tensor({3, 4, 5}, rng);
  Tensor c2 = ops::concat_last_dim(x, same);
  for (int64_t r = 0; r < 12; ++r) EXPECT_EQ(at(c2, r * 15 + 10 + 4), at(same, r * 5 + 4));
  EXPECT_ERROR_MENTIONS(ops::concat_last_dim(x, random_tensor({3, 2, 5}, rng)), "concat_last_dim", "[3, 2, 5]");
  EXPECT_ERROR_MENTIONS(ops::narrow_last_dim(x, 8, 3), "narrow_last_dim", "[8, 11)");

  Tensor tr = ops::transpose_last_two(x);
  ASSERT_EQ(tr.shape(), (Shape{3, 10, 4}));
  for (int64_t t = 0; t < 3; ++t)
    for (int64_t p = 0; p < 4; ++p)
      for (int64_t q = 0; q < 10; ++q) EXPECT_EQ(at(tr, (t * 10 + q) * 4 + p), at(x, (t * 4 + p) * 10 + q));
}

TEST(CpuDataOps, GatherScatterAndCopyIntoViews) {
  std::mt19937 rng(2);
  Tensor x = random_tensor({6, 5}, rng);
  std::vector<int64_t> rows = {4, 1, 4, 0};
  Tensor g = ops::gather_rows(x, rows);
  for (size_t i = 0; i < rows.size(); ++i)
    for (int64_t d = 0; d < 5; ++d) EXPECT_EQ(at(g, int64_t(i) * 5 + d), at(x, rows[i] * 5 + d));
  EXPECT_ERROR_MENTIONS(ops::gather_rows(x, {6}), "gather_rows", "row 6");

  Tensor dst = random_tensor({6, 5}, rng), want = dst.clone();
  std::vector<float> w = {0.5f, -2.0f, 0.25f, 3.0f};
  ops::scatter_add_rows(dst, rows, g, w);
  for (size_t i = 0; i < rows.size(); ++i)  // in list order, as the MoE combine needs
    for (int64_t d = 0; d < 5; ++d) want.data<float>()[rows[i] * 5 + d] += w[i] * at(g, int64_t(i) * 5 + d);
  for (int64_t i = 0; i < 30; ++i) EXPECT_EQ(at(dst, i), at(want, i));
  EXPECT_ERROR_MENTIONS(ops::scatter_add_rows(dst, {1}, g, {1.0f}), "scatter_add_rows");

  Tensor target = Tensor::zeros({6, 5}, DType::F32);
  ops::copy_into(target.rows(2, 4), g);
  for (int64_t i = 0; i < 10; ++i) EXPECT_EQ(at(target, i), 0.0f);
  for (int64_t i = 0; i < 20; ++i) EXPECT_EQ(at(target, 10 + i), at(g, i));
  EXPECT_ERROR_MENTIONS(ops::copy_into(target.rows(0, 3), g), "copy_into");
}

TEST(CpuDataOps, ConvertFusedNormAndLinearOutputDtype) {
  std::mt19937 rng(3);
  Tensor x = random_tensor({4, 8}, rng);
  EXPECT_EQ(ops::convert(x, DType::F32).raw(), x.raw()) << "no copy when nothing changes";
  Tensor b = ops::convert(x, DType::BF16);
  EXPECT_EQ(b.dtype(), DType::BF16);
  Tensor back = ops::to_host_f32(b);
  for (int64_t i = 0; i < 32; ++i) EXPECT_EQ(at(back, i), bf16_to_float(float_to_bf16(at(x, i))));

  Tensor residual = x.clone(), delta = random_tensor({4, 8}, rng), w = random_tensor({8}, rng);
  Tensor fused = ops::add_rms_norm(residual, delta, w, 1e-6f);
  Tensor sum = ops::add(x, delta), plain = ops::rms_norm(sum, w, 1e-6f);
  for (int64_t i = 0; i < 32; ++i) {
    EXPECT_EQ(at(residual, i), at(sum, i));
    EXPECT_EQ(at(fused, i), at(plain, i));
  }

  Tensor wl = random_tensor({3, 8}, rng);
  Tensor y = ops::linear(x, wl), y32 = ops::linear(x, wl, DType::F32);
  for (int64_t i = 0; i < 12; ++i) EXPECT_EQ(at(y, i), at(y32, i));
  EXPECT_ERROR_MENTIONS(ops::linear(x, wl, DType::BF16), "linear", "f32");
  EXPECT_ERROR_MENTIONS(ops::rms_norm(b, w, 1e-6f), "rms_norm", "expected f32");
}

TEST(CpuDataOps, GroupByExpertIsACountingSortByExpertThenToken) {
  ops::Routing r{Tensor::empty({4, 2}, DType::I32), Tensor::empty({4, 2}, DType::F32)};
  const int32_t experts[] = {3, 1, 1, 2, 5, 3, 2, 1};
  for (int i = 0; i < 8; ++i) {
    r.experts.data<int32_t>()[i] = experts[i];
    r.weights.data<float>()[i] = 0.1f * float(i);
  }
  ops::ExpertGroups g = ops::group_by_expert(r, 1, 3);  // experts 1, 2, 3 live here; 5 elsewhere
  EXPECT_EQ(g.offsets, (std::vector<int64_t>{0, 3, 5, 7}));
  EXPECT_EQ(g.tokens, (std::vector<int64_t>{0, 1, 3, 1, 3, 0, 2}));
  EXPECT_EQ(g.weights[0], 0.1f);   // token 0's second choice (expert 1)
  EXPECT_EQ(g.weights[5], 0.0f);   // token 0's first choice (expert 3)
}

TEST(CpuDataOps, BatchedMlaAttentionEqualsOneSequenceAtATime) {
  std::mt19937 rng(4);
  const int64_t bs = 3, width = 9, R = 6, H = 2;
  Tensor pool = random_tensor({12, bs, width}, rng);
  std::vector<BatchSequence> seqs = {{0, 2, 4, {5, 1}}, {2, 1, 0, {7}}, {3, 3, 5, {0, 9, 11}}};
  Tensor q = random_tensor({7, H, width}, rng);  // row 6 belongs to no sequence
  Tensor lse;
  Tensor o = ops::mla_paged_attention(q, pool, seqs, R, 0.3f, &lse);
  for (const BatchSequence& s : seqs) {
    Tensor one_lse;
    Tensor one = ops::mla_paged_attention(q.rows(s.token_start, s.num_tokens).clone(), pool, s.block_table, R, 0.3f,
                                          s.start_pos, &one_lse);
    for (int64_t i = 0; i < one.numel(); ++i) EXPECT_EQ(at(o, s.token_start * H * R + i), at(one, i));
    for (int64_t i = 0; i < one_lse.numel(); ++i) EXPECT_EQ(at(lse, s.token_start * H + i), at(one_lse, i));
  }
  for (int64_t i = 0; i < H * R; ++i) EXPECT_EQ(at(o, 6 * H * R + i), 0.0f);
  EXPECT_ERROR_MENTIONS(ops::mla_paged_attention(q, pool, {{5, 3, 0, {1}}}, R, 0.3f), "mla_paged_attention", "[5, 8)");
}

TEST(CpuDataOps, BatchSamplingIsTheHostSamplerWithGivenUniforms) {
  std::mt19937 rng(5);
  Tensor logits = random_tensor({5, 50}, rng);
  std::vector<SamplingParams> params(5);
  std::vector<double> uniforms = {0.1, 0.5, 0.9, 0.999, 0.0};
  params[1].temperature = 0.8;
  params[2].temperature = 1.2, params[2].top_k = 5;
  params[3].temperature = 1.0, params[3].top_p = 0.7;
  params[4].temperature = 0.5, params[4].top_k = 10, params[4].top_p = 0.9;
  std::vector<int32_t> tokens = ops::sample_rows(logits, params, uniforms);
  for (int64_t r = 0; r < 5; ++r) {
    const float* row = logits.data<float>() + r * 50;
    EXPECT_EQ(tokens[size_t(r)], sample_with_uniform(row, 50, params[size_t(r)], uniforms[size_t(r)]));
    std::mt19937_64 a(r), b(r);  // sample() draws exactly the one uniform sample_with_uniform is given
    if (params[size_t(r)].temperature > 0) {
      EXPECT_EQ(sample(row, 50, params[size_t(r)], a), sample_with_uniform(row, 50, params[size_t(r)], uniform_unit(b)));
    }
  }
  EXPECT_EQ(tokens[0], argmax_token(logits.data<float>(), 50));
  std::vector<int32_t> am = ops::argmax_rows(logits);
  for (int64_t r = 0; r < 5; ++r) EXPECT_EQ(am[size_t(r)], argmax_token(logits.data<float>() + r * 50, 50));
  EXPECT_ERROR_MENTIONS(ops::sample_rows(logits, params, {0.1, 0.2}), "sample_rows", "5 rows");
  EXPECT_ERROR_MENTIONS(ops::sample_rows(logits, params, {0.1, 0.5, 1.0, 0.2, 0.3}), "uniform 1");
}

TEST(CpuDataOps, PlacementAllocatorAndStreams) {
  std::mt19937 rng(6);
  Tensor w = random_tensor({4, 4}, rng);
  EXPECT_EQ(Placement::cpu().place(w).raw(), w.raw());
  Tensor half = Placement{Device::CPU, DType::BF16}.place(w);
  EXPECT_EQ(half.dtype(), DType::BF16);
  EXPECT_EQ(Placement::for_device(Device::CUDA), Placement::cuda_bf16());
  EXPECT_EQ(Placement::cuda_bf16().describe(), "cuda bf16");
  if (!gpu_available()) {
    EXPECT_ERROR_MENTIONS(Placement::cuda_bf16().place(w), "GPU");
  }

  EXPECT_EQ(DeviceAllocator::round_size(1), 512u);
  EXPECT_EQ(DeviceAllocator::round_size(513), 1024u);
  EXPECT_EQ(DeviceAllocator::round_size((size_t(1) << 20) + 1), size_t(2) << 20);

  EXPECT_EQ(current_stream(), nullptr);
  {
    StreamGuard outer(reinterpret_cast<StreamHandle>(0x10));
    {
      StreamGuard inner(reinterpret_cast<StreamHandle>(0x20));
      EXPECT_EQ(current_stream(), reinterpret_cast<StreamHandle>(0x20));
    }
    EXPECT_EQ(current_stream(), reinterpret_cast<StreamHandle>(0x10));
  }
  EXPECT_EQ(current_stream(), nullptr);
}
