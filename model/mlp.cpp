// SwiGLU MLP, routed experts and the MoE combine (see mlp.h): routing, permutation and combine stay on the
// activations' device (kernels/ops.h permute_by_expert, combine_experts).
#include "model/mlp.h"

#include "runtime/error.h"
#include "runtime/step_profiler.h"

namespace mlarun {

ParallelMLP::ParallelMLP(const WeightSource& ckpt, const std::string& prefix, int64_t dim, int64_t inter,
                         Communicator& comm, const Placement& placement)
    : gate_(ckpt, prefix + "gate_proj.weight", dim, inter, comm, placement),
      up_(ckpt, prefix + "up_proj.weight", dim, inter, comm, placement),
      down_(ckpt, prefix + "down_proj.weight", inter, dim, comm, placement) {}

Tensor ParallelMLP::forward(const Tensor& x) const {
  return down_.forward(ops::silu_mul(gate_.forward(x), up_.forward(x)));
}

Expert::Expert(const WeightSource& ckpt, const std::string& prefix, int64_t dim, int64_t inter,
               const Placement& placement)
    : gate_(ckpt, prefix + "gate_proj.weight", dim, inter, placement),
      up_(ckpt, prefix + "up_proj.weight", dim, inter, placement),
      down_(ckpt, prefix + "down_proj.weight", inter, dim, placement) {}

Tensor Expert::forward(const Tensor& x) const { return down_.forward(ops::silu_mul(gate_.forward(x), up_.forward(x))); }

MoE::MoE(const ModelConfig& c, const WeightSource& ckpt, const std::string& prefix, Communicator& comm,
         const Placement& placement)
    : dim_(c.dim), routing_(ops::RoutingParams::from(c)), comm_(&comm) {
  gate_ = load_checked(ckpt, prefix + "gate.weight", {c.n_routed_experts, c.dim}, placement);
  if (c.has_gate_bias)
    gate_bias_ = load_checked(ckpt, prefix + "gate.e_score_correction_bias", {c.n_routed_experts},
                              placement.with_dtype(DType::F32));
  ShardRange mine = shard_range(c.n_routed_experts, comm, "the routed experts of " + prefix);
  first_local_expert_ = mine.begin;
  experts_.reserve(size_t(mine.size()));
  for (int64_t e = mine.begin; e < mine.end; ++e)
    experts_.emplace_back(ckpt, prefix + "experts." + std::to_string(e) + ".", c.dim, c.moe_inter_dim, placement);
  if (c.n_shared_experts > 0)
    shared_.emplace(ckpt, prefix + "shared_experts.", c.dim, c.n_shared_experts * c.moe_inter_dim, comm,
                         placement);
}

Tensor MoE::forward(const Tensor& x) const {
  // Time split: routing, permutation, experts, combine and the shared experts are MoE; the all-reduce counts as
  // communication (the communicator marks it).
  ProfileRegion moe(ProfileCategory::Moe);
  const int64_t T = x.dim(0), D = dim_;
  ops::Routing r = ops::route(ops::linear(x, gate_, DType::F32), gate_bias_, routing_);
  // The permutation is built where the routing lives; only the per-expert offsets come to the host (one small
  // copy per layer: each expert's GEMM is sized by its row count).
  ops::ExpertPermutation p = ops::permute_by_expert(r, first_local_expert_, int64_t(experts_.size()));
  Tensor y;
  const int64_t A = p.offsets.back();
  if (A > 0) {
    // The tokens of all local experts, grouped by expert; each expert runs once on its run of rows into its run
    // of `out`, then every token sums its outputs weighted (experts in ascending order, f32).
    Tensor xs = ops::gather_rows(x, p.tokens);
    Tensor out = Tensor::empty({A, D}, x.dtype(), x.device());
    for (size_t j = 0; j < experts_.size(); ++j) {
      const int64_t begin = p.offsets[j], end = p.offsets[j + 1];
      if (begin == end) continue;
      ops::copy_into(out.rows(begin, end - begin), experts_[j].forward(xs.rows(begin, end - begin)));
    }
    y = ops::combine_experts(out, p, r);
  } else {
    y = Tensor::zeros({T, D}, DType::F32, x.device());
  }
  comm_->all_reduce_sum(y);  // every rank routed all tokens; each contributed its own experts
  y = ops::convert(y, x.dtype());
  if (shared_) ops::add_inplace(y, shared_->forward(x));
  return y;
}

}  // namespace mlarun
