// The MHA/GQA/MQA baselines over a quantized K/V cache (--kv-cache-dtype fp8|int8, and bf16 on the CPU): every K
// and V head stored in kernels/kv_quant.h's tiles (a head of d values: ceil(d / 128) tiles, here d = 8, one short
// tile), read back dequantized. Bit for bit the same as the unquantized layer attending over K/V that went through
// quantize -> dequantize (kvq::fake_quantize), and within a bound of the unquantized layer itself.
#include <gtest/gtest.h>

#include "bench/baseline_attention.h"
#include "bench/random_weights.h"
#include "kernels/kv_quant.h"
#include "random_model_util.h"
#include "runtime/cache_pool.h"
#include "runtime/runtime_options.h"
#include "test_util.h"

using namespace mlarun;
using mlarun::testing::max_abs;
using mlarun::testing::max_abs_diff;
using mlarun::testing::random_rows;
using mlarun::testing::tiny_random_config;

namespace {

const std::vector<AttentionKind> kBaselines = {AttentionKind::mha(), AttentionKind::gqa(2), AttentionKind::mqa()};
const int64_t kBlockSize = 4;
const std::vector<int32_t> kBlockTable = {3, 0, 5, 1, 4, 2};  // 24 slots, shuffled
// A prefill crossing blocks, a chunk, then decodes: 15 tokens.
const std::vector<std::pair<int64_t, int64_t>> kChunks = {{0, 7}, {7, 5}, {12, 1}, {13, 1}, {14, 1}};
const int64_t kTokens = 15;

ForwardBatch chunk_batch(int64_t start, int64_t n) {
  ForwardBatch b;
  b.add_sequence(std::vector<int32_t>(size_t(n), 0), start, kBlockTable, kBlockSize);
  return b;
}

// One layer's pool in `t`, sized from the layer's row shape as bench decode and a runner size it.
CachePool pool_for(const AttentionLayer& attn, KvCacheDtype t) {
  const KvCacheFormat f = attn.cache_format();
  const KvCacheStorage st = kv_cache_storage(t, DType::F32, f.latent, f.rope, f.head);
  return CachePool::allocate(1, int64_t(kBlockTable.size()), kBlockSize, st.width, st.dtype, Device::CPU);
}

// The chunks through `attn` over a fresh pool of `t`: outputs stacked [kTokens, dim].
Tensor run_chunks(const AttentionLayer& attn, const Tensor& x, const ops::RopeTable& rope, KvCacheDtype t) {
  CachePool pool = pool_for(attn, t);
  Tensor out = Tensor::empty(x.shape(), DType::F32);
  for (auto [start, n] : kChunks) {
    const Tensor y = attn.forward(x.rows(start, n).clone(), chunk_batch(start, n), pool.layers[0], rope);
    ops::copy_into(out.rows(start, n), y);
  }
  return out;
}

// The chunks through `attn` over an f32 pool whose rows are made to hold quantize -> dequantize of what the layer
// wrote: each chunk runs once to write its K/V, its rows are replaced by their fake-quantized values, and it runs
// again without writing (slots -1), attending over exactly those values.
Tensor run_chunks_over_fake_quantized(const AttentionLayer& attn, const Tensor& x, const ops::RopeTable& rope,
                                      KvQuant quant) {
  CachePool pool = pool_for(attn, KvCacheDtype::Auto);
  Tensor& cache = pool.layers[0];
  KvCacheFormat f = attn.cache_format();
  f.quant = quant;
  Tensor out = Tensor::empty(x.shape(), DType::F32);
  for (auto [start, n] : kChunks) {
    ForwardBatch b = chunk_batch(start, n);
    attn.forward(x.rows(start, n).clone(), b, cache, rope);  // writes this chunk's raw K/V rows
    const Tensor written = ops::gather_cache(cache, kBlockTable, start + n).rows(start, n);
    std::vector<float> rows(written.data<float>(), written.data<float>() + written.numel());
    const std::vector<float> faked = kvq::fake_quantize(rows, f);
    Tensor faked_rows = Tensor::empty(written.shape(), DType::F32);
    std::copy(faked.begin(), faked.end(), faked_rows.data<float>());
    ops::write_cache(cache, b.slot_mapping, faked_rows);
    std::fill(b.slot_mapping.begin(), b.slot_mapping.end(), -1);  // attend again, writing nothing
    ops::copy_into(out.rows(start, n), attn.forward(x.rows(start, n).clone(), b, cache, rope));
  }
  return out;
}

}  // namespace

TEST(BaselineKvQuant, PoolRowsFollowTheHeadTileRule) {
  const ModelConfig c = tiny_random_config();
  const int64_t d = baseline_head_dim(c);  // 8: each head one short tile
  SingleCommunicator comm;
  for (const AttentionKind& kind : kBaselines) {
    RandomWeights w(c, kind, 3);
    BaselineAttention attn(c, kind, w, "model.layers.0.self_attn.", comm);
    const int64_t heads = 2 * kind.kv_heads(c);
    EXPECT_EQ(attn.cache_format().head, d);
    EXPECT_EQ(attention_cache_format(c, kind).latent, attn.cache_format().latent);  // without building a layer
    for (KvCacheDtype t : {KvCacheDtype::Fp8, KvCacheDtype::Int8}) {
      const CachePool pool = pool_for(attn, t);
      EXPECT_EQ(pool.layers[0].dim(2), heads * (d + 4)) << kind.name() << " " << kv_cache_dtype_name(t);
    }
    EXPECT_EQ(pool_for(attn, KvCacheDtype::Bf16).layers[0].dtype(), DType::BF16);
  }
}

TEST(BaselineKvQuant, QuantizedKvIsBitExactAgainstFakeQuantizedKv) {
  const ModelConfig c = tiny_random_config();
  const ops::RopeTable rope = ops::make_rope_table(c);
  const Tensor x = random_rows(kTokens, c.dim, 21);
  SingleCommunicator comm;
  for (const AttentionKind& kind : kBaselines) {
    RandomWeights w(c, kind, 4);
    BaselineAttention attn(c, kind, w, "model.layers.0.self_attn.", comm);
    for (auto [t, quant] : {std::pair{KvCacheDtype::Fp8, KvQuant::Fp8}, std::pair{KvCacheDtype::Int8, KvQuant::Int8},
                            std::pair{KvCacheDtype::Bf16, KvQuant::Bf16}}) {
      SCOPED_TRACE(kind.name() + " " + kv_cache_dtype_name(t));
      const Tensor got = run_chunks(attn, x, rope, t);
      const Tensor want = run_chunks_over_fake_quantized(attn, x, rope, quant);
      EXPECT_EQ(max_abs_diff(got, want), 0.0f);
      EXPECT_GT(max_abs(want), 1e-2f);
    }
  }
}

TEST(BaselineKvQuant, QuantizedKvStaysCloseToTheUnquantizedLayer) {
  const ModelConfig c = tiny_random_config();
  const ops::RopeTable rope = ops::make_rope_table(c);
  const Tensor x = random_rows(kTokens, c.dim, 22);
  SingleCommunicator comm;
  for (const AttentionKind& kind : kBaselines) {
    RandomWeights w(c, kind, 5);
    BaselineAttention attn(c, kind, w, "model.layers.0.self_attn.", comm);
    const Tensor exact = run_chunks(attn, x, rope, KvCacheDtype::Auto);
    // Relative to the output's size: e4m3 keeps 3 mantissa bits (about 6% a value at worst), int8 a 127th of
    // each head's amax, bf16 8 bits.
    for (auto [t, bound] : {std::pair{KvCacheDtype::Fp8, 0.1f}, std::pair{KvCacheDtype::Int8, 0.02f},
                            std::pair{KvCacheDtype::Bf16, 0.01f}}) {
      const float err = max_abs_diff(run_chunks(attn, x, rope, t), exact) / max_abs(exact);
      EXPECT_LT(err, bound) << kind.name() << " " << kv_cache_dtype_name(t);
      EXPECT_GT(err, 0.0f) << kind.name() << " " << kv_cache_dtype_name(t) << ": the cache was not quantized";
      std::printf("%s %s: max |diff| / max |out| = %.3g\n", kind.name().c_str(), kv_cache_dtype_name(t), err);
    }
  }
}
