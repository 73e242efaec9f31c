// RoPE, the paged cache and the simple attention kernels on the GPU against the CPU reference, on fresh random
// inputs: YaRN RoPE in both layouts, cache writes with padding slots into a NaN-poisoned pool gathered back
// through shuffled block tables, dense causal attention with GQA and a query offset, and absorbed MLA attention
// over the paged latent cache for a batch of sequences (several query tokens each), with log-sum-exps.
// Skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>

#include "gpu_test_util.h"
#include "kernels/ops.h"
#include "test_util.h"

using namespace mlarun;
using namespace mlarun::testing;

namespace {

// A pool whose every value is NaN, so a read of an unwritten slot shows.
Tensor nan_pool(const Shape& shape, DType dtype) {
  Tensor host = Tensor::empty(shape, DType::F32);
  for (int64_t i = 0; i < host.numel(); ++i) host.data<float>()[i] = NAN;
  return to_gpu(host, dtype);
}

}  // namespace

TEST(GpuOps, RopeYarnBothLayouts) {
  MLARUN_GPU_OR_SKIP();
  std::mt19937 rng(21);
  for (bool interleaved : {true, false}) {
    ModelConfig c;  // DeepSeek defaults: rope dim 64, YaRN factor 40
    c.rope_interleaved = interleaved;
    ops::RopeTable table = ops::make_rope_table(c);
    Tensor x = bf16_rounded(random_f32({5, 3, 192}, rng));  // 128 untouched values, then 64 rotated
    std::vector<int64_t> positions = {0, 1, 4095, 70000, 163839};
    Tensor ref = x.clone();
    ops::apply_rope(ref, positions, table);
    Tensor gx = to_gpu(x);
    ops::apply_rope(gx, positions, table);
    EXPECT_LT(rel_error(to_host(gx), ref), kBf16RelTol) << (interleaved ? "interleaved" : "halves");
    Tensor fx = to_gpu(x, DType::F32);
    ops::apply_rope(fx, positions, table);
    EXPECT_LT(rel_error(to_host(fx), ref), kF32RelTol) << "f32: the same angles and cos/sin as the CPU";
  }
}

TEST(GpuOps, PagedCacheWriteSkipsPaddingAndGatherFollowsTheTable) {
  MLARUN_GPU_OR_SKIP();
  std::mt19937 rng(22);
  const int64_t bs = 4, width = 576;
  std::vector<int32_t> table = {6, 2, 7, 0};  // shuffled; blocks 1, 3, 4, 5 stay NaN
  Tensor rows = bf16_rounded(random_f32({14, width}, rng));
  std::vector<int64_t> slots;
  for (int64_t p = 0; p < 13; ++p) slots.push_back(table[size_t(p / bs)] * bs + p % bs);
  slots.push_back(-1);  // padding row: never written
  Tensor pool = nan_pool({8, bs, width}, DType::BF16);
  ops::write_cache(pool, slots, to_gpu(rows));
  EXPECT_TRUE(bitwise_equal(to_host(ops::gather_cache(pool, table, 13)), rows.rows(0, 13).clone()));
  EXPECT_ERROR_MENTIONS(ops::gather_cache(pool, {6, 2, 9, 0}, 13), "block 9");
}

TEST(GpuOps, CausalAttentionWithGqaOffsetAndLse) {
  MLARUN_GPU_OR_SKIP();
  std::mt19937 rng(23);
  struct Case { int64_t Tq, Tk, H, Hkv, D, Dv; };
  for (Case k : {Case{4, 9, 6, 2, 16, 5}, Case{17, 17, 16, 16, 192, 128}, Case{33, 70, 8, 1, 128, 128}}) {
    Tensor q = bf16_rounded(random_f32({k.Tq, k.H, k.D}, rng)), kk = bf16_rounded(random_f32({k.Tk, k.Hkv, k.D}, rng));
    Tensor v = bf16_rounded(random_f32({k.Tk, k.Hkv, k.Dv}, rng));
    const float scale = 1.0f / std::sqrt(float(k.D));
    Tensor ref_lse, lse;
    Tensor ref = ops::attention(q, kk, v, scale, k.Tk - k.Tq, &ref_lse);
    Tensor o = ops::attention(to_gpu(q), to_gpu(kk), to_gpu(v), scale, k.Tk - k.Tq, &lse);
    EXPECT_LT(rel_error(to_host(o), ref), kBf16RelTol) << k.Tq << " queries over " << k.Tk << " keys";
    EXPECT_LT(rel_error(to_host(lse), ref_lse), kF32RelTol * 10);
  }
}

TEST(GpuOps, MlaPagedAttentionBatchOfSequences) {
  MLARUN_GPU_OR_SKIP();
  std::mt19937 rng(24);
  const int64_t bs = 16, R = 512, width = 576, H = 16, blocks = 40;
  // Three sequences: a decode token at length 1, three query tokens at the end of 70, one decode at 300.
  struct Seq { int64_t ctx, n; };
  std::vector<Seq> seqs = {{1, 1}, {70, 3}, {300, 1}};
  std::vector<int32_t> free_blocks(blocks);
  for (int64_t b = 0; b < blocks; ++b) free_blocks[size_t(b)] = int32_t(b);
  std::shuffle(free_blocks.begin(), free_blocks.end(), rng);
  Tensor pool_host = Tensor::empty({blocks, bs, width}, DType::F32);
  for (int64_t i = 0; i < pool_host.numel(); ++i) pool_host.data<float>()[i] = NAN;
  std::vector<BatchSequence> batch;
  int64_t token = 0;
  size_t next = 0;
  for (const Seq& s : seqs) {
    BatchSequence b{token, s.n, s.ctx - s.n, {}};
    for (int64_t j = 0; j < (s.ctx + bs - 1) / bs; ++j) b.block_table.push_back(free_blocks[next++]);
    Tensor rows = bf16_rounded(random_f32({s.ctx, width}, rng));
    for (int64_t p = 0; p < s.ctx; ++p)
      std::copy(rows.data<float>() + p * width, rows.data<float>() + (p + 1) * width,
                pool_host.data<float>() + (b.block_table[size_t(p / bs)] * bs + p % bs) * width);
    batch.push_back(b);
    token += s.n;
  }
  Tensor q = bf16_rounded(random_f32({token + 1, H, width}, rng, 0.1f));  // the last row belongs to no sequence
  const float scale = 0.1147f;
  Tensor ref_lse, lse;
  Tensor ref = ops::mla_paged_attention(q, pool_host, batch, R, scale, &ref_lse);
  Tensor o = ops::mla_paged_attention(to_gpu(q), to_gpu(pool_host), batch, R, scale, &lse);
  EXPECT_LT(rel_error(to_host(o), ref), kBf16RelTol);
  Tensor host_lse = to_host(lse);
  EXPECT_LT(rel_error(host_lse.rows(0, token).clone(), ref_lse.rows(0, token).clone()), kF32RelTol * 10);
  for (int64_t h = 0; h < H; ++h) EXPECT_EQ(host_lse.data<float>()[token * H + h], -INFINITY) << "unowned row";
  // One sequence through the single-sequence form gives the same rows.
  Tensor one = ops::mla_paged_attention(to_gpu(q.rows(1, 3).clone()), to_gpu(pool_host), batch[1].block_table, R, scale,
                                        batch[1].start_pos);
  EXPECT_TRUE(bitwise_equal(to_host(one), to_host(o).rows(1, 3).clone()));
}
