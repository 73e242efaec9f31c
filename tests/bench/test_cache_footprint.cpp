// The cache arithmetic of `bench cache` for DeepSeek-V2 (config_236B), against the DeepSeek-V2 paper's formulas:
// per token per layer, for the model, per rank under tensor parallelism and decode context parallelism (DCP: the
// latent split by token, 1,152 / N bytes per token per layer per rank), in fp8 and int8 with their scales counted
// (MLA 656 B: 512 + 4 x 4 + 2 x 64; a baseline head 128 + 4), with a sliding window (min(L, W) tokens per
// sequence), and in a memory budget; the DCP merge traffic beside the o_proj all-reduce; and the real allocation
// (CachePool + BlockManager on the host, virtual blocks under DCP, quantized rows with their scales) holding the
// computed capacity within 1%.
#include <gtest/gtest.h>

#include <cmath>

#include "bench/cache_footprint.h"
#include "bench/cache_measurement.h"
#include "test_util.h"

using namespace mlarun;

namespace {

ModelConfig v2_236b() { return load_model_config(mlarun::testing::source_dir() + "/configs/config_236B.json"); }

const std::vector<AttentionKind> kAllKinds = {AttentionKind::mla(), AttentionKind::mha(), AttentionKind::gqa(8),
                                              AttentionKind::mqa()};

}  // namespace

TEST(CacheFootprint, Deepseek236BPerTokenMatchesThePaper) {
  ModelConfig c = v2_236b();
  CacheFootprint mla = cache_footprint(c, AttentionKind::mla(), CacheDtype::BF16, 1);
  EXPECT_EQ(mla.elements_per_token_layer, 576);
  EXPECT_EQ(mla.bytes_per_token_layer(), 1152);
  EXPECT_EQ(mla.bytes_per_token(), 69120);
  EXPECT_EQ(mla.bytes_per_token(), c.latent_cache_bytes_per_token(DType::BF16));

  CacheFootprint mha = cache_footprint(c, AttentionKind::mha(), CacheDtype::BF16, 1);
  EXPECT_EQ(mha.kv_heads, 128);
  EXPECT_EQ(mha.elements_per_token_layer, 2 * 128 * 128);
  EXPECT_EQ(mha.bytes_per_token_layer(), 65536);
  EXPECT_NEAR(double(mha.bytes_per_token_layer()) / double(mla.bytes_per_token_layer()), 56.9, 0.05);

  CacheFootprint gqa = cache_footprint(c, AttentionKind::gqa(8), CacheDtype::BF16, 1);
  EXPECT_EQ(gqa.elements_per_token_layer, 2048);
  EXPECT_EQ(gqa.bytes_per_token_layer(), 4096);

  CacheFootprint mqa = cache_footprint(c, AttentionKind::mqa(), CacheDtype::BF16, 1);
  EXPECT_EQ(mqa.elements_per_token_layer, 256);
  EXPECT_EQ(mqa.bytes_per_token_layer(), 512);
  EXPECT_EQ(mqa.bytes_per_token(), 512 * 60);
  EXPECT_EQ(mla.elements_per_token_layer * 60, 34560);  // the paper's Table 9: MLA 34.6K elements per token
}

// fp8/int8: 1 byte per value, an fp32 scale per 128-value tile; MLA keeps its RoPE part in bf16. (Until issue 16
// fp8 counted 576 B for MLA, one byte per value without scales.)
TEST(CacheFootprint, QuantizedCachesCountTheirScales) {
  ModelConfig c = v2_236b();
  EXPECT_EQ(cache_values_bytes(512, CacheDtype::FP8), 512 + 16);
  EXPECT_EQ(cache_values_bytes(129, CacheDtype::INT8), 129 + 8);  // a partial tile still has its scale
  EXPECT_EQ(cache_values_bytes(576, CacheDtype::BF16), 1152);
  for (CacheDtype t : {CacheDtype::FP8, CacheDtype::INT8}) {
    SCOPED_TRACE(cache_dtype_name(t));
    CacheFootprint mla = cache_footprint(c, AttentionKind::mla(), t, 8);  // the check: tp 8
    EXPECT_EQ(mla.bytes_per_token_layer(), 656);                         // 512 + 4 x 4 + 2 x 64
    EXPECT_EQ(mla.bytes_per_token(), 39360);                             // 60 layers
    EXPECT_EQ(mla.bytes_per_token_layer_per_rank(), 656);                // whole on every rank
    EXPECT_EQ(mla.bytes_per_token_per_rank(), 39360);
    EXPECT_EQ(cache_footprint(c, AttentionKind::mla(), t, 8, 8).bytes_per_token_layer_per_rank(), 82);  // dcp 8
    // Baselines: every K and V head of 128 values is 128 + 4 bytes.
    EXPECT_EQ(cache_footprint(c, AttentionKind::mha(), t, 1).bytes_per_token_layer(), 256 * 132);  // 33,792
    EXPECT_EQ(cache_footprint(c, AttentionKind::mha(), t, 8).bytes_per_token_layer_per_rank(), 32 * 132);
    EXPECT_EQ(cache_footprint(c, AttentionKind::gqa(8), t, 1).bytes_per_token_layer(), 16 * 132);  // 2,112
    EXPECT_EQ(cache_footprint(c, AttentionKind::mqa(), t, 8).bytes_per_token_layer_per_rank(), 264);
  }
  for (const AttentionKind& k : kAllKinds)
    for (int64_t tp : {1, 2, 4, 8}) {
      CacheFootprint bf16 = cache_footprint(c, k, CacheDtype::BF16, tp);
      CacheFootprint fp8 = cache_footprint(c, k, CacheDtype::FP8, tp);
      CacheFootprint int8 = cache_footprint(c, k, CacheDtype::INT8, tp);
      EXPECT_EQ(fp8.bytes_per_token_per_rank(), int8.bytes_per_token_per_rank()) << k.name();
      EXPECT_GT(2 * fp8.bytes_per_token_layer_per_rank(), bf16.bytes_per_token_layer_per_rank()) << k.name();
      EXPECT_EQ(fp8.row_elements_per_rank, bf16.row_elements_per_rank) << k.name();
    }
  EXPECT_EQ(footprint_note(cache_footprint(c, AttentionKind::mla(), CacheDtype::FP8, 1)), "");
  EXPECT_NE(cache_byte_rule().find("128"), std::string::npos);
}

TEST(CacheFootprint, SlidingWindowCachesMinOfLengthAndWindowPerSequence) {
  ModelConfig c = v2_236b();
  AttentionKind swa = AttentionKind::sliding(AttentionKind::gqa(8), 4096);
  EXPECT_EQ(swa.name(), "swa:4096/gqa:8");
  EXPECT_EQ(swa.cached_tokens(1000), 1000);
  EXPECT_EQ(swa.cached_tokens(32768), 4096);
  CacheFootprint f = cache_footprint(c, swa, CacheDtype::BF16, 8);
  CacheFootprint g = cache_footprint(c, AttentionKind::gqa(8), CacheDtype::BF16, 8);
  EXPECT_EQ(f.bytes_per_token_layer_per_rank(), g.bytes_per_token_layer_per_rank());  // the heads' row
  EXPECT_NE(footprint_note(f).find("min(L, 4096)"), std::string::npos);
  const int64_t GiB = int64_t(1) << 30;
  BudgetCapacity window = capacity_in_budget(f, GiB, 0, 64), full = capacity_in_budget(g, GiB, 0, 64);
  EXPECT_EQ(window.tokens(), full.tokens());                                   // the same cached rows
  EXPECT_EQ(window.max_full_sequences(4096), full.max_full_sequences(4096));   // L <= W: no gain
  EXPECT_EQ(window.max_full_sequences(32768), window.num_blocks / 64);         // 4,096 cached: 64 blocks
  EXPECT_EQ(full.max_full_sequences(32768), full.num_blocks / 512);
  EXPECT_EQ(window.max_full_sequences(32768), 8 * full.max_full_sequences(32768));  // L / W = 8
  EXPECT_EQ(window.context_tokens(32768), window.max_full_sequences(32768) * 32768);
  EXPECT_DOUBLE_EQ(window.max_concurrency(32768), double(window.tokens()) / 4096);
  EXPECT_EQ(capacity_in_budget(cache_footprint(c, AttentionKind::sliding(AttentionKind::mha(), 100),
                                               CacheDtype::BF16, 1), GiB, 0, 64).max_full_sequences(1000),
            capacity_in_budget(cache_footprint(c, AttentionKind::mha(), CacheDtype::BF16, 1), GiB, 0, 64)
                .max_full_sequences(100));  // ceil(100 / 64) = 2 blocks per sequence
  EXPECT_ERROR_MENTIONS(AttentionKind::sliding(AttentionKind::gqa(8), 0), "window", "0");
  EXPECT_ERROR_MENTIONS(AttentionKind::sliding(AttentionKind::mla(), 4096), "MLA");
}

TEST(CacheFootprint, UnknownCacheDtypeIsNamed) {
  EXPECT_EQ(parse_cache_dtype("int8", "--kv-cache-dtype"), CacheDtype::INT8);
  EXPECT_ERROR_MENTIONS(parse_cache_dtype("int4", "--kv-cache-dtype"), "--kv-cache-dtype", "int4", "bf16, fp8 or int8");
}

TEST(CacheFootprint, PerRankUnderTensorParallelism) {
  ModelConfig c = v2_236b();
  struct Expect {
    AttentionKind kind;
    int64_t per_layer_bytes[4];  // tp 1, 2, 4, 8
  };
  std::vector<Expect> expected = {
      {AttentionKind::mla(), {1152, 1152, 1152, 1152}},       // the latent is whole on every rank
      {AttentionKind::mha(), {65536, 32768, 16384, 8192}},    // heads split
      {AttentionKind::gqa(8), {4096, 2048, 1024, 512}},       // groups split down to one per rank
      {AttentionKind::mqa(), {512, 512, 512, 512}},           // the single head is replicated
  };
  const int64_t tps[4] = {1, 2, 4, 8};
  for (const Expect& e : expected)
    for (int i = 0; i < 4; ++i) {
      CacheFootprint f = cache_footprint(c, e.kind, CacheDtype::BF16, tps[i]);
      EXPECT_EQ(f.bytes_per_token_layer_per_rank(), e.per_layer_bytes[i]) << e.kind.name() << " tp " << tps[i];
      EXPECT_EQ(f.bytes_per_token_per_rank(), e.per_layer_bytes[i] * 60) << e.kind.name() << " tp " << tps[i];
    }
  // GQA groups no further than one per rank: 8 groups over 16 ranks keep one (replicated) group each.
  CacheFootprint g16 = cache_footprint(c, AttentionKind::gqa(8), CacheDtype::BF16, 16);
  EXPECT_EQ(g16.kv_heads_per_rank, 1);
  EXPECT_TRUE(g16.replicated);
  EXPECT_EQ(g16.bytes_per_token_layer_per_rank(), 512);
  EXPECT_FALSE(cache_footprint(c, AttentionKind::gqa(8), CacheDtype::BF16, 8).replicated);
  EXPECT_TRUE(cache_footprint(c, AttentionKind::mla(), CacheDtype::BF16, 8).replicated);
  EXPECT_TRUE(cache_footprint(c, AttentionKind::mqa(), CacheDtype::BF16, 2).replicated);
}

TEST(CacheFootprint, BadTensorParallelDegreeNamesTheHeads) {
  ModelConfig c = v2_236b();
  EXPECT_ERROR_MENTIONS(cache_footprint(c, AttentionKind::mha(), CacheDtype::BF16, 3), "128", "3");
  EXPECT_ERROR_MENTIONS(cache_footprint(c, AttentionKind::mla(), CacheDtype::BF16, 3), "128", "3");
}

TEST(CacheFootprint, TokensThatFitABudget) {
  ModelConfig c = v2_236b();
  const int64_t GiB = int64_t(1) << 30;
  // 80 GiB minus the bf16 weights: 236B at tp 8 leaves about 25 GiB; tp 4 leaves nothing.
  EXPECT_EQ(weight_bytes_per_rank(c, 8), c.num_params() * 2 / 8);
  CacheFootprint mla = cache_footprint(c, AttentionKind::mla(), CacheDtype::BF16, 8);
  BudgetCapacity cap = capacity_in_budget(mla, 80 * GiB, weight_bytes_per_rank(c, 8), 64);
  ASSERT_TRUE(cap.fits());
  EXPECT_EQ(cap.bytes_per_block, 69120 * 64);
  EXPECT_EQ(cap.num_blocks, (80 * GiB - c.num_params() * 2 / 8) / (69120 * 64));
  EXPECT_EQ(cap.tokens(), cap.num_blocks * 64);
  EXPECT_EQ(cap.max_full_sequences(4096), cap.num_blocks / 64);
  EXPECT_NEAR(cap.max_concurrency(4096), double(cap.tokens()) / 4096, 1e-9);
  EXPECT_FALSE(capacity_in_budget(mla, 80 * GiB, weight_bytes_per_rank(c, 4), 64).fits());
  EXPECT_EQ(capacity_in_budget(mla, 80 * GiB, weight_bytes_per_rank(c, 4), 64).tokens(), 0);

  // A plain budget: 1 GiB holds floor(2^30 / (69120 * 16)) blocks of 16 MLA tokens, 16x fewer MHA blocks at tp 8.
  BudgetCapacity one = capacity_in_budget(cache_footprint(c, AttentionKind::mla(), CacheDtype::BF16, 1), GiB, 0, 16);
  EXPECT_EQ(one.num_blocks, GiB / (69120 * 16));
  BudgetCapacity mha = capacity_in_budget(cache_footprint(c, AttentionKind::mha(), CacheDtype::BF16, 8), GiB, 0, 1);
  EXPECT_EQ(mha.tokens(), GiB / (8192 * 60));
}

TEST(CacheMeasurement, RealPoolsHoldTheComputedCapacityWithinOnePercent) {
  ModelConfig c = v2_236b();
  const int64_t budget = int64_t(256) << 20;  // 256 MiB: one MHA block of 64 tokens at tp 1 (60 x 4 MiB) still fits
  for (const AttentionKind& k : kAllKinds)
    for (int64_t tp : {1, 8})
      for (int64_t bs : {1, 16, 64}) {
        CacheFootprint f = cache_footprint(c, k, CacheDtype::BF16, tp);
        CacheMeasurement m = measure_cache_capacity(c, f, budget, bs, 4096, Device::CPU);
        SCOPED_TRACE(k.name() + " tp " + std::to_string(tp) + " block " + std::to_string(bs));
        ASSERT_GT(m.tokens_computed, 0);
        EXPECT_LE(std::fabs(m.deviation()), 0.01);
        EXPECT_EQ(m.row_bytes, f.bytes_per_token_layer_per_rank());  // the layer's row = the formula's
        EXPECT_EQ(m.tokens, m.num_blocks * bs);                         // filled to the last slot
        EXPECT_EQ(m.tokens_verified, m.tokens);                         // every slot read back its owner's mark
        EXPECT_LE(m.pool_bytes, budget);
        if (m.resident_bytes >= 0) {
          EXPECT_GE(double(m.resident_bytes), 0.9 * double(m.pool_bytes));
        }
      }
}

// Quantized pools hold their scales: rows of 656 bytes for MLA (1-byte elements), so fp8 and int8 hold
// 1,152 / 656 times the bf16 tokens, within 1% of the computed capacity, every slot read back.
TEST(CacheMeasurement, QuantizedPoolsHoldTheirScalesWithinOnePercent) {
  ModelConfig c = v2_236b();
  const int64_t budget = int64_t(64) << 20;
  CacheMeasurement bf16 = measure_cache_capacity(c, cache_footprint(c, AttentionKind::mla(), CacheDtype::BF16, 8),
                                                 budget, 16, 4096, Device::CPU);
  for (CacheDtype t : {CacheDtype::FP8, CacheDtype::INT8})
    for (const AttentionKind& k : kAllKinds) {
      SCOPED_TRACE(std::string(cache_dtype_name(t)) + " " + k.name());
      CacheFootprint f = cache_footprint(c, k, t, 8);
      CacheMeasurement m = measure_cache_capacity(c, f, budget, 16, 4096, Device::CPU);
      ASSERT_GT(m.tokens_computed, 0);
      EXPECT_EQ(m.row_bytes, f.row_bytes_per_rank);
      EXPECT_EQ(m.pool_dtype, t == CacheDtype::INT8 ? DType::I8 : DType::F8_E4M3);  // 1-byte elements
      EXPECT_EQ(m.pool_bytes, m.num_blocks * 16 * m.row_bytes * 60);  // the scales are in the pool
      EXPECT_LE(std::fabs(m.deviation()), 0.01);
      EXPECT_EQ(m.tokens_verified, m.tokens);
      if (k.is_mla()) {
        EXPECT_EQ(m.row_bytes, 656);
        EXPECT_NEAR(double(m.tokens) / double(bf16.tokens), 1152.0 / 656.0, 0.02);  // whole blocks of 16
      }
    }
  // A window fills sequences of min(L, W) tokens.
  CacheMeasurement w = measure_cache_capacity(
      c, cache_footprint(c, AttentionKind::sliding(AttentionKind::gqa(8), 1024), CacheDtype::FP8, 8), budget, 16,
      4096, Device::CPU);
  EXPECT_EQ(w.fill_len, 1024);
  EXPECT_LE(std::fabs(w.deviation()), 0.01);
  EXPECT_EQ(w.tokens_verified, w.tokens);
}

TEST(CacheFootprint, DecodeContextParallelSplitsTheLatentByToken) {
  ModelConfig c = v2_236b();
  // The check: tp 8, dcp 8, bf16: 144 B per token per layer per rank.
  CacheFootprint f = cache_footprint(c, AttentionKind::mla(), CacheDtype::BF16, 8, 8);
  EXPECT_EQ(f.bytes_per_token_layer_per_rank(), 144);
  EXPECT_EQ(f.bytes_per_token_per_rank(), 144 * 60);
  EXPECT_EQ(f.row_elements_per_rank, 576);  // a rank's row is whole; it stores 1/8 of the tokens
  EXPECT_FALSE(f.replicated);               // the group is the whole TP group: nothing held twice
  for (int64_t tp : {1, 2, 4, 8, 16})
    for (int64_t n = 1; n <= tp; n *= 2) {
      CacheFootprint g = cache_footprint(c, AttentionKind::mla(), CacheDtype::BF16, tp, n);
      EXPECT_EQ(g.bytes_per_token_layer_per_rank(), 1152.0 / double(n)) << "tp " << tp << " dcp " << n;
      EXPECT_EQ(cache_footprint(c, AttentionKind::mla(), CacheDtype::FP8, tp, n).bytes_per_token_layer_per_rank(),
                656.0 / double(n));  // scales counted
      EXPECT_EQ(g.replicated, tp / n > 1);
    }
  // Capacity: a rank's blocks are the same, the group's virtual blocks hold N times the tokens.
  const int64_t GiB = int64_t(1) << 30;
  BudgetCapacity one = capacity_in_budget(cache_footprint(c, AttentionKind::mla(), CacheDtype::BF16, 8), 80 * GiB,
                                          weight_bytes_per_rank(c, 8), 64);
  BudgetCapacity dcp8 = capacity_in_budget(f, 80 * GiB, weight_bytes_per_rank(c, 8), 64);
  EXPECT_EQ(dcp8.num_blocks, one.num_blocks);
  EXPECT_EQ(dcp8.bytes_per_block, 1152 * 60 * 64);
  EXPECT_EQ(dcp8.virtual_block_size(), 512);
  EXPECT_EQ(dcp8.tokens(), 8 * one.tokens());
  EXPECT_EQ(dcp8.tokens(), (80 * GiB - c.num_params() * 2 / 8) / (144 * 60 * 512) * 512);
  EXPECT_EQ(dcp8.max_full_sequences(4096), dcp8.num_blocks / 8);     // 8 virtual blocks of 512 per sequence
  EXPECT_EQ(dcp8.max_full_sequences(4097), dcp8.num_blocks / 9);     // waste: at most one virtual block
}

TEST(CacheFootprint, BadDecodeContextParallelSizeNamesIt) {
  ModelConfig c = v2_236b();
  EXPECT_ERROR_MENTIONS(cache_footprint(c, AttentionKind::mla(), CacheDtype::BF16, 8, 3), "decode context parallel", "3",
                        "8");
  EXPECT_ERROR_MENTIONS(cache_footprint(c, AttentionKind::mla(), CacheDtype::BF16, 4, 8), "8", "4");
  EXPECT_ERROR_MENTIONS(cache_footprint(c, AttentionKind::mla(), CacheDtype::BF16, 8, 0), "decode context parallel", "0");
  EXPECT_ERROR_MENTIONS(cache_footprint(c, AttentionKind::mha(), CacheDtype::BF16, 8, 2), "MLA only", "mha");
}

TEST(CacheFootprint, DecodeMergeTrafficBesideTheOprojAllReduce) {
  ModelConfig c = v2_236b();
  // tp 8, dcp 8: one group computing all 128 heads. Ring model: all-gather (n-1)/n x total, all-reduce
  // 2 (n-1)/n x size.
  DecodeComm d = decode_comm(c, 8, 8);
  EXPECT_EQ(d.heads_per_rank, 128);
  EXPECT_DOUBLE_EQ(d.lse_all_gather, 7.0 / 8.0 * (8 * 128 * 4));          // 3,584
  EXPECT_DOUBLE_EQ(d.partial_all_reduce, 2 * 7.0 / 8.0 * (128 * 512 * 2));  // 229,376
  EXPECT_DOUBLE_EQ(d.merge(), 3584 + 229376);
  EXPECT_DOUBLE_EQ(d.o_proj_all_reduce, 2 * 7.0 / 8.0 * (5120 * 2));        // 17,920
  DecodeComm d2 = decode_comm(c, 8, 2);  // 4 groups of 2, each 32 heads
  EXPECT_EQ(d2.heads_per_rank, 32);
  EXPECT_DOUBLE_EQ(d2.lse_all_gather, 1.0 / 2.0 * (2 * 32 * 4));
  EXPECT_DOUBLE_EQ(d2.partial_all_reduce, 2 * 1.0 / 2.0 * (32 * 512 * 2));
  DecodeComm none = decode_comm(c, 8, 1);
  EXPECT_EQ(none.merge(), 0);
  EXPECT_DOUBLE_EQ(none.o_proj_all_reduce, 17920);
  EXPECT_EQ(decode_comm(c, 1, 1).o_proj_all_reduce, 0);
  EXPECT_NE(decode_comm_model().find("2 (n-1)/n"), std::string::npos);
}

TEST(CacheMeasurement, DcpGroupHoldsNTimesTheTokensWithinOnePercent) {
  ModelConfig c = v2_236b();
  const int64_t budget = int64_t(64) << 20;  // one rank's pools
  CacheMeasurement plain = measure_cache_capacity(c, cache_footprint(c, AttentionKind::mla(), CacheDtype::BF16, 8), budget,
                                                  16, 4096, Device::CPU);
  for (int64_t n : {2, 8})
    for (int64_t bs : {1, 16, 64}) {
      SCOPED_TRACE("dcp " + std::to_string(n) + " block " + std::to_string(bs));
      CacheFootprint f = cache_footprint(c, AttentionKind::mla(), CacheDtype::BF16, 8, n);
      CacheMeasurement m = measure_cache_capacity(c, f, budget, bs, 4096, Device::CPU);
      ASSERT_GT(m.tokens_computed, 0);
      EXPECT_EQ(m.dcp, n);
      EXPECT_EQ(m.row_width, 576);                          // the layer's row: whole
      EXPECT_LE(std::fabs(m.deviation()), 0.01);
      EXPECT_EQ(m.tokens, m.num_blocks * bs * n);           // every virtual block filled to its last slot
      EXPECT_EQ(m.tokens_verified, m.tokens);               // every token found in exactly its rank's slot
      EXPECT_LE(m.pool_bytes, budget);
      if (bs == 16) {
        EXPECT_EQ(m.tokens, n * plain.tokens);  // same pools, N times the context
      }
      // Sequences of 1000 tokens end in a partly filled virtual block: each rank holds its share of it, and the
      // waste is at most one virtual block per sequence.
      CacheMeasurement partial = measure_cache_capacity(c, f, budget, bs, 1000, Device::CPU);
      EXPECT_EQ(partial.tokens_verified, partial.tokens);
      EXPECT_LE(partial.tokens, partial.num_blocks * bs * n);
      EXPECT_GE(partial.tokens, partial.num_blocks * bs * n - partial.sequences * bs * n);
    }
}
