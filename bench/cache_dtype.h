// The kv_cache_dtype values `bench cache` accounts (vLLM's name and spelling): bf16, and the quantized fp8 and
// int8 caches, which store each value in 1 byte in tiles of 128 values, each tile with an fp32 scale (4 bytes).
// One rule for every attention kind, scales counted: n quantized values take n + 4 * ceil(n / 128) bytes. MLA
// quantizes its kv_lora_rank latent and keeps the RoPE key in bf16 (512 + 16 + 128 = 656 B per token per layer
// for DeepSeek-V2/V3); the MHA/GQA/MQA baselines quantize each K and each V head of d values (128 + 4 each).
// The runtime's own --kv-cache-dtype (runtime_options.h) stores MLA rows this way; the bench counts the bytes
// itself so that it needs neither the runtime's quantizer nor baseline kernels that do not exist.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/dtype.h"

namespace mlarun {

enum class CacheDtype : uint8_t { BF16, FP8, INT8 };

constexpr int64_t kCacheQuantTile = 128;  // values per scale
constexpr int64_t kCacheScaleBytes = 4;   // one fp32 scale per tile

const char* cache_dtype_name(CacheDtype t);  // "bf16", "fp8", "int8"
bool cache_dtype_quantized(CacheDtype t);     // fp8, int8
// Bytes of n values stored as `t`: bf16 2n; fp8/int8 n + 4 * ceil(n / 128) (the values' tiles and their scales).
int64_t cache_values_bytes(int64_t n, CacheDtype t);
// Parses one name; unknown names throw naming `option`, the value and the accepted names.
CacheDtype parse_cache_dtype(const std::string& name, const std::string& option);
// The element type a real pool of `t` is allocated with: bf16 rows hold bf16 values; a quantized row is a byte
// row (values, scales and the bf16 RoPE part) of 1-byte elements, F8_E4M3 for fp8 and I8 for int8, as the
// runtime's byte pools are (runtime_options.h, KvCacheStorage).
DType cache_pool_dtype(CacheDtype t);
// The rule above in words, for tables, notes and JSON.
std::string cache_byte_rule();

}  // namespace mlarun
