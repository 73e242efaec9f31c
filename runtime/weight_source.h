// WeightSource: where a model's tensors come from, by Hugging Face name. A checkpoint directory is one
// (Checkpoint, safetensors.h); deterministic random weights of a config's shapes are another (for benchmarks
// at real dimensions without downloading a model). Layers load only their own slice through it.
#pragma once

#include <string>

#include "runtime/placement.h"
#include "runtime/tensor.h"

namespace mlarun {

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual std::string source_name() const = 0;  // for error messages: the checkpoint directory, or "random weights"
  virtual bool contains(const std::string& tensor) const = 0;
  virtual Shape shape_of(const std::string& tensor) const = 0;  // throws naming the source when absent
  // The dtype the source stores the tensor in, as safetensors spells it ("BF16", "F8_E4M3", "I32", ...), and where
  // it lives (its file), so a loader can refuse a dtype its layer does not take with an error naming both.
  // Sources that make f32 values themselves (random weights) keep the defaults.
  virtual std::string dtype_of(const std::string& tensor) const { return (void)tensor, "F32"; }
  virtual std::string location_of(const std::string& tensor) const { return (void)tensor, source_name(); }
  virtual Tensor load(const std::string& tensor, DType dtype = DType::F32) const = 0;
  // Indices [begin, end) of dimension `dim` only (a tensor-parallel shard).
  virtual Tensor load_slice(const std::string& tensor, int dim, int64_t begin, int64_t end,
                            DType dtype = DType::F32) const = 0;
  // The same slice made directly where `placement` puts it, in its dtype, by a source that can (random weights
  // on the GPU: nothing made on the host or copied); an undefined tensor, the default, means: load the slice and
  // let the caller place it.
  virtual Tensor load_slice_placed(const std::string& tensor, int dim, int64_t begin, int64_t end,
                                   const Placement& placement) const {
    return (void)tensor, (void)dim, (void)begin, (void)end, (void)placement, Tensor();
  }
};

}  // namespace mlarun
