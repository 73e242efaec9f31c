// AttentionLayer: what a decoder layer needs from its attention, whichever kind it is (MLA, or the MHA/GQA/MQA
// baselines): run one step over the paged cache of this layer, and say how many values per token that cache
// row holds on this rank, so the cache pools are sized by the layer that writes them. A step comes as a
// StepContext: the host batch, its tensors on the model's device (built once per step) and the MLA backend
// planned for it (model/mla_backend.h).
#pragma once

#include <cstdint>

#include "kernels/kv_quant.h"
#include "kernels/ops.h"
#include "runtime/forward_batch.h"
#include "runtime/step_tensors.h"
#include "runtime/tensor.h"

namespace mlarun {

class MlaBackend;

struct StepContext {
  const ForwardBatch& batch;
  const StepTensors& tensors;
  const MlaBackend* mla = nullptr;  // planned for this step; null: the layer plans one of its own
};

class AttentionLayer {
 public:
  virtual ~AttentionLayer() = default;
  // x [T, dim] (normalised) -> [T, dim]; writes this step's cache rows into `cache` [blocks, block_size, width].
  virtual Tensor forward(const Tensor& x, const StepContext& step, Tensor& cache,
                         const ops::RopeTable& rope) const = 0;
  // The same for a bare batch (tests, benchmarks): builds the step's tensors on x's device first.
  Tensor forward(const Tensor& x, const ForwardBatch& batch, Tensor& cache, const ops::RopeTable& rope) const {
    const StepTensors tensors = StepTensors::build(batch, x.device(), cache.dim(1), cache.dim(0));
    return forward(x, StepContext{batch, tensors, nullptr}, cache, rope);
  }
  // Values per token in this rank's cache of this layer (the pool's width).
  virtual int64_t cache_width() const = 0;
  // The row's shape for a quantized cache (quant None here; kernels/kv_quant.h): which values are quantized and
  // how they are tiled (MLA: the latent, rope kept in bf16; a baseline: each K and V head on its own), so that
  // kv_cache_storage (runtime_options.h) sizes a pool of any --kv-cache-dtype for this layer.
  virtual KvCacheFormat cache_format() const = 0;
};

}  // namespace mlarun
