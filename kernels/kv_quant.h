// The quantized latent cache (--kv-cache-dtype fp8|int8, and bf16 on the CPU): why it exists is memory (656 bytes a
// token a layer instead of 1152 in bf16 for DeepSeek-V2/V3); why it is written out here is that the quantizer must
// be bit-exact and the same on every device and in the Python reference (tests/tools/make_kv_quant_references.py).
// Byte layout of one row (docs/layouts.md §1.1), R = kv_lora_rank, Dr = rope dims, tiles = ceil(R / 128):
//   [0, R)                 the latent values, one byte each (e4m3 or int8), tile k covers values [128k, 128k+128)
//   [R, R + 4 * tiles)     one f32 scale per tile (little-endian, unaligned in general: read with memcpy)
//   [R + 4 * tiles, +2*Dr) the rope values k_pe in bf16
// The MHA/GQA/MQA baselines store their [K heads | V heads] row the same way with Dr = 0, each head of d values
// tiled on its own (KvCacheFormat::head): ceil(d / 128) tiles a head, the last one shorter when 128 does not divide d.
// fp8 tile scale: the power of two at or above amax / 448; int8: amax / 127 (f32). amax 0: scale 1. A tile holding
// NaN or +-inf gets scale NaN and zero codes, so every value of it reads back NaN: a non-finite latent is never
// silently turned into a finite one (as vLLM/FlashMLA, whose amax propagates it). Rope values keep NaN/inf in bf16.
// Values: x / scale, rounded to nearest even, saturated (e4m3 to +-448, int8 clamped to +-127). Read: code * scale.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/tensor.h"

namespace mlarun {

enum class KvQuant { None, Bf16, Fp8, Int8 };  // None: the pool holds the activations' dtype, copied as is

struct KvCacheFormat {
  KvQuant quant = KvQuant::None;
  int64_t latent = 0;  // quantized values: kv_lora_rank (MLA), or a baseline's K and V heads
  int64_t rope = 0;    // qk_rope_head_dim values kept in bf16 after them (0 for the baselines)
  // Values per head, each head tiled on its own (its last tile may be shorter); 0: one head of `latent` (MLA).
  int64_t head = 0;
  static constexpr int64_t kTile = 128;
  bool quantized() const { return quant != KvQuant::None; }
  int64_t head_len() const { return head > 0 ? head : latent; }
  int64_t tiles_per_head() const { return (head_len() + kTile - 1) / kTile; }
  int64_t tiles() const { return head_len() > 0 ? latent / head_len() * tiles_per_head() : 0; }
  // Tile k covers the latent values [tile_first(k), tile_first(k) + tile_len(k)).
  int64_t tile_first(int64_t k) const { return k / tiles_per_head() * head_len() + k % tiles_per_head() * kTile; }
  int64_t tile_len(int64_t k) const {
    const int64_t in_head = k % tiles_per_head() * kTile;
    return head_len() - in_head < kTile ? head_len() - in_head : kTile;
  }
  int64_t width() const { return latent + rope; }  // values of a dequantized row
  int64_t scales_offset() const { return latent; }
  int64_t rope_offset() const { return latent + 4 * tiles(); }
  int64_t row_bytes() const;  // bytes of one stored row
};

// The format of a pool of `pool_dtype` read by activations of `act_dtype`: F8_E4M3 -> Fp8, I8 -> Int8, BF16 under
// f32 activations -> Bf16 (the CPU's --kv-cache-dtype bf16), the activations' own dtype -> None. `head`: values
// per independently tiled head (0: the latent is one head).
KvCacheFormat kv_cache_format(DType pool_dtype, DType act_dtype, int64_t kv_lora_rank, int64_t rope_dim,
                              int64_t head = 0);

namespace kvq {
// Scalar codecs (host and the CPU kernels). e4m3: OCP E4M3FN, round to nearest even, saturating to +-448, NaN ->
// 0x7f (sign kept); decoding is dtype.h's fp8_e4m3_to_float.
uint8_t float_to_e4m3(float x);
int8_t float_to_int8(float x);  // round half to even, clamped to [-127, 127]; NaN -> 0 (its tile's scale is NaN)
float fp8_tile_scale(float amax);   // amax = max |x| of the tile (NaN if any is NaN; inf if any is inf)
float int8_tile_scale(float amax);
// The tile's amax with NaN winning over everything and inf over finite values.
float tile_amax(const float* x, int64_t n);
// One row: src [latent + rope] f32 -> dst [f.row_bytes()] bytes; and back.
void quantize_row(const float* src, const KvCacheFormat& f, uint8_t* dst);
void dequantize_row(const uint8_t* src, const KvCacheFormat& f, float* dst);
// Host helpers for tests: rows [n, width] f32 through the format and back (fake quantization).
std::vector<float> fake_quantize(const std::vector<float>& rows, const KvCacheFormat& f);
}  // namespace kvq

namespace ops {
// The paged cache in a quantized (or CPU bf16) format `f`: pool [blocks, block_size, stored width] of the format's
// dtype (fp8/int8: a byte pool of row_bytes; bf16: latent + rope values). rows [T, latent + rope] in the
// activations' dtype (f32 on the CPU, bf16 on CUDA) are written quantized at slot_mapping (-1: skipped).
void write_cache_quantized(Tensor& pool, const KvCacheFormat& f, const Tensor& slot_mapping, const Tensor& rows);
void write_cache_quantized(Tensor& pool, const KvCacheFormat& f, const std::vector<int64_t>& slot_mapping,
                           const Tensor& rows);
// Dequantized reads in `out_dtype` (f32 on the CPU; bf16 or f32 on CUDA): the slots' rows [n, latent + rope]
// (slots i64 on the pool's device, each inside the pool) ...
Tensor gather_rows_dequantized(const Tensor& pool, const KvCacheFormat& f, const Tensor& slots, DType out_dtype);
// ... and the first `len` tokens of one sequence through its block table.
Tensor gather_cache_dequantized(const Tensor& pool, const KvCacheFormat& f, const std::vector<int32_t>& block_table,
                                int64_t len, DType out_dtype);
}  // namespace ops

}  // namespace mlarun
