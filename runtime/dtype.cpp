// Bit-level conversions between the storage dtypes and f32, written out so the CPU reference needs no
// compiler extensions (no _Float16 or __bf16) and behaves the same under every compiler. Bulk conversions of
// large buffers (a model's weights on their way to the GPU) run on several threads, element for element the same.
#include "runtime/dtype.h"

#include <cmath>
#include <cstring>

#include "runtime/error.h"
#include "runtime/parallel_ranges.h"

namespace mlarun {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::BF16: return 2;
    case DType::F16: return 2;
    case DType::F8_E4M3: return 1;
    case DType::I32: return 4;
    case DType::I64: return 8;
    case DType::I8: return 1;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::BF16: return "bf16";
    case DType::F16: return "f16";
    case DType::F8_E4M3: return "fp8_e4m3";
    case DType::I32: return "i32";
    case DType::I64: return "i64";
    case DType::I8: return "i8";
  }
  return "?";
}

DType parse_dtype(const std::string& name) {
  if (name == "f32" || name == "fp32" || name == "float32") return DType::F32;
  if (name == "bf16" || name == "bfloat16") return DType::BF16;
  if (name == "f16" || name == "fp16" || name == "float16") return DType::F16;
  if (name == "fp8" || name == "fp8_e4m3" || name == "f8_e4m3") return DType::F8_E4M3;
  if (name == "i32" || name == "int32") return DType::I32;
  if (name == "i64" || name == "int64") return DType::I64;
  fail("unknown dtype '", name, "' (expected f32, bf16, f16, fp8, i32 or i64)");
}

static uint32_t float_bits(float v) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  return b;
}
static float bits_float(uint32_t b) {
  float v;
  std::memcpy(&v, &b, 4);
  return v;
}

float bf16_to_float(uint16_t v) { return bits_float(uint32_t(v) << 16); }

uint16_t float_to_bf16(float v) {
  uint32_t b = float_bits(v);
  if (std::isnan(v)) return uint16_t((b >> 16) | 0x40);  // keep sign, force a quiet NaN
  uint32_t rounding = 0x7fff + ((b >> 16) & 1);
  return uint16_t((b + rounding) >> 16);
}

float f16_to_float(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  if (exp == 0x1f) return bits_float(sign | 0x7f800000 | (mant << 13));  // inf / nan
  if (exp == 0) {
    float m = std::ldexp(float(mant), -24);  // subnormal: mant * 2^-24
    return sign ? -m : m;
  }
  return bits_float(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t float_to_f16(float v) {
  uint32_t b = float_bits(v);
  uint16_t sign = uint16_t((b >> 16) & 0x8000);
  if (std::isnan(v)) return sign | 0x7e00;
  float a = std::fabs(v);
  if (a >= 65520.0f) return sign | 0x7c00;  // rounds to infinity
  if (a < std::ldexp(1.0f, -14)) {          // subnormal range: quantum 2^-24
    float q = std::nearbyint(a * std::ldexp(1.0f, 24));
    return sign | uint16_t(q);
  }
  uint32_t exp = ((b >> 23) & 0xff) - 112;
  uint32_t mant = b & 0x7fffff;
  uint32_t h = (exp << 10) | (mant >> 13);
  uint32_t rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h += 1;
  return sign | uint16_t(h);
}

float fp8_e4m3_to_float(uint8_t v) {
  bool neg = v & 0x80;
  uint32_t exp = (v >> 3) & 0xf;
  uint32_t mant = v & 0x7;
  float r;
  if (exp == 0xf && mant == 0x7) return std::nanf("");
  if (exp == 0)
    r = std::ldexp(float(mant), -9);  // subnormal: mant/8 * 2^-6
  else
    r = std::ldexp(1.0f + float(mant) / 8.0f, int(exp) - 7);
  return neg ? -r : r;
}

uint8_t float_to_fp8_e4m3(float v) {
  if (std::isnan(v)) return 0x7f;
  uint8_t sign = std::signbit(v) ? 0x80 : 0;
  float a = std::fabs(v);
  if (a >= 448.0f) return sign | 0x7e;  // saturate to the largest finite value
  // Search the 127 finite magnitudes for the nearest, ties to even mantissa. Small and exact.
  uint8_t best = 0;
  float best_err = a;
  for (uint8_t code = 1; code <= 0x7e; ++code) {
    float err = std::fabs(fp8_e4m3_to_float(code) - a);
    if (err < best_err || (err == best_err && (code & 1) == 0)) {
      best = code;
      best_err = err;
    }
  }
  return sign | best;
}

namespace {

void convert_to_f32_serial(const void* src, DType from, float* dst, size_t n) {
  switch (from) {
    case DType::F32: std::memcpy(dst, src, n * 4); return;
    case DType::BF16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = bf16_to_float(s[i]);
      return;
    }
    case DType::F16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = f16_to_float(s[i]);
      return;
    }
    case DType::F8_E4M3: {
      const uint8_t* s = static_cast<const uint8_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = fp8_e4m3_to_float(s[i]);
      return;
    }
    case DType::I32: {
      const int32_t* s = static_cast<const int32_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = float(s[i]);
      return;
    }
    case DType::I64: {
      const int64_t* s = static_cast<const int64_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = float(s[i]);
      return;
    }
    case DType::I8: {
      const int8_t* s = static_cast<const int8_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = float(s[i]);
      return;
    }
  }
}

void convert_from_f32_serial(const float* src, DType to, void* dst, size_t n) {
  switch (to) {
    case DType::F32: std::memcpy(dst, src, n * 4); return;
    case DType::BF16: {
      uint16_t* d = static_cast<uint16_t*>(dst);
      for (size_t i = 0; i < n; ++i) d[i] = float_to_bf16(src[i]);
      return;
    }
    case DType::F16: {
      uint16_t* d = static_cast<uint16_t*>(dst);
      for (size_t i = 0; i < n; ++i) d[i] = float_to_f16(src[i]);
      return;
    }
    case DType::F8_E4M3: {
      uint8_t* d = static_cast<uint8_t*>(dst);
      for (size_t i = 0; i < n; ++i) d[i] = float_to_fp8_e4m3(src[i]);
      return;
    }
    default: fail("convert_from_f32: cannot convert to ", dtype_name(to));
  }
}

}  // namespace

void convert_to_f32(const void* src, DType from, float* dst, size_t n) {
  const size_t w = dtype_size(from);
  if (w == 0) fail("convert_to_f32: unknown dtype ", int(from));
  parallel_ranges(int64_t(n), [&](int64_t begin, int64_t end) {
    convert_to_f32_serial(static_cast<const unsigned char*>(src) + size_t(begin) * w, from, dst + begin,
                          size_t(end - begin));
  });
}

void convert_from_f32(const float* src, DType to, void* dst, size_t n) {
  const size_t w = dtype_size(to);
  if (to != DType::F32 && to != DType::BF16 && to != DType::F16 && to != DType::F8_E4M3)
    fail("convert_from_f32: cannot convert to ", dtype_name(to));  // here, not on a worker thread
  parallel_ranges(int64_t(n), [&](int64_t begin, int64_t end) {
    convert_from_f32_serial(src + begin, to, static_cast<unsigned char*>(dst) + size_t(begin) * w,
                            size_t(end - begin));
  });
}

}  // namespace mlarun
