// Tensor-parallel layers in the Megatron/DeepSeek way (docs/layouts.md §2): each layer loads only its own slice of
// the checkpoint tensor and does its own communication, so the model code reads like the single-GPU model.
//   ColumnParallelLinear: splits output features; no communication (the next layer consumes the shard).
//   RowParallelLinear:    splits input features; all-reduce (sum) of the output.
//   ReplicatedLinear:     the whole weight on every rank.
//   VocabParallelEmbedding / ParallelLMHead: split by vocabulary; all-reduce / all-gather.
// Every layer takes a Placement (runtime/placement.h, default: CPU f32): its slice is loaded as host f32, then
// converted and uploaded on its own, so no layer ever holds more than one host copy of one tensor.
#pragma once

#include <string>
#include <vector>

#include "parallel/communicator.h"
#include "runtime/placement.h"
#include "runtime/weight_source.h"

namespace mlarun {

// Rows [rank * n / world, (rank + 1) * n / world) of a dimension of size n; throws unless world divides n.
struct ShardRange {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
};
ShardRange shard_range(int64_t n, const Communicator& comm, const std::string& what);
// Part `part` of `parts` equal parts (decode context parallelism splits heads over tp / dcp groups).
ShardRange shard_range(int64_t n, int64_t part, int64_t parts, const std::string& what);

class ReplicatedLinear {
 public:
  ReplicatedLinear() = default;
  ReplicatedLinear(const WeightSource& ckpt, const std::string& name, int64_t in, int64_t out,
                   const Placement& placement = {});
  Tensor forward(const Tensor& x) const;
  const Tensor& weight() const { return weight_; }

 private:
  Tensor weight_;  // [out, in]
};

class ColumnParallelLinear {
 public:
  ColumnParallelLinear() = default;
  ColumnParallelLinear(const WeightSource& ckpt, const std::string& name, int64_t in, int64_t out,
                       const Communicator& comm, const Placement& placement = {});
  // Output features split into `parts` parts, this one holding part `part` (not one part per rank).
  ColumnParallelLinear(const WeightSource& ckpt, const std::string& name, int64_t in, int64_t out, int64_t part,
                       int64_t parts, const Placement& placement = {});
  Tensor forward(const Tensor& x) const;  // [..., in] -> [..., out / world]
  const Tensor& weight() const { return weight_; }

 private:
  Tensor weight_;  // [out / world, in]
};

class RowParallelLinear {
 public:
  RowParallelLinear() = default;
  RowParallelLinear(const WeightSource& ckpt, const std::string& name, int64_t in, int64_t out, Communicator& comm,
                    const Placement& placement = {});
  Tensor forward(const Tensor& x) const;  // [..., in / world] -> [..., out], summed over ranks

 private:
  Tensor weight_;  // [out, in / world]
  Communicator* comm_ = nullptr;
};

class VocabParallelEmbedding {
 public:
  VocabParallelEmbedding() = default;
  VocabParallelEmbedding(const WeightSource& ckpt, const std::string& name, int64_t vocab, int64_t dim,
                         Communicator& comm, const Placement& placement = {});
  // [T, dim] in the placement's dtype; ids outside the vocabulary are an error.
  Tensor forward(const std::vector<int32_t>& ids) const;
  // The same from i32 ids [T] already on the table's device (runtime/step_tensors.h: no upload); the caller has
  // checked them against the vocabulary on the host.
  Tensor forward(const Tensor& ids) const;

 private:
  Tensor table_;  // [vocab / world, dim]
  ShardRange range_;
  int64_t vocab_ = 0;
  Communicator* comm_ = nullptr;
};

class ParallelLMHead {
 public:
  ParallelLMHead() = default;
  ParallelLMHead(const WeightSource& ckpt, const std::string& name, int64_t dim, int64_t vocab, Communicator& comm,
                 const Placement& placement = {});
  Tensor forward(const Tensor& x) const;  // [T, dim] -> f32 [T, vocab] on every rank (f32 from the accumulator)

 private:
  Tensor weight_;  // [vocab / world, dim]
  Communicator* comm_ = nullptr;
};

// Loads `name` and checks its shape (an error names the checkpoint, the tensor and both shapes) and its dtype
// (F32, F16, BF16, or F8_E4M3 with `<name>_scale_inv`; an error names the file, the tensor and the dtype); then
// places it (host f32 by default).
Tensor load_checked(const WeightSource& ckpt, const std::string& name, const Shape& expected,
                    const Placement& placement = {});
// Loads rows or columns [range) of a 2-D tensor whose full shape must be `full`, then places it.
Tensor load_shard_checked(const WeightSource& ckpt, const std::string& name, const Shape& full, int dim, ShardRange r,
                          const Placement& placement = {});

}  // namespace mlarun
