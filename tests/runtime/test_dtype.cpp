// Conversions between storage dtypes and f32 against values worked out by hand from the bit layouts.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "runtime/dtype.h"
#include "runtime/error.h"

using namespace mlarun;

TEST(DType, SizesAndNames) {
  EXPECT_EQ(dtype_size(DType::F32), 4u);
  EXPECT_EQ(dtype_size(DType::BF16), 2u);
  EXPECT_EQ(dtype_size(DType::F16), 2u);
  EXPECT_EQ(dtype_size(DType::F8_E4M3), 1u);
  EXPECT_EQ(dtype_size(DType::I32), 4u);
  EXPECT_EQ(dtype_size(DType::I64), 8u);
  EXPECT_EQ(parse_dtype("bf16"), DType::BF16);
  EXPECT_EQ(parse_dtype("fp8"), DType::F8_E4M3);
  EXPECT_THROW(parse_dtype("int4"), Error);
}

TEST(DType, Bf16RoundsToNearestEven) {
  EXPECT_EQ(float_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(bf16_to_float(0x3f80), 1.0f);
  EXPECT_EQ(bf16_to_float(0xc000), -2.0f);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0).
  EXPECT_EQ(float_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  // 1 + 3*2^-8 is halfway between 1+2^-7 (odd) and 1+2^-6 (even): rounds up.
  EXPECT_EQ(float_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(std::nanf("")))));
}

TEST(DType, F16KnownValues) {
  EXPECT_EQ(f16_to_float(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_float(0xc000), -2.0f);
  EXPECT_EQ(f16_to_float(0x7bff), 65504.0f);
  EXPECT_EQ(f16_to_float(0x0001), std::ldexp(1.0f, -24));
  EXPECT_TRUE(std::isinf(f16_to_float(0x7c00)));
  for (float v : {0.0f, 1.0f, -3.5f, 0.0009765625f, 65504.0f, std::ldexp(1.0f, -20)})
    EXPECT_EQ(f16_to_float(float_to_f16(v)), v) << v;
  EXPECT_EQ(float_to_f16(1e6f), 0x7c00);  // overflow -> inf
}

TEST(DType, Fp8E4M3KnownValues) {
  EXPECT_EQ(fp8_e4m3_to_float(0x38), 1.0f);   // exp 7, mant 0
  EXPECT_EQ(fp8_e4m3_to_float(0x7e), 448.0f);  // largest finite
  EXPECT_EQ(fp8_e4m3_to_float(0xfe), -448.0f);
  EXPECT_EQ(fp8_e4m3_to_float(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_TRUE(std::isnan(fp8_e4m3_to_float(0x7f)));
  EXPECT_EQ(float_to_fp8_e4m3(1000.0f), 0x7e);  // saturates
  for (int code = 0; code < 0x7f; ++code)    // every finite code round-trips
    EXPECT_EQ(float_to_fp8_e4m3(fp8_e4m3_to_float(uint8_t(code))), code);
}

TEST(DType, BulkConversions) {
  float src[3] = {1.5f, -2.25f, 3.0f};
  uint16_t bf[3];
  convert_from_f32(src, DType::BF16, bf, 3);
  float back[3];
  convert_to_f32(bf, DType::BF16, back, 3);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(back[i], src[i]);
  int64_t ints[2] = {-7, 1 << 20};
  convert_to_f32(ints, DType::I64, back, 2);
  EXPECT_EQ(back[0], -7.0f);
  EXPECT_EQ(back[1], float(1 << 20));
  EXPECT_THROW(convert_from_f32(src, DType::I32, bf, 1), Error);
}

// Buffers past a million elements convert on several threads (runtime/dtype.cpp in_pieces): every element must be
// what the element-wise conversion gives, across the pieces' seams too.
TEST(DType, LargeBulkConversionsMatchElementWise) {
  const size_t n = (size_t(3) << 20) + 12345;  // several pieces, the last one short
  std::vector<float> src(n);
  for (size_t i = 0; i < n; ++i) src[i] = float(int64_t(i * 2654435761u % 2000003) - 1000001) * 1.37e-3f;
  std::vector<uint16_t> bf(n), f16(n);
  std::vector<uint8_t> f8(n);
  convert_from_f32(src.data(), DType::BF16, bf.data(), n);
  convert_from_f32(src.data(), DType::F16, f16.data(), n);
  convert_from_f32(src.data(), DType::F8_E4M3, f8.data(), n);
  std::vector<float> back(n);
  convert_to_f32(bf.data(), DType::BF16, back.data(), n);
  for (size_t i = 0; i < n; ++i) {
    ASSERT_EQ(bf[i], float_to_bf16(src[i])) << i;
    ASSERT_EQ(f16[i], float_to_f16(src[i])) << i;
    ASSERT_EQ(f8[i], float_to_fp8_e4m3(src[i])) << i;
    ASSERT_EQ(back[i], bf16_to_float(bf[i])) << i;
  }
  std::vector<int8_t> i8(n);
  for (size_t i = 0; i < n; ++i) i8[i] = int8_t(i * 7);
  convert_to_f32(i8.data(), DType::I8, back.data(), n);
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(back[i], float(int8_t(i * 7))) << i;
  EXPECT_THROW(convert_from_f32(src.data(), DType::I32, bf.data(), n), Error);  // refused before any thread
}
