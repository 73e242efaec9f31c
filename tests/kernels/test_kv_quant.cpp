// The latent-cache quantizer (kernels/kv_quant.h), bit for bit: e4m3 rounding against a table and against the
// exhaustive search in runtime/dtype.cpp, int8 rounding, the scale rules, the row's byte layout (a row of heads
// tiled head by head too), saturation, amax 0, NaN and inf, and the CPU cache ops writing and reading through it.
// These bits are what the Python reference (tests/tools/make_kv_quant_references.py) reproduces, so they must not
// drift.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "kernels/kv_quant.h"
#include "kernels/ops.h"
#include "runtime/dtype.h"
#include "test_util.h"

using namespace mlarun;
using namespace mlarun::kvq;

namespace {
const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

float scale_at(const std::vector<uint8_t>& row, const KvCacheFormat& f, int64_t tile) {
  float s;
  std::memcpy(&s, row.data() + f.scales_offset() + 4 * tile, 4);
  return s;
}
}  // namespace

TEST(KvQuant, E4m3RoundsToNearestEvenAndSaturates) {
  struct Case {
    float x;
    uint8_t code;
  };
  const Case table[] = {
      {0.0f, 0x00},         {-0.0f, 0x80},        {1.0f, 0x38},          {-1.0f, 0xb8},
      {448.0f, 0x7e},       {-448.0f, 0xfe},      {449.0f, 0x7e},        {464.0f, 0x7e},   // saturated
      {1e9f, 0x7e},         {-1e9f, 0xfe},        {kInf, 0x7e},          {-kInf, 0xfe},
      {kNaN, 0x7f},         {0x1p-9f, 0x01},      {0x1p-10f, 0x00},      {0x1.8p-9f, 0x02},  // subnormal ties
      {0x1p-6f, 0x08},      {0x1.cp-7f, 0x07},    {0x1.ep-7f, 0x08},     {0x1p-7f, 0x04},
      {1.0625f, 0x38},      {1.1875f, 0x3a},      {15.5f, 0x58},         {240.0f, 0x77},
      {416.0f, 0x7d},       {432.0f, 0x7e},       {0.1f, 0x1d},          {-3.14159f, 0xc5},
      {1e-4f, 0x00},        {0x1.2p-10f, 0x01},
  };
  for (const Case& c : table) EXPECT_EQ(int(float_to_e4m3(c.x)), int(c.code)) << "x = " << c.x;
}

TEST(KvQuant, E4m3MatchesTheExhaustiveSearchEverywhere) {
  // Every finite code round-trips; every midpoint between neighbours, and one ulp either side, rounds as the
  // nearest-even search of runtime/dtype.cpp says; so do random values over the whole range.
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7f) == 0x7f) continue;
    EXPECT_EQ(int(float_to_e4m3(fp8_e4m3_to_float(uint8_t(c)))), c);
  }
  std::vector<float> probes;
  for (int c = 0; c < 0x7e; ++c) {
    const float mid = (fp8_e4m3_to_float(uint8_t(c)) + fp8_e4m3_to_float(uint8_t(c + 1))) / 2;
    for (float v : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e9f)}) {
      probes.push_back(v);
      probes.push_back(-v);
    }
  }
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> exponent(-14.0f, 9.5f);
  for (int i = 0; i < 20000; ++i) probes.push_back((i % 2 ? 1 : -1) * std::exp2(exponent(rng)));
  for (float v : probes) ASSERT_EQ(int(float_to_e4m3(v)), int(float_to_fp8_e4m3(v))) << "x = " << v;
}

TEST(KvQuant, Int8RoundsHalfToEvenAndClamps) {
  EXPECT_EQ(float_to_int8(2.5f), 2);
  EXPECT_EQ(float_to_int8(3.5f), 4);
  EXPECT_EQ(float_to_int8(-2.5f), -2);
  EXPECT_EQ(float_to_int8(-0.5f), 0);
  EXPECT_EQ(float_to_int8(126.6f), 127);
  EXPECT_EQ(float_to_int8(127.49f), 127);
  EXPECT_EQ(float_to_int8(200.0f), 127);
  EXPECT_EQ(float_to_int8(-200.0f), -127);  // symmetric: -128 is never used
  EXPECT_EQ(float_to_int8(kNaN), 0);
}

TEST(KvQuant, ScaleRules) {
  EXPECT_EQ(fp8_tile_scale(448.0f), 1.0f);
  EXPECT_EQ(fp8_tile_scale(449.0f), 2.0f);  // the power of two at or above amax / 448
  EXPECT_EQ(fp8_tile_scale(224.0f), 0.5f);
  EXPECT_EQ(fp8_tile_scale(1.0f), 0x1p-8f);
  EXPECT_EQ(fp8_tile_scale(3.0f), 0x1p-7f);
  EXPECT_EQ(fp8_tile_scale(0.0f), 1.0f);
  EXPECT_TRUE(std::isnan(fp8_tile_scale(kInf)));
  EXPECT_TRUE(std::isnan(fp8_tile_scale(kNaN)));
  EXPECT_EQ(int8_tile_scale(127.0f), 1.0f);
  EXPECT_EQ(int8_tile_scale(3.0f), 3.0f / 127.0f);
  EXPECT_EQ(int8_tile_scale(0.0f), 1.0f);
  EXPECT_TRUE(std::isnan(int8_tile_scale(kInf)));
  EXPECT_TRUE(std::isnan(int8_tile_scale(kNaN)));
  const float amax_nan[] = {1.0f, kNaN, kInf};
  EXPECT_TRUE(std::isnan(tile_amax(amax_nan, 3)));  // NaN wins over inf and everything
  const float amax_inf[] = {-kInf, 5.0f};
  EXPECT_EQ(tile_amax(amax_inf, 2), kInf);
}

// Row layout and arithmetic: a latent of 300 (tiles 128, 128, 44) and 8 rope values.
TEST(KvQuant, RowLayoutAndRoundTrip) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (KvQuant quant : {KvQuant::Fp8, KvQuant::Int8}) {
    const KvCacheFormat f{quant, 300, 8};
    ASSERT_EQ(f.tiles(), 3);
    ASSERT_EQ(f.row_bytes(), 300 + 12 + 16);
    std::vector<float> x(308);
    for (size_t i = 0; i < x.size(); ++i) x[i] = normal(rng) * (i < 128 ? 0.01f : i < 256 ? 30.0f : 1.0f);
    std::vector<uint8_t> row(size_t(f.row_bytes()));
    quantize_row(x.data(), f, row.data());
    std::vector<float> back(308);
    dequantize_row(row.data(), f, back.data());
    for (int64_t k = 0; k < 3; ++k) {
      const int64_t first = 128 * k, n = std::min<int64_t>(128, 300 - first);
      const float amax = tile_amax(x.data() + first, n);
      const float s = scale_at(row, f, k);
      EXPECT_EQ(s, quant == KvQuant::Fp8 ? fp8_tile_scale(amax) : int8_tile_scale(amax));
      for (int64_t i = first; i < first + n; ++i) {
        const uint8_t want = quant == KvQuant::Fp8 ? float_to_e4m3(x[size_t(i)] / s)
                                                   : uint8_t(float_to_int8(x[size_t(i)] / s));
        ASSERT_EQ(int(row[size_t(i)]), int(want)) << i;
        const float code = quant == KvQuant::Fp8 ? fp8_e4m3_to_float(want) : float(int8_t(want));
        ASSERT_EQ(back[size_t(i)], code * s) << i;
        // within half a step: e4m3 has 3 mantissa bits (relative 2^-4, absolute 2^-10 * s below 2^-6 * s)
        const float tol = quant == KvQuant::Fp8 ? std::max(std::fabs(x[size_t(i)]) / 16, s * 0x1p-10f) : s / 2;
        ASSERT_LE(std::fabs(back[size_t(i)] - x[size_t(i)]), tol * 1.0001f) << i;
      }
    }
    for (int64_t i = 300; i < 308; ++i) {
      uint16_t h;
      std::memcpy(&h, row.data() + f.rope_offset() + 2 * (i - 300), 2);
      EXPECT_EQ(h, float_to_bf16(x[size_t(i)]));
      EXPECT_EQ(back[size_t(i)], bf16_to_float(h));
    }
  }
}

// A row of several heads (the baselines' [K heads | V heads]): each head is tiled on its own, so the row is the
// heads' own single-head rows side by side, values then scales; a head of 200 takes tiles of 128 and 72, one of
// 16 a single short tile.
TEST(KvQuant, RowOfHeadsTilesEachHeadOnItsOwn) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (KvQuant quant : {KvQuant::Fp8, KvQuant::Int8})
    for (int64_t d : {200, 16, 128}) {
      const int64_t heads = 6;
      const KvCacheFormat f{quant, heads * d, 0, d}, one{quant, d, 0};
      ASSERT_EQ(f.tiles(), heads * one.tiles());
      ASSERT_EQ(f.row_bytes(), heads * one.row_bytes());
      std::vector<float> x(size_t(heads * d));
      for (size_t i = 0; i < x.size(); ++i) x[i] = normal(rng) * float(1 + int64_t(i) / d * 10);  // heads apart
      std::vector<uint8_t> row(size_t(f.row_bytes())), own(size_t(one.row_bytes()));
      quantize_row(x.data(), f, row.data());
      std::vector<float> back(x.size()), own_back(static_cast<size_t>(d));
      dequantize_row(row.data(), f, back.data());
      for (int64_t h = 0; h < heads; ++h) {
        quantize_row(x.data() + h * d, one, own.data());
        EXPECT_EQ(std::memcmp(row.data() + h * d, own.data(), size_t(d)), 0) << d << " head " << h;
        EXPECT_EQ(std::memcmp(row.data() + f.scales_offset() + 4 * h * one.tiles(), own.data() + one.scales_offset(),
                              size_t(4 * one.tiles())), 0)
            << d << " head " << h;
        dequantize_row(own.data(), one, own_back.data());
        for (int64_t i = 0; i < d; ++i) ASSERT_EQ(back[size_t(h * d + i)], own_back[size_t(i)]) << d << " " << h;
      }
    }
  EXPECT_ERROR_MENTIONS(kv_cache_format(DType::I8, DType::F32, 100, 0, 48), "100 values", "48");
}

TEST(KvQuant, AmaxZeroNanAndInf) {
  for (KvQuant quant : {KvQuant::Fp8, KvQuant::Int8}) {
    const KvCacheFormat f{quant, 256, 4};
    std::vector<float> x(260, 0.0f);  // tile 0 all zero
    for (int i = 128; i < 256; ++i) x[size_t(i)] = float(i - 128) / 10;
    x[256] = kNaN;
    x[257] = kInf;
    std::vector<uint8_t> row(size_t(f.row_bytes()));
    quantize_row(x.data(), f, row.data());
    EXPECT_EQ(scale_at(row, f, 0), 1.0f);
    std::vector<float> back(260);
    dequantize_row(row.data(), f, back.data());
    for (int i = 0; i < 128; ++i) EXPECT_EQ(back[size_t(i)], 0.0f);
    EXPECT_TRUE(std::isnan(back[256])) << "a NaN rope value stays NaN";
    EXPECT_EQ(back[257], kInf);

    // One NaN (or inf) in a tile: that tile reads back NaN everywhere, its neighbours are untouched.
    for (float bad : {kNaN, kInf, -kInf}) {
      std::vector<float> y = x;
      y[200] = bad;
      quantize_row(y.data(), f, row.data());
      EXPECT_TRUE(std::isnan(scale_at(row, f, 1)));
      dequantize_row(row.data(), f, back.data());
      for (int i = 128; i < 256; ++i) ASSERT_TRUE(std::isnan(back[size_t(i)])) << bad << " at " << i;
      for (int i = 0; i < 128; ++i) ASSERT_EQ(back[size_t(i)], 0.0f);
    }
  }
}

TEST(KvQuant, SaturationAtTheTileMaximum) {
  // amax just below a power-of-two boundary: x / scale lands at the top of the range and stays finite.
  const KvCacheFormat f{KvQuant::Fp8, 2, 0};
  const float x[2] = {447.99f * 4, -447.99f * 4};
  std::vector<uint8_t> row(size_t(f.row_bytes()));
  quantize_row(x, f, row.data());
  EXPECT_EQ(scale_at(row, f, 0), 4.0f);
  EXPECT_EQ(int(row[0]), 0x7e);
  EXPECT_EQ(int(row[1]), 0xfe);
  const KvCacheFormat g{KvQuant::Int8, 3, 0};
  const float y[3] = {-5.0f, 5.0f, 1.0f};
  row.assign(size_t(g.row_bytes()), 0);  // g's row is one byte longer than f's
  quantize_row(y, g, row.data());
  EXPECT_EQ(int8_t(row[0]), -127);
  EXPECT_EQ(int8_t(row[1]), 127);
  EXPECT_EQ(int8_t(row[2]), 25);  // 1 / (5 / 127) = 25.4
}

TEST(KvQuant, CpuCacheOpsWriteAndReadThroughTheFormat) {
  const int64_t R = 160, Dr = 16, W = R + Dr;
  for (KvQuant quant : {KvQuant::Fp8, KvQuant::Int8, KvQuant::Bf16}) {
    const DType dt = quant == KvQuant::Fp8 ? DType::F8_E4M3 : quant == KvQuant::Int8 ? DType::I8 : DType::BF16;
    const KvCacheFormat f = kv_cache_format(dt, DType::F32, R, Dr);
    ASSERT_EQ(f.quant, quant);
    const int64_t width = f.row_bytes() / int64_t(dtype_size(dt));
    Tensor pool = Tensor::zeros({4, 3, width}, dt);
    std::mt19937 rng(3);
    std::normal_distribution<float> normal(0.0f, 2.0f);
    std::vector<float> host(size_t(5 * W));
    for (float& v : host) v = normal(rng);
    Tensor rows = Tensor::empty({5, W}, DType::F32);
    std::memcpy(rows.raw(), host.data(), host.size() * 4);
    ops::write_cache_quantized(pool, f, {7, -1, 0, 11, 4}, rows);
    const std::vector<float> want = fake_quantize(host, f);
    // block table {2, 0, 1}: positions 0..2 in block 2 (slots 6..8), 3..5 in block 0, 6..7 in block 1
    Tensor got = ops::gather_cache_dequantized(pool, f, {2, 0, 1}, 8, DType::F32);
    ASSERT_EQ(got.dim(0), 8);
    auto row_of = [&](int64_t pos) { return got.data<float>() + pos * W; };
    for (int64_t j = 0; j < W; ++j) {
      EXPECT_EQ(row_of(1)[j], want[size_t(0 * W + j)]);  // slot 7 = block 2, offset 1 -> position 1
      EXPECT_EQ(row_of(3)[j], want[size_t(2 * W + j)]);  // slot 0 -> position 3
      EXPECT_EQ(row_of(7)[j], want[size_t(4 * W + j)]);  // slot 4 = block 1, offset 1 -> position 7
      EXPECT_EQ(row_of(0)[j], 0.0f);                     // slot 6 never written (slot -1 skipped)
    }
    Tensor slots = Tensor::empty({1}, DType::I64);
    slots.data<int64_t>()[0] = 11;
    Tensor one = ops::gather_rows_dequantized(pool, f, slots, DType::F32);
    for (int64_t j = 0; j < W; ++j) EXPECT_EQ(one.data<float>()[j], want[size_t(3 * W + j)]);
  }
  Tensor wrong = Tensor::zeros({2, 2, 100}, DType::F8_E4M3);
  EXPECT_ERROR_MENTIONS(ops::write_cache_quantized(wrong, KvCacheFormat{KvQuant::Fp8, R, Dr}, {0},
                                                   Tensor::zeros({1, W}, DType::F32)),
                        "write_cache_quantized", "-byte rows");
}
