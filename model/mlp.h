// The feed-forward blocks (docs/model.md §1.3, §4): the SwiGLU MLP (dense layers and shared experts, split
// column/row over ranks) and DeepSeekMoE (a replicated gate, routed experts split across ranks whole, shared
// experts applied to every token). Written with ops only: the same code runs on either device.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "kernels/ops.h"
#include "parallel/parallel_layers.h"
#include "runtime/model_config.h"

namespace mlarun {

// down(silu(gate(x)) * up(x)); tensor-parallel over the intermediate dimension (w2 all-reduces).
class ParallelMLP {
 public:
  ParallelMLP(const WeightSource& ckpt, const std::string& prefix, int64_t dim, int64_t inter, Communicator& comm,
              const Placement& placement = {});
  Tensor forward(const Tensor& x) const;

 private:
  ColumnParallelLinear gate_, up_;
  RowParallelLinear down_;
};

// One routed expert, whole on the rank that owns it.
class Expert {
 public:
  Expert(const WeightSource& ckpt, const std::string& prefix, int64_t dim, int64_t inter,
         const Placement& placement = {});
  Tensor forward(const Tensor& x) const;

 private:
  ReplicatedLinear gate_, up_, down_;
};

class MoE {
 public:
  MoE(const ModelConfig& c, const WeightSource& ckpt, const std::string& prefix, Communicator& comm,
      const Placement& placement = {});
  // [T, dim] -> [T, dim]. Router logits in f32; routed outputs summed in f32 (in a fixed order), then cast to the
  // activation dtype once and the shared experts added (docs/model.md §4.1, §4.4).
  Tensor forward(const Tensor& x) const;

 private:
  int64_t dim_;
  ops::RoutingParams routing_;
  Tensor gate_;       // [E, dim], replicated, in the activation dtype (bf16 x bf16 accumulates exactly in f32)
  Tensor gate_bias_;  // f32 [E] e_score_correction_bias (noaux_tc), or undefined
  int64_t first_local_expert_ = 0;
  std::vector<Expert> experts_;  // this rank's experts [first, first + E / world)
  std::optional<ParallelMLP> shared_;  // the shared experts as one MLP, when the config has any
  Communicator* comm_;
};

}  // namespace mlarun
