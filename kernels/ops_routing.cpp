// Argument checks and device dispatch for MoE routing (Hugging Face semantics): the gate's expert choice, run by
// kernels/cpu/moe_routing.cpp (the reference) or its CUDA twin kernels/cuda/moe_routing.cu, and the token
// permutation by expert, which is host work whatever the routing's device.
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/ops.h"
#include "runtime/error.h"

namespace mlarun::ops {

Routing route(const Tensor& logits, const Tensor& bias, const RoutingParams& p) {
  MLARUN_CHECK(logits.defined() && logits.dtype() == DType::F32 && logits.ndim() == 2,
               "route: logits must be f32 [tokens, experts], got ", logits.describe());
  const int64_t E = logits.dim(1);
  MLARUN_CHECK(p.top_k >= 1 && p.top_k <= E && p.n_groups >= 1 && E % p.n_groups == 0 && p.topk_groups >= 1 &&
                   p.topk_groups <= p.n_groups,
               "route: top_k ", p.top_k, ", groups ", p.n_groups, " (keep ", p.topk_groups, ") do not fit ", E,
               " experts");
  const bool use_bias = p.method == TopkMethod::NoauxTc;
  if (use_bias) {
    MLARUN_CHECK(bias.defined() && bias.numel() == E, "route: noaux_tc needs a gate bias of ", E, " values");
    MLARUN_CHECK(bias.dtype() == DType::F32 && bias.device() == logits.device(), "route: the gate bias ",
                 bias.describe(), " must be f32 on the logits' device (", logits.describe(), ")");
  }
  if (logits.device() == Device::CUDA) return cuda::route(logits, use_bias ? bias : Tensor(), p);
  return cpu::route(logits, use_bias ? bias : Tensor(), p);
}

ExpertGroups group_by_expert(const Routing& r, int64_t first_expert, int64_t num_experts) {
  MLARUN_CHECK(r.experts.defined() && r.weights.defined() && r.experts.shape() == r.weights.shape() &&
                   r.experts.ndim() == 2 && r.experts.dtype() == DType::I32 && r.weights.dtype() == DType::F32,
               "group_by_expert: routing experts ", r.experts.describe(), " and weights ", r.weights.describe(),
               " are not i32 and f32 [tokens, top_k]");
  MLARUN_CHECK(first_expert >= 0 && num_experts >= 0, "group_by_expert: experts [", first_expert, ", ",
               first_expert + num_experts, ")");
  const Tensor experts = r.experts.device() == Device::CPU ? r.experts : r.experts.to(Device::CPU);
  const Tensor weights = r.weights.device() == Device::CPU ? r.weights : r.weights.to(Device::CPU);
  return cpu::group_by_expert(experts, weights, first_expert, num_experts);
}

}  // namespace mlarun::ops
