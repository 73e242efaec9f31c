// AttentionLayer: what a decoder layer needs from its attention, whichever kind it is (MLA, or the MHA/GQA/MQA
// baselines): run one step over the paged cache of this layer, and say how many values per token that cache
// row holds on this rank, so the cache pools are sized by the layer that writes them.
#pragma once

#include <cstdint>

#include "kernels/ops.h"
#include "runtime/forward_batch.h"
#include "runtime/tensor.h"

namespace mlarun {

class AttentionLayer {
 public:
  virtual ~AttentionLayer() = default;
  // x [T, dim] (normalised) -> [T, dim]; writes this step's cache rows into `cache` [blocks, block_size, width].
  virtual Tensor forward(const Tensor& x, const ForwardBatch& batch, Tensor& cache,
                         const ops::RopeTable& rope) const = 0;
  // Values per token in this rank's cache of this layer (the pool's width).
  virtual int64_t cache_width() const = 0;
};

}  // namespace mlarun
