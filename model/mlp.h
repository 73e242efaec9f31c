// The feed-forward blocks (spec section 5): the SwiGLU MLP (dense layers and shared experts, split
// column/row over ranks) and DeepSeekMoE (a replicated gate, routed experts split across ranks whole, shared
// experts applied to every token).
#pragma once

#include <string>
#include <vector>

#include "kernels/ops.h"
#include "parallel/parallel_layers.h"
#include "runtime/model_config.h"

namespace mlarun {

// down(silu(gate(x)) * up(x)); tensor-parallel over the intermediate dimension (w2 all-reduces).
class ParallelMLP {
 public:
  ParallelMLP(const WeightSource& ckpt, const std::string& prefix, int64_t dim, int64_t inter, Communicator& comm);
  Tensor forward(const Tensor& x) const;

 private:
  ColumnParallelLinear gate_, up_;
  RowParallelLinear down_;
};

// One routed expert, whole on the rank that owns it.
class Expert {
 public:
  Expert(const WeightSource& ckpt, const std::string& prefix, int64_t dim, int64_t inter);
  Tensor forward(const Tensor& x) const;

 private:
  ReplicatedLinear gate_, up_, down_;
};

class MoE {
 public:
  MoE(const ModelConfig& c, const WeightSource& ckpt, const std::string& prefix, Communicator& comm);
  Tensor forward(const Tensor& x) const;  // [T, dim] -> [T, dim]

 private:
  const ModelConfig& c_;
  ops::RoutingParams routing_;
  Tensor gate_;       // [E, dim], replicated
  Tensor gate_bias_;  // [E] e_score_correction_bias (noaux_tc), or undefined
  int64_t first_local_expert_ = 0;
  std::vector<Expert> experts_;  // this rank's experts [first, first + E / world)
  std::vector<ParallelMLP> shared_;  // zero or one
  Communicator* comm_;
};

}  // namespace mlarun
