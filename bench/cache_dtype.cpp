// Names and byte rules of the accounted kv cache dtypes (see cache_dtype.h).
#include "bench/cache_dtype.h"

#include "runtime/error.h"

namespace mlarun {

const char* cache_dtype_name(CacheDtype t) {
  switch (t) {
    case CacheDtype::BF16: return "bf16";
    case CacheDtype::FP8: return "fp8";
    case CacheDtype::INT8: return "int8";
  }
  return "?";
}

bool cache_dtype_quantized(CacheDtype t) { return t != CacheDtype::BF16; }

int64_t cache_values_bytes(int64_t n, CacheDtype t) {
  MLARUN_CHECK(n >= 0, "kv_values_bytes: ", n, " values");
  if (!cache_dtype_quantized(t)) return 2 * n;
  return n + kCacheScaleBytes * ((n + kCacheQuantTile - 1) / kCacheQuantTile);
}

CacheDtype parse_cache_dtype(const std::string& name, const std::string& option) {
  if (name == "bf16" || name == "auto") return CacheDtype::BF16;
  if (name == "fp8" || name == "fp8_e4m3") return CacheDtype::FP8;
  if (name == "int8") return CacheDtype::INT8;
  fail("option ", option, ": '", name, "' is not a kv cache dtype (expected bf16, fp8 or int8)");
}

DType cache_pool_dtype(CacheDtype t) {
  switch (t) {
    case CacheDtype::BF16: return DType::BF16;
    case CacheDtype::FP8: return DType::F8_E4M3;
    case CacheDtype::INT8: return DType::I8;
  }
  return DType::BF16;
}

std::string cache_byte_rule() {
  return "bf16: 2 B per value; fp8/int8: 1 B per value in tiles of 128 values, each tile with an fp32 scale "
         "(4 B), scales counted: MLA kv_lora_rank + 4 x ceil(kv_lora_rank / 128) + 2 x rope B (the RoPE part stays "
         "bf16), MHA/GQA/MQA each K and V head d + 4 x ceil(d / 128) B (the same 128-value tile rule)";
}

}  // namespace mlarun
