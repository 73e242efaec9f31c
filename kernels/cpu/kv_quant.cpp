// CPU quantized latent cache (twin of cuda/kv_quant.cu): each row quantized into its slot of the byte pool, and
// rows read back dequantized to f32, through the one row codec of kernels/kv_quant.cpp (the bit-exact reference).
#include <cstdint>

#include "kernels/cpu/cpu_ops.h"

namespace mlarun::ops::cpu {

void write_cache_quantized(const Tensor& pool, const KvCacheFormat& f, const std::vector<int64_t>& slot_mapping,
                           const Tensor& rows) {
  const int64_t bytes = f.row_bytes(), W = f.width();
  uint8_t* base = static_cast<uint8_t*>(pool.raw());
  for (size_t t = 0; t < slot_mapping.size(); ++t)
    if (slot_mapping[t] >= 0) kvq::quantize_row(rows.data<float>() + int64_t(t) * W, f, base + slot_mapping[t] * bytes);
}

Tensor gather_rows_dequantized(const Tensor& pool, const KvCacheFormat& f, const std::vector<int64_t>& slots) {
  const int64_t bytes = f.row_bytes(), W = f.width();
  Tensor out = Tensor::empty({int64_t(slots.size()), W}, DType::F32);
  const uint8_t* base = static_cast<const uint8_t*>(pool.raw());
  for (size_t i = 0; i < slots.size(); ++i)
    kvq::dequantize_row(base + slots[i] * bytes, f, out.data<float>() + int64_t(i) * W);
  return out;
}

}  // namespace mlarun::ops::cpu
