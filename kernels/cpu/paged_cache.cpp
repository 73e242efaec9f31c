// CPU paged cache (twin of cuda/paged_cache.cu): rows written to pool slots (slot = block * block_size + offset,
// -1 skipped) and a sequence's first tokens gathered back through its block table. Exact copies.
#include <cstring>

#include "kernels/cpu/cpu_ops.h"

namespace mlarun::ops::cpu {

void write_cache(const Tensor& pool, const std::vector<int64_t>& slot_mapping, const Tensor& rows) {
  const int64_t width = pool.dim(2);
  for (size_t t = 0; t < slot_mapping.size(); ++t) {
    const int64_t slot = slot_mapping[t];
    if (slot < 0) continue;
    std::memcpy(pool.data<float>() + slot * width, rows.data<float>() + int64_t(t) * width, size_t(width) * 4);
  }
}

Tensor gather_cache(const Tensor& pool, const std::vector<int32_t>& block_table, int64_t len) {
  const int64_t bs = pool.dim(1), width = pool.dim(2);
  Tensor out = Tensor::empty({len, width}, DType::F32);
  for (int64_t t = 0; t < len; ++t) {
    const int64_t block = block_table[size_t(t / bs)];
    std::memcpy(out.data<float>() + t * width, pool.data<float>() + (block * bs + t % bs) * width, size_t(width) * 4);
  }
  return out;
}

}  // namespace mlarun::ops::cpu
