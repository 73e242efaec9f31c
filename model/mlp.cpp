// SwiGLU MLP, routed experts and the MoE combine (see mlp.h): routing, permutation and combine stay on the
// activations' device (kernels/ops.h permute_by_expert / permute_to_capacity, expert_linear, combine_experts).
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

namespace {

// Expert j's matrix [out, in] of a stacked projection [n, out, in].
Tensor expert_matrix(const Tensor& stacked, int64_t j) {
  return stacked.rows(j, 1).view({stacked.dim(1), stacked.dim(2)});
}

// Projection `proj` of experts [first, first + n) under `prefix`, each [rows, cols], stacked into [n, rows, cols]
// on the placement: one expert's weight at a time passes through the host.
Tensor load_stacked_experts(const WeightSource& ckpt, const std::string& prefix, int64_t first, int64_t n,
                            const std::string& proj, int64_t rows, int64_t cols, const Placement& placement) {
  Tensor stacked = Tensor::empty({n, rows, cols}, placement.dtype, placement.device);
  for (int64_t j = 0; j < n; ++j) {
    const std::string name = prefix + "experts." + std::to_string(first + j) + "." + proj + ".weight";
    ops::copy_into(expert_matrix(stacked, j), load_checked(ckpt, name, {rows, cols}, placement));
  }
  return stacked;
}

}  // namespace

MoE::MoE(const ModelConfig& c, const WeightSource& ckpt, const std::string& prefix, Communicator& comm,
         const Placement& placement)
    : dim_(c.dim), routing_(ops::RoutingParams::from(c)), comm_(&comm) {
  gate_ = load_checked(ckpt, prefix + "gate.weight", {c.n_routed_experts, c.dim}, placement);
  if (c.has_gate_bias)
    gate_bias_ = load_checked(ckpt, prefix + "gate.e_score_correction_bias", {c.n_routed_experts},
                              placement.with_dtype(DType::F32));
  ShardRange mine = shard_range(c.n_routed_experts, comm, "the routed experts of " + prefix);
  first_local_expert_ = mine.begin;
  num_local_experts_ = mine.size();
  const int64_t n = num_local_experts_, first = mine.begin, I = c.moe_inter_dim;
  w_gate_ = load_stacked_experts(ckpt, prefix, first, n, "gate_proj", I, c.dim, placement);
  w_up_ = load_stacked_experts(ckpt, prefix, first, n, "up_proj", I, c.dim, placement);
  w_down_ = load_stacked_experts(ckpt, prefix, first, n, "down_proj", c.dim, I, placement);
  if (c.n_shared_experts > 0)
    shared_.emplace(ckpt, prefix + "shared_experts.", c.dim, c.n_shared_experts * c.moe_inter_dim, comm,
                         placement);
}

Tensor MoE::forward(const Tensor& x, MoeLayout layout) const {
  // Time split: routing, permutation, experts, combine and the shared experts are MoE; the all-reduce counts as
  // communication (the communicator marks it).
  ProfileRegion moe(ProfileCategory::Moe);
  const ops::Routing r = ops::route(ops::linear(x, gate_, DType::F32), gate_bias_, routing_);
  Tensor y = layout == MoeLayout::Capacity ? routed_capacity(x, r) : routed_compact(x, r);
  comm_->all_reduce_sum(y);  // every rank routed all tokens; each contributed its own experts
  y = ops::convert(y, x.dtype());
  if (shared_) ops::add_inplace(y, shared_->forward(x));
  return y;
}

Tensor MoE::routed_compact(const Tensor& x, const ops::Routing& r) const {
  // The permutation is built where the routing lives; only the per-expert offsets come to the host (one small
  // copy per layer: each expert's GEMM is sized by its row count).
  const ops::ExpertPermutation p = ops::permute_by_expert(r, first_local_expert_, num_local_experts_);
  const int64_t A = p.offsets.back();
  if (A == 0) return Tensor::zeros({x.dim(0), dim_}, DType::F32, x.device());
  // The tokens of all local experts, grouped by expert; each expert runs once on its run of rows into its run
  // of `out`, then every token sums its outputs weighted (experts in ascending order, f32).
  const Tensor xs = ops::gather_rows(x, p.tokens);
  Tensor out = Tensor::empty({A, dim_}, x.dtype(), x.device());
  for (int64_t j = 0; j < num_local_experts_; ++j) {
    const int64_t begin = p.offsets[size_t(j)], rows = p.offsets[size_t(j) + 1] - begin;
    if (rows == 0) continue;
    const Tensor xj = xs.rows(begin, rows);
    const Tensor gate = ops::linear(xj, expert_matrix(w_gate_, j)), up = ops::linear(xj, expert_matrix(w_up_, j));
    const Tensor h = ops::silu_mul(gate, up);
    ops::copy_into(out.rows(begin, rows), ops::linear(h, expert_matrix(w_down_, j)));
  }
  return ops::combine_experts(out, p.slot_of, r);
}

Tensor MoE::routed_capacity(const Tensor& x, const ops::Routing& r) const {
  // Row c * n + j of the grid is the c-th token of local expert j (zeros past its count): viewed as [T, n, dim]
  // the experts are the "heads" of one batched product per projection. While the experts hold few tokens each
  // (at most kGemvRowsPerExpert on average: most of them none at batch 1), expert_linear reads only the experts
  // with tokens; beyond, every expert is hit anyway and one strided-batched GEMM (tensor cores) does all rows.
  constexpr int64_t kGemvRowsPerExpert = 8;
  const int64_t T = x.dim(0), n = num_local_experts_, E = gate_.dim(0);
  const ops::ExpertCapacityLayout c = ops::permute_to_capacity(r, first_local_expert_, n);
  const Tensor xs = ops::gather_rows(x, c.tokens).view({T, n, dim_});
  const bool sparse = x.device() == Device::CPU || T * routing_.top_k <= kGemvRowsPerExpert * E;
  const auto experts = [&](const Tensor& in, const Tensor& w) {
    return sparse ? ops::expert_linear(in, w, c.counts) : ops::head_linear(in, w);
  };
  const Tensor h = ops::silu_mul(experts(xs, w_gate_), experts(xs, w_up_));
  const Tensor out = experts(h, w_down_).view({T * n, dim_});
  return ops::combine_experts(out, c.slot_of, r);
}

}  // namespace mlarun
