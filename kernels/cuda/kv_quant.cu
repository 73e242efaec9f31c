// The quantized latent cache on the GPU (twin of cpu/kv_quant.cpp; format and rounding rules: kernels/kv_quant.h):
// the quantizing cache write (one block per token, one thread per value of a 128-value tile; a row of several heads,
// the baselines', is tiled head by head) and a dequantizing gather the generic attention paths read through.
// Fusing dequantization into mla_decode and flash_prefill's latent up-projection is later work; these are the
// bit-exact reference kernels on the device.
#include <cstring>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/kv_quant_cuda.h"

namespace mlarun::ops::cuda {

namespace {

constexpr int kThreads = 128;  // one tile of latent values per pass
enum Quant : int { kFp8 = 0, kInt8 = 1, kBf16 = 2 };

struct Layout {
  int64_t latent, rope, scales, rope_at, row_bytes;
  int quant;
  int64_t head, tiles_per_head;  // values per independently tiled head (the latent: one head), its tiles
};

__device__ uint8_t to_e4m3(float x) {
  const uint8_t sign = signbit(x) ? 0x80 : 0;
  if (isnan(x)) return sign | 0x7f;
  const float a = fabsf(x);
  if (a >= 448.0f) return sign | 0x7e;
  if (a < 0x1p-6f) return sign | uint8_t(rintf(a * 512.0f));
  const uint32_t b = __float_as_uint(a);
  const uint32_t exp = ((b >> 23) & 0xff) - 127 + 7, mant = b & 0x7fffff;
  uint32_t code = (exp << 3) | (mant >> 20);
  const uint32_t rest = mant & 0xfffff;
  if (rest > 0x80000 || (rest == 0x80000 && (code & 1))) ++code;
  return sign | uint8_t(code);
}

__device__ float from_e4m3(uint8_t v) {
  const uint32_t exp = (v >> 3) & 0xf, mant = v & 0x7;
  if (exp == 0xf && mant == 0x7) return __int_as_float(0x7fc00000);
  const float r = exp == 0 ? ldexpf(float(mant), -9) : ldexpf(1.0f + float(mant) / 8.0f, int(exp) - 7);
  return (v & 0x80) ? -r : r;
}

__device__ uint16_t to_bf16_bits(float v) {
  const uint32_t b = __float_as_uint(v);
  if (isnan(v)) return uint16_t((b >> 16) | 0x40);
  return uint16_t((b + 0x7fff + ((b >> 16) & 1)) >> 16);
}

__device__ float tile_scale(float amax, int quant) {
  if (!isfinite(amax)) return __int_as_float(0x7fc00000);
  if (amax == 0.0f) return 1.0f;
  if (quant == kInt8) {
    const float t = amax / 127.0f;
    return t == 0.0f ? __int_as_float(1) : t;
  }
  const float t = amax / 448.0f;
  if (t == 0.0f) return __int_as_float(1);
  int e = 0;
  const float m = frexpf(t, &e);
  return m == 0.5f ? t : ldexpf(1.0f, e);
}

// amax over the block with NaN winning (fmaxf would drop it).
__device__ float block_amax(float v, float* scratch) {
  __shared__ int any_nan;
  if (threadIdx.x == 0) any_nan = 0;
  __syncthreads();
  if (isnan(v)) any_nan = 1;
  const float m = block_max(isnan(v) ? 0.0f : fabsf(v), scratch);
  __syncthreads();
  return any_nan ? __int_as_float(0x7fc00000) : m;
}

__global__ void write_quantized_kernel(uint8_t* pool, const int64_t* slots, const void* rows, bool bf16, Layout L) {
  __shared__ float scratch[32];
  __shared__ float scale_s;
  const int64_t t = blockIdx.x, slot = slots[t];
  if (slot < 0) return;  // the whole block leaves together
  const int64_t W = L.latent + L.rope;
  uint8_t* dst = pool + slot * L.row_bytes;
  if (L.quant == kBf16) {
    for (int64_t i = threadIdx.x; i < W; i += blockDim.x) {
      const uint16_t h = to_bf16_bits(load_f(rows, t * W + i, bf16));
      memcpy(dst + 2 * i, &h, 2);
    }
    return;
  }
  for (int64_t tile = 0; tile < L.latent / L.head * L.tiles_per_head; ++tile) {
    const int64_t in_head = tile % L.tiles_per_head * kThreads + threadIdx.x;
    const int64_t i = tile / L.tiles_per_head * L.head + in_head;
    const bool inside = in_head < L.head;
    const float x = inside ? load_f(rows, t * W + i, bf16) : 0.0f;
    const float amax = block_amax(x, scratch);
    if (threadIdx.x == 0) {
      scale_s = tile_scale(amax, L.quant);
      memcpy(dst + L.scales + 4 * tile, &scale_s, 4);
    }
    __syncthreads();
    const float s = scale_s;
    if (inside) {
      if (isnan(s)) dst[i] = 0;
      else if (L.quant == kFp8) dst[i] = to_e4m3(x / s);
      else dst[i] = uint8_t(int8_t(isnan(x / s) ? 0.0f : fminf(127.0f, fmaxf(-127.0f, rintf(x / s)))));
    }
    __syncthreads();
  }
  for (int64_t i = threadIdx.x; i < L.rope; i += blockDim.x) {
    const uint16_t h = to_bf16_bits(load_f(rows, t * W + L.latent + i, bf16));
    memcpy(dst + L.rope_at + 2 * i, &h, 2);
  }
}

__global__ void gather_dequantized_kernel(const uint8_t* pool, const int64_t* slots, void* out, int64_t n,
                                          bool bf16, Layout L) {
  const int64_t W = L.latent + L.rope, total = n * W;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = e % W;
    const uint8_t* src = pool + slots[e / W] * L.row_bytes;
    float v;
    uint16_t h;
    if (L.quant == kBf16) {
      memcpy(&h, src + 2 * j, 2);
      v = __uint_as_float(uint32_t(h) << 16);
    } else if (j < L.latent) {
      float s;
      memcpy(&s, src + L.scales + 4 * (j / L.head * L.tiles_per_head + j % L.head / kThreads), 4);
      v = (L.quant == kFp8 ? from_e4m3(src[j]) : float(int8_t(src[j]))) * s;
    } else {
      memcpy(&h, src + L.rope_at + 2 * (j - L.latent), 2);
      v = __uint_as_float(uint32_t(h) << 16);
    }
    store_f(out, e, v, bf16);
  }
}

Layout layout_of(const KvCacheFormat& f) {
  const int q = f.quant == KvQuant::Fp8 ? kFp8 : f.quant == KvQuant::Int8 ? kInt8 : kBf16;
  return {f.latent, f.rope, f.scales_offset(), f.rope_offset(), f.row_bytes(), q, f.head_len(), f.tiles_per_head()};
}

}  // namespace

void write_cache_quantized(const Tensor& pool, const KvCacheFormat& f, const Tensor& slots, const Tensor& rows) {
  const bool bf16 = is_bf16(rows, "write_cache_quantized");
  const int64_t T = rows.dim(0);
  if (T == 0) return;
  write_quantized_kernel<<<unsigned(T), kThreads, 0, stream()>>>(static_cast<uint8_t*>(pool.raw()),
                                                                 slots.data<int64_t>(), rows.raw(), bf16,
                                                                 layout_of(f));
  MLARUN_CUDA_CHECK_LAUNCH("write_quantized_kernel");
}

Tensor gather_rows_dequantized(const Tensor& pool, const KvCacheFormat& f, const Tensor& slots, DType out_dtype) {
  const int64_t n = slots.numel(), W = f.width();
  Tensor out = Tensor::empty({n, W}, out_dtype, Device::CUDA);
  if (n == 0) return out;
  constexpr int threads = 256;
  gather_dequantized_kernel<<<grid_for(n * W, threads), threads, 0, stream()>>>(
      static_cast<const uint8_t*>(pool.raw()), slots.data<int64_t>(), out.raw(), n, out_dtype == DType::BF16,
      layout_of(f));
  MLARUN_CUDA_CHECK_LAUNCH("gather_dequantized_kernel");
  return out;
}

Tensor upload_slots(const std::vector<int64_t>& slots) { return upload(slots); }

}  // namespace mlarun::ops::cuda
