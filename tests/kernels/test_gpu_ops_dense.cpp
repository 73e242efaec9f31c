// The dense and data-movement CUDA ops against their CPU reference on fresh random inputs: linear (bf16 and f32,
// bf16 -> f32 output), head_linear, MLA's up-projection, add, rms_norm and its fused residual form, silu_mul,
// embedding, conversions, column slices, concatenation with head broadcast, transposes, row gathers and the
// weighted scatter-add. The CPU reference gets the bf16-rounded inputs, so only the GPU's own rounding and
// summation order differ; copies must be exact. Skips without a GPU.
#include <gtest/gtest.h>

#include "gpu_test_util.h"
#include "kernels/ops.h"

using namespace mlarun;
using namespace mlarun::testing;

TEST(GpuOps, LinearBf16F32AndF32Output) {
  MLARUN_GPU_OR_SKIP();
  std::mt19937 rng(11);
  for (auto [M, N, K] : {std::tuple<int64_t, int64_t, int64_t>{1, 64, 96}, {37, 130, 200}, {256, 512, 384}}) {
    Tensor x = bf16_rounded(random_f32({M, K}, rng)), w = bf16_rounded(random_f32({N, K}, rng, 0.1f));
    Tensor ref = ops::linear(x, w);
    EXPECT_LT(rel_error(to_host(ops::linear(to_gpu(x), to_gpu(w))), ref), kBf16RelTol) << M << "x" << N << "x" << K;
    Tensor f32_out = ops::linear(to_gpu(x), to_gpu(w), DType::F32);
    EXPECT_EQ(f32_out.dtype(), DType::F32);
    EXPECT_LT(rel_error(to_host(f32_out), ref), kF32RelTol * 10) << "bf16 x bf16 -> f32 keeps the accumulator";
    EXPECT_LT(rel_error(to_host(ops::linear(to_gpu(x, DType::F32), to_gpu(w, DType::F32))), ref), kF32RelTol);
  }
  // Leading dimensions fold into M.
  Tensor x3 = bf16_rounded(random_f32({3, 5, 16}, rng)), w = bf16_rounded(random_f32({8, 16}, rng));
  Tensor y3 = ops::linear(to_gpu(x3), to_gpu(w));
  EXPECT_EQ(y3.shape(), (Shape{3, 5, 8}));
  EXPECT_LT(rel_error(to_host(y3), ops::linear(x3, w)), kBf16RelTol);
}

TEST(GpuOps, HeadLinearIsOneStridedBatchedProduct) {
  MLARUN_GPU_OR_SKIP();
  std::mt19937 rng(12);
  for (auto [T, H, K, N] : {std::tuple<int64_t, int64_t, int64_t, int64_t>{1, 128, 128, 512}, {7, 16, 512, 128}, {3, 5, 24, 40}}) {
    Tensor x = bf16_rounded(random_f32({T, H, K}, rng)), w = bf16_rounded(random_f32({H, N, K}, rng, 0.05f));
    EXPECT_LT(rel_error(to_host(ops::head_linear(to_gpu(x), to_gpu(w))), ops::head_linear(x, w)), kBf16RelTol)
        << T << " tokens, " << H << " heads";
  }
}

// MLA's naive-path K and V written in place by two strided-batched GEMMs and the rope columns' copy: the shapes of
// DeepSeek-V2/V3 (16 heads), v dim != nope dim, and odd sizes that leave cuBLAS and the copy unaligned.
TEST(GpuOps, MlaUpProjectMatchesItsCpuReference) {
  MLARUN_GPU_OR_SKIP();
  std::mt19937 rng(16);
  for (auto [n, H, nope, vd, R, Dr] : {std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t>{
                                           300, 16, 128, 128, 512, 64},
                                       {5, 2, 128, 64, 512, 64},
                                       {37, 3, 5, 7, 24, 6}}) {
    Tensor rows = bf16_rounded(random_f32({n, R + Dr}, rng));
    Tensor w = bf16_rounded(random_f32({H * (nope + vd), R}, rng, 0.05f));
    const ops::KeysValues want = ops::mla_up_project(rows, w, nope, vd);
    for (DType dtype : {DType::BF16, DType::F32}) {
      const ops::KeysValues got = ops::mla_up_project(to_gpu(rows, dtype), to_gpu(w, dtype), nope, vd);
      ASSERT_EQ(got.k.shape(), want.k.shape());
      ASSERT_EQ(got.v.shape(), want.v.shape());
      EXPECT_LT(rel_error(to_host(got.k), want.k), kBf16RelTol) << n << " rows, " << H << " heads";
      EXPECT_LT(rel_error(to_host(got.v), want.v), kBf16RelTol) << n << " rows, " << H << " heads";
      // The rope columns are copies.
      EXPECT_TRUE(
          bitwise_equal(to_host(ops::narrow_last_dim(got.k, nope, Dr)), ops::narrow_last_dim(want.k, nope, Dr)));
    }
  }
}

TEST(GpuOps, AddRmsNormFusedResidualAndSiluMul) {
  MLARUN_GPU_OR_SKIP();
  std::mt19937 rng(13);
  Tensor a = bf16_rounded(random_f32({9, 320}, rng)), b = bf16_rounded(random_f32({9, 320}, rng));
  Tensor w = bf16_rounded(random_f32({320}, rng, 0.05f, 1.0f));
  EXPECT_LT(rel_error(to_host(ops::add(to_gpu(a), to_gpu(b))), ops::add(a, b)), kBf16RelTol);
  EXPECT_LT(rel_error(to_host(ops::rms_norm(to_gpu(a), to_gpu(w), 1e-6f)), ops::rms_norm(a, w, 1e-6f)), kBf16RelTol);

  Tensor residual = to_gpu(a), cpu_residual = a.clone();
  Tensor normed = ops::add_rms_norm(residual, to_gpu(b), to_gpu(w), 1e-6f);
  Tensor cpu_normed = ops::add_rms_norm(cpu_residual, b, w, 1e-6f);
  EXPECT_LT(rel_error(to_host(residual), cpu_residual), kBf16RelTol) << "the residual is updated in place";
  EXPECT_LT(rel_error(to_host(normed), cpu_normed), kBf16RelTol);

  Tensor g = bf16_rounded(random_f32({4, 1000}, rng, 3.0f)), u = bf16_rounded(random_f32({4, 1000}, rng));
  EXPECT_LT(rel_error(to_host(ops::silu_mul(to_gpu(g), to_gpu(u))), ops::silu_mul(g, u)), kBf16RelTol);
  Tensor af = random_f32({1000}, rng), bf = random_f32({1000}, rng);
  Tensor sum = to_gpu(af, DType::F32);
  ops::add_inplace(sum, to_gpu(bf, DType::F32));
  EXPECT_TRUE(bitwise_equal(to_host(sum), ops::add(af, bf))) << "f32 addition is exact";
}

TEST(GpuOps, EmbeddingWithVocabStartAndConversions) {
  MLARUN_GPU_OR_SKIP();
  std::mt19937 rng(14);
  Tensor table = bf16_rounded(random_f32({50, 24}, rng));
  std::vector<int32_t> ids = {100, 99, 149, 150, 0, 120, 100};  // shard [100, 150); outside rows become zeros
  EXPECT_TRUE(bitwise_equal(to_host(ops::embedding(ids, to_gpu(table), 100)), ops::embedding(ids, table, 100)));

  Tensor x = random_f32({3, 77}, rng);
  Tensor to_bf16 = ops::convert(to_gpu(x, DType::F32), DType::BF16);
  EXPECT_EQ(to_bf16.dtype(), DType::BF16);
  EXPECT_TRUE(bitwise_equal(to_host(to_bf16), bf16_rounded(x))) << "round to nearest even, as the host does";
  EXPECT_TRUE(bitwise_equal(to_host(ops::convert(to_bf16, DType::F32)), bf16_rounded(x)));
  EXPECT_TRUE(bitwise_equal(ops::to_host_f32(to_bf16), bf16_rounded(x)));
}

TEST(GpuOps, SlicesConcatTransposeGatherAreExactCopies) {
  MLARUN_GPU_OR_SKIP();
  std::mt19937 rng(15);
  for (DType dtype : {DType::BF16, DType::F32}) {
    Tensor x = bf16_rounded(random_f32({6, 4, 40}, rng));
    Tensor gx = to_gpu(x, dtype);
    EXPECT_TRUE(bitwise_equal(to_host(ops::narrow_last_dim(gx, 7, 25)), ops::narrow_last_dim(x, 7, 25)));
    Tensor b = bf16_rounded(random_f32({6, 1, 9}, rng));  // one row per token, repeated for the 4 heads
    EXPECT_TRUE(bitwise_equal(to_host(ops::concat_last_dim(gx, to_gpu(b, dtype))), ops::concat_last_dim(x, b)));
    Tensor same = bf16_rounded(random_f32({6, 4, 3}, rng));
    EXPECT_TRUE(bitwise_equal(to_host(ops::concat_last_dim(gx, to_gpu(same, dtype))), ops::concat_last_dim(x, same)));
    // Widths, columns and rows that allow 16-, 8- and 4-byte units in the column copies.
    Tensor wide = bf16_rounded(random_f32({6, 4, 192}, rng)), gwide = to_gpu(wide, dtype);
    for (auto [start, len] : {std::pair<int64_t, int64_t>{64, 128}, {4, 8}, {2, 2}, {128, 64}})
      EXPECT_TRUE(
          bitwise_equal(to_host(ops::narrow_last_dim(gwide, start, len)), ops::narrow_last_dim(wide, start, len)))
          << start << " + " << len;
    Tensor rope = bf16_rounded(random_f32({6, 1, 64}, rng));
    EXPECT_TRUE(
        bitwise_equal(to_host(ops::concat_last_dim(gwide, to_gpu(rope, dtype))), ops::concat_last_dim(wide, rope)));
    EXPECT_TRUE(bitwise_equal(to_host(ops::transpose_last_two(gx)), ops::transpose_last_two(x)));
    std::vector<int64_t> rows = {5, 0, 0, 3, 2};
    EXPECT_TRUE(bitwise_equal(to_host(ops::gather_rows(gx, rows)), ops::gather_rows(x, rows)));
    Tensor dst = ops::narrow_last_dim(gx, 0, 40).clone();
    ops::copy_into(dst.rows(2, 3), ops::gather_rows(gx, {0, 1, 2}));
    Tensor host_dst = x.clone();
    ops::copy_into(host_dst.rows(2, 3), ops::gather_rows(x, {0, 1, 2}));
    EXPECT_TRUE(bitwise_equal(to_host(dst), host_dst));
  }
}

TEST(GpuOps, ScatterAddRowsSumsInListOrder) {
  MLARUN_GPU_OR_SKIP();
  std::mt19937 rng(16);
  Tensor dst = random_f32({10, 33}, rng), src = bf16_rounded(random_f32({12, 33}, rng));
  std::vector<int64_t> rows = {3, 7, 3, 0, 9, 3, 7, 1, 1, 4, 9, 3};
  std::vector<float> weights;
  for (size_t i = 0; i < rows.size(); ++i) weights.push_back(0.1f * float(i + 1));
  Tensor ref = dst.clone();
  ops::scatter_add_rows(ref, rows, src, weights);
  Tensor gpu_dst = to_gpu(dst, DType::F32);
  ops::scatter_add_rows(gpu_dst, rows, to_gpu(src), weights);  // f32 destination, bf16 source (the MoE combine)
  EXPECT_LT(rel_error(to_host(gpu_dst), ref), kF32RelTol);
  Tensor bf16_dst = to_gpu(dst);
  ops::scatter_add_rows(bf16_dst, rows, to_gpu(src), weights);
  EXPECT_LT(rel_error(to_host(bf16_dst), ref), kBf16RelTol);
}
