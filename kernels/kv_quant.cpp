// The latent-cache quantizer (kv_quant.h): the scalar codecs and row layout the CPU reference, the tests and the
// CUDA kernels' host checks share, plus the ops' argument checks and device dispatch. Written bit by bit so that it
// is exact and the same under every compiler (no host fp8 type).
#include "kernels/kv_quant.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/kv_quant_cuda.h"
#include "kernels/op_checks.h"
#include "runtime/error.h"
#include "runtime/runtime_options.h"

namespace mlarun {

int64_t KvCacheFormat::row_bytes() const {
  switch (quant) {
    case KvQuant::Fp8:
    case KvQuant::Int8: return kv_quant_row_bytes(latent, rope, head);
    case KvQuant::Bf16: return 2 * width();
    case KvQuant::None: break;
  }
  fail("kv cache format: an unquantized format has no fixed row bytes");
}

KvCacheFormat kv_cache_format(DType pool_dtype, DType act_dtype, int64_t kv_lora_rank, int64_t rope_dim,
                              int64_t head) {
  MLARUN_CHECK(head == 0 || (head > 0 && kv_lora_rank % head == 0), "kv cache format: ", kv_lora_rank,
               " values are not whole heads of ", head);
  KvCacheFormat f{KvQuant::None, kv_lora_rank, rope_dim, head};
  if (pool_dtype == DType::F8_E4M3) f.quant = KvQuant::Fp8;
  else if (pool_dtype == DType::I8) f.quant = KvQuant::Int8;
  else if (pool_dtype == DType::BF16 && act_dtype == DType::F32) f.quant = KvQuant::Bf16;
  return f;
}

namespace kvq {

namespace {
uint32_t bits_of(float v) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  return b;
}
}  // namespace

uint8_t float_to_e4m3(float x) {
  const uint8_t sign = std::signbit(x) ? 0x80 : 0;
  if (std::isnan(x)) return sign | 0x7f;
  const float a = std::fabs(x);
  if (a >= 448.0f) return sign | 0x7e;  // saturate (inf too)
  if (a < 0x1p-6f)                      // subnormal (and zero): quantum 2^-9, exact scaling, RNE by nearbyint
    return sign | uint8_t(std::nearbyint(a * 512.0f));  // 8 -> code 0x08 = 2^-6, the first normal: continuous
  const uint32_t b = bits_of(a);
  const uint32_t exp = ((b >> 23) & 0xff) - 127 + 7, mant = b & 0x7fffff;
  uint32_t code = (exp << 3) | (mant >> 20);
  const uint32_t rest = mant & 0xfffff;
  if (rest > 0x80000 || (rest == 0x80000 && (code & 1))) ++code;  // carries into the exponent as it should
  return sign | uint8_t(code);  // a < 448 rounds to at most 0x7e
}

int8_t float_to_int8(float x) {
  if (std::isnan(x)) return 0;
  const float q = std::nearbyint(x);
  return int8_t(q > 127.0f ? 127.0f : q < -127.0f ? -127.0f : q);
}

float fp8_tile_scale(float amax) {
  if (!std::isfinite(amax)) return std::numeric_limits<float>::quiet_NaN();
  if (amax == 0) return 1.0f;
  const float t = amax / 448.0f;
  if (t == 0) return std::numeric_limits<float>::denorm_min();  // the least power of two above an underflow
  int e = 0;
  const float m = std::frexp(t, &e);  // t = m * 2^e, m in [0.5, 1)
  return m == 0.5f ? t : std::ldexp(1.0f, e);
}

float int8_tile_scale(float amax) {
  if (!std::isfinite(amax)) return std::numeric_limits<float>::quiet_NaN();
  if (amax == 0) return 1.0f;
  const float t = amax / 127.0f;
  return t == 0 ? std::numeric_limits<float>::denorm_min() : t;
}

float tile_amax(const float* x, int64_t n) {
  float a = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(x[i])) return x[i];
    a = std::fmax(a, std::fabs(x[i]));
  }
  return a;
}

void quantize_row(const float* src, const KvCacheFormat& f, uint8_t* dst) {
  if (f.quant == KvQuant::Bf16) {
    for (int64_t i = 0; i < f.width(); ++i) {
      const uint16_t v = float_to_bf16(src[i]);
      std::memcpy(dst + 2 * i, &v, 2);
    }
    return;
  }
  const bool fp8 = f.quant == KvQuant::Fp8;
  for (int64_t k = 0; k < f.tiles(); ++k) {
    const int64_t first = f.tile_first(k), n = f.tile_len(k);
    const float amax = tile_amax(src + first, n);
    const float scale = fp8 ? fp8_tile_scale(amax) : int8_tile_scale(amax);
    for (int64_t i = first; i < first + n; ++i) {
      if (std::isnan(scale)) dst[i] = 0;
      else if (fp8) dst[i] = float_to_e4m3(src[i] / scale);
      else dst[i] = uint8_t(float_to_int8(src[i] / scale));
    }
    std::memcpy(dst + f.scales_offset() + 4 * k, &scale, 4);
  }
  for (int64_t i = 0; i < f.rope; ++i) {
    const uint16_t v = float_to_bf16(src[f.latent + i]);
    std::memcpy(dst + f.rope_offset() + 2 * i, &v, 2);
  }
}

void dequantize_row(const uint8_t* src, const KvCacheFormat& f, float* dst) {
  uint16_t h;
  if (f.quant == KvQuant::Bf16) {
    for (int64_t i = 0; i < f.width(); ++i) {
      std::memcpy(&h, src + 2 * i, 2);
      dst[i] = bf16_to_float(h);
    }
    return;
  }
  static const auto e4m3 = [] {
    std::vector<float> t(256);
    for (int c = 0; c < 256; ++c) t[size_t(c)] = fp8_e4m3_to_float(uint8_t(c));
    return t;
  }();
  const bool fp8 = f.quant == KvQuant::Fp8;
  for (int64_t k = 0; k < f.tiles(); ++k) {
    float scale;
    std::memcpy(&scale, src + f.scales_offset() + 4 * k, 4);
    const int64_t first = f.tile_first(k), last = first + f.tile_len(k);
    for (int64_t i = first; i < last; ++i)
      dst[i] = (fp8 ? e4m3[src[i]] : float(int8_t(src[i]))) * scale;
  }
  for (int64_t i = 0; i < f.rope; ++i) {
    std::memcpy(&h, src + f.rope_offset() + 2 * i, 2);
    dst[f.latent + i] = bf16_to_float(h);
  }
}

std::vector<float> fake_quantize(const std::vector<float>& rows, const KvCacheFormat& f) {
  const int64_t W = f.width(), n = int64_t(rows.size()) / W;
  std::vector<float> out(rows.size());
  std::vector<uint8_t> row(size_t(f.row_bytes()));
  for (int64_t r = 0; r < n; ++r) {
    quantize_row(rows.data() + r * W, f, row.data());
    dequantize_row(row.data(), f, out.data() + r * W);
  }
  return out;
}

}  // namespace kvq

namespace ops {

using detail::device_of;

namespace {
void check_pool(const char* op, const Tensor& pool, const KvCacheFormat& f) {
  MLARUN_CHECK(f.quantized() && f.latent > 0 && f.rope >= 0 && f.head >= 0 && f.latent % f.head_len() == 0, op,
               ": the cache format is not a quantized one");
  MLARUN_CHECK(pool.ndim() == 3 && pool.dim(2) * int64_t(dtype_size(pool.dtype())) == f.row_bytes() &&
                   kv_cache_format(pool.dtype(), DType::F32, f.latent, f.rope).quant == f.quant,
               op, ": pool ", pool.describe(), " is not a cache of ", f.row_bytes(), "-byte rows (latent ", f.latent,
               ", rope ", f.rope, ")");
}
void check_slots(const char* op, const Tensor& pool, const std::vector<int64_t>& slots) {
  const int64_t n = pool.dim(0) * pool.dim(1);
  for (int64_t s : slots) MLARUN_CHECK(s < n, op, ": slot ", s, " outside the pool of ", n, " slots");
}
std::vector<int64_t> host_slots(const char* op, const Tensor& slots, int64_t n) {
  MLARUN_CHECK(slots.ndim() == 1 && slots.dtype() == DType::I64 && (n < 0 || slots.numel() == n), op,
               ": slots must be i64 [", n, "], got ", slots.describe());
  const int64_t* p = slots.data<int64_t>();
  return std::vector<int64_t>(p, p + slots.numel());
}
}  // namespace

void write_cache_quantized(Tensor& pool, const KvCacheFormat& f, const Tensor& slot_mapping, const Tensor& rows) {
  const char* op = "write_cache_quantized";
  const Device dev = device_of(op, {{"pool", pool}, {"slot_mapping", slot_mapping}, {"rows", rows}});
  check_pool(op, pool, f);
  MLARUN_CHECK(rows.ndim() == 2 && rows.dim(1) == f.width() && slot_mapping.ndim() == 1 &&
                   slot_mapping.dtype() == DType::I64 && slot_mapping.numel() == rows.dim(0),
               op, ": rows ", rows.describe(), " for slots ", slot_mapping.describe(), " of width ", f.width());
  if (dev == Device::CUDA) return cuda::write_cache_quantized(pool, f, slot_mapping, rows);
  detail::require_f32(op, {{"rows", rows}});
  cpu::write_cache_quantized(pool, f, host_slots(op, slot_mapping, rows.dim(0)), rows);
}

void write_cache_quantized(Tensor& pool, const KvCacheFormat& f, const std::vector<int64_t>& slot_mapping,
                           const Tensor& rows) {
  const char* op = "write_cache_quantized";
  const Device dev = device_of(op, {{"pool", pool}, {"rows", rows}});
  check_pool(op, pool, f);
  MLARUN_CHECK(rows.ndim() == 2 && rows.dim(1) == f.width() && rows.dim(0) == int64_t(slot_mapping.size()), op,
               ": rows ", rows.describe(), " for ", slot_mapping.size(), " slots of width ", f.width());
  check_slots(op, pool, slot_mapping);
  if (dev == Device::CUDA) return cuda::write_cache_quantized(pool, f, cuda::upload_slots(slot_mapping), rows);
  detail::require_f32(op, {{"rows", rows}});
  cpu::write_cache_quantized(pool, f, slot_mapping, rows);
}

Tensor gather_rows_dequantized(const Tensor& pool, const KvCacheFormat& f, const Tensor& slots, DType out_dtype) {
  const char* op = "gather_rows_dequantized";
  const Device dev = device_of(op, {{"pool", pool}, {"slots", slots}});
  check_pool(op, pool, f);
  MLARUN_CHECK(slots.ndim() == 1 && slots.dtype() == DType::I64, op, ": slots must be i64 [n], got ",
               slots.describe());
  if (dev == Device::CUDA) {
    MLARUN_CHECK(out_dtype == DType::BF16 || out_dtype == DType::F32, op, ": output ", dtype_name(out_dtype),
                 ", expected bf16 or f32");
    return cuda::gather_rows_dequantized(pool, f, slots, out_dtype);
  }
  MLARUN_CHECK(out_dtype == DType::F32, op, ": the CPU reads f32, asked for ", dtype_name(out_dtype));
  const std::vector<int64_t> s = host_slots(op, slots, -1);
  for (int64_t v : s) MLARUN_CHECK(v >= 0, op, ": slot ", v, " is not a cached row");
  check_slots(op, pool, s);
  return cpu::gather_rows_dequantized(pool, f, s);
}

Tensor gather_cache_dequantized(const Tensor& pool, const KvCacheFormat& f, const std::vector<int32_t>& block_table,
                                int64_t len, DType out_dtype) {
  const char* op = "gather_cache_dequantized";
  device_of(op, {{"pool", pool}});
  check_pool(op, pool, f);
  const int64_t nb = pool.dim(0), bs = pool.dim(1);
  MLARUN_CHECK(len >= 0 && len <= int64_t(block_table.size()) * bs, op, ": ", len,
               " tokens but the block table covers ", int64_t(block_table.size()) * bs);
  std::vector<int64_t> slots(static_cast<size_t>(len));
  for (int64_t t = 0; t < len; ++t) {
    const int64_t block = block_table[size_t(t / bs)];
    MLARUN_CHECK(block >= 0 && block < nb, op, ": block ", block, " outside the pool of ", nb, " blocks");
    slots[size_t(t)] = block * bs + t % bs;
  }
  if (pool.device() == Device::CUDA) return gather_rows_dequantized(pool, f, cuda::upload_slots(slots), out_dtype);
  MLARUN_CHECK(out_dtype == DType::F32, op, ": the CPU reads f32, asked for ", dtype_name(out_dtype));
  return cpu::gather_rows_dequantized(pool, f, slots);
}

}  // namespace ops

}  // namespace mlarun
