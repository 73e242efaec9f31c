// Allocation of the per-layer cache pools (see cache_pool.h).
#include "runtime/cache_pool.h"

#include "runtime/error.h"

namespace mlarun {

CachePool CachePool::allocate(int64_t num_layers, int64_t num_blocks, int64_t block_size, int64_t width, DType dtype,
                              Device device) {
  MLARUN_CHECK(num_layers >= 1 && num_blocks >= 1 && block_size >= 1 && width >= 1, "cache pool: ", num_layers,
               " layers x ", num_blocks, " blocks x ", block_size, " tokens x ", width, " values is not a valid size");
  CachePool pool;
  pool.num_blocks = num_blocks;
  pool.block_size = block_size;
  try {
    for (int64_t l = 0; l < num_layers; ++l)
      pool.layers.push_back(Tensor::zeros({num_blocks, block_size, width}, dtype, device));
  } catch (const Error& e) {
    fail("cannot allocate the cache: ", num_layers, " layers x ", num_blocks, " blocks x ", block_size, " tokens x ",
         width, " ", dtype_name(dtype), " values (", double(num_layers * num_blocks * block_size * width) *
                                                          double(dtype_size(dtype)) / (1 << 20),
         " MiB): ", e.what());
  }
  return pool;
}

int64_t CachePool::bytes() const {
  int64_t total = 0;
  for (const Tensor& t : layers) total += int64_t(t.nbytes());
  return total;
}

}  // namespace mlarun
