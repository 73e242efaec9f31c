// CachePool: the paged cache memory of a model, one tensor per layer of [num_blocks, block_size, width]
// (width = kv_lora_rank + rope dim for the MLA latent; for --kv-cache-dtype fp8/int8 a byte pool whose width is
// the row's bytes, docs/layouts.md §1.1). Which sequence owns which block is the BlockManager's business; this
// only holds the memory.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/tensor.h"

namespace mlarun {

struct CachePool {
  int64_t num_blocks = 0;
  int64_t block_size = 0;
  std::vector<Tensor> layers;  // one per layer; a layer may hold several tensors' worth in `width`

  // Allocates `num_layers` pools; an allocation that fails is an error naming the size asked for.
  static CachePool allocate(int64_t num_layers, int64_t num_blocks, int64_t block_size, int64_t width, DType dtype,
                            Device device);
  int64_t bytes() const;
};

}  // namespace mlarun
