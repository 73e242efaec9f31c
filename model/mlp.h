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

// How a MoE layer lays out its routed experts' rows (docs/model.md §4.2). Compact: each expert's tokens
// back to back, sized by per-expert counts brought to the host (one small copy per layer), one GEMM per expert;
// the least work, for prefill. Capacity: T rows for every local expert, sized by T alone (no host copy, so a
// decode step can be captured in a CUDA graph); its products read only the experts that hold tokens while they
// hold few (ops::expert_linear), else one strided-batched GEMM per projection over every row.
enum class MoeLayout { Compact, Capacity };

class MoE {
 public:
  MoE(const ModelConfig& c, const WeightSource& ckpt, const std::string& prefix, Communicator& comm,
      const Placement& placement = {});
  // [T, dim] -> [T, dim]. Router logits in f32; routed outputs summed in f32 (in a fixed order), then cast to the
  // activation dtype once and the shared experts added (docs/model.md §4.1, §4.4). Both layouts give the same
  // result up to the GEMMs' rounding.
  Tensor forward(const Tensor& x, MoeLayout layout = MoeLayout::Compact) const;

 private:
  Tensor routed_compact(const Tensor& x, const ops::Routing& r) const;   // f32 [T, dim]
  Tensor routed_capacity(const Tensor& x, const ops::Routing& r) const;  // f32 [T, dim]

  int64_t dim_;
  ops::RoutingParams routing_;
  Tensor gate_;       // [E, dim], replicated, in the activation dtype (bf16 x bf16 accumulates exactly in f32)
  Tensor gate_bias_;  // f32 [E] e_score_correction_bias (noaux_tc), or undefined
  int64_t first_local_expert_ = 0;
  int64_t num_local_experts_ = 0;  // this rank's experts [first, first + E / world), whole
  // Their weights stacked by local expert (checkpoint layout [out, in] each): gate and up [n, inter, dim],
  // down [n, dim, inter]; expert j's matrix is slice j.
  Tensor w_gate_, w_up_, w_down_;
  std::optional<ParallelMLP> shared_;  // the shared experts as one MLP, when the config has any
  Communicator* comm_;
};

}  // namespace mlarun
