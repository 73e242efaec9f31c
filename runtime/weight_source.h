// WeightSource: where a model's tensors come from, by Hugging Face name. A checkpoint directory is one
// (Checkpoint, safetensors.h); deterministic random weights of a config's shapes are another (for benchmarks
// at real dimensions without downloading a model). Layers load only their own slice through it.
#pragma once

#include <string>

#include "runtime/tensor.h"

namespace mlarun {

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual std::string source_name() const = 0;  // for error messages: the checkpoint directory, or "random weights"
  virtual bool contains(const std::string& tensor) const = 0;
  virtual Shape shape_of(const std::string& tensor) const = 0;  // throws naming the source when absent
  virtual Tensor load(const std::string& tensor, DType dtype = DType::F32) const = 0;
  // Indices [begin, end) of dimension `dim` only (a tensor-parallel shard).
  virtual Tensor load_slice(const std::string& tensor, int dim, int64_t begin, int64_t end,
                            DType dtype = DType::F32) const = 0;
};

}  // namespace mlarun
