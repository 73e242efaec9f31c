// SwiGLU MLP, routed experts and the MoE combine (see mlp.h).
#include "model/mlp.h"

#include <cstring>

#include "runtime/error.h"

namespace mlarun {

ParallelMLP::ParallelMLP(const WeightSource& ckpt, const std::string& prefix, int64_t dim, int64_t inter,
                         Communicator& comm)
    : gate_(ckpt, prefix + "gate_proj.weight", dim, inter, comm),
      up_(ckpt, prefix + "up_proj.weight", dim, inter, comm),
      down_(ckpt, prefix + "down_proj.weight", inter, dim, comm) {}

Tensor ParallelMLP::forward(const Tensor& x) const {
  return down_.forward(ops::silu_mul(gate_.forward(x), up_.forward(x)));
}

Expert::Expert(const WeightSource& ckpt, const std::string& prefix, int64_t dim, int64_t inter)
    : gate_(ckpt, prefix + "gate_proj.weight", dim, inter),
      up_(ckpt, prefix + "up_proj.weight", dim, inter),
      down_(ckpt, prefix + "down_proj.weight", inter, dim) {}

Tensor Expert::forward(const Tensor& x) const { return down_.forward(ops::silu_mul(gate_.forward(x), up_.forward(x))); }

MoE::MoE(const ModelConfig& c, const WeightSource& ckpt, const std::string& prefix, Communicator& comm)
    : c_(c), routing_(ops::RoutingParams::from(c)), comm_(&comm) {
  gate_ = load_checked(ckpt, prefix + "gate.weight", {c.n_routed_experts, c.dim});
  if (c.has_gate_bias) gate_bias_ = load_checked(ckpt, prefix + "gate.e_score_correction_bias", {c.n_routed_experts});
  ShardRange mine = shard_range(c.n_routed_experts, comm, "the routed experts of " + prefix);
  first_local_expert_ = mine.begin;
  experts_.reserve(size_t(mine.size()));
  for (int64_t e = mine.begin; e < mine.end; ++e)
    experts_.emplace_back(ckpt, prefix + "experts." + std::to_string(e) + ".", c.dim, c.moe_inter_dim);
  if (c.n_shared_experts > 0)
    shared_.emplace_back(ckpt, prefix + "shared_experts.", c.dim, c.n_shared_experts * c.moe_inter_dim, comm);
}

Tensor MoE::forward(const Tensor& x) const {
  const int64_t T = x.dim(0), D = c_.dim, K = c_.n_activated_experts;
  ops::Routing r = ops::route(ops::linear(x, gate_), gate_bias_, routing_);
  Tensor y = Tensor::zeros({T, D}, DType::F32);
  // Group the tokens by local expert, run each expert once on its tokens, scatter back weighted (f32 sums).
  for (size_t j = 0; j < experts_.size(); ++j) {
    const int32_t expert = int32_t(first_local_expert_ + int64_t(j));
    std::vector<int64_t> tokens;
    std::vector<float> weights;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t k = 0; k < K; ++k)
        if (r.experts.data<int32_t>()[t * K + k] == expert) {
          tokens.push_back(t);
          weights.push_back(r.weights.data<float>()[t * K + k]);
        }
    if (tokens.empty()) continue;
    Tensor xs = Tensor::empty({int64_t(tokens.size()), D}, DType::F32);
    for (size_t i = 0; i < tokens.size(); ++i)
      std::memcpy(xs.data<float>() + int64_t(i) * D, x.data<float>() + tokens[i] * D, size_t(D) * 4);
    Tensor ys = experts_[j].forward(xs);
    for (size_t i = 0; i < tokens.size(); ++i) {
      float* dst = y.data<float>() + tokens[i] * D;
      const float* src = ys.data<float>() + int64_t(i) * D;
      for (int64_t d = 0; d < D; ++d) dst[d] += weights[i] * src[d];
    }
  }
  comm_->all_reduce_sum(y);  // every rank routed all tokens; each contributed its own experts
  if (!shared_.empty()) ops::add_inplace(y, shared_[0].forward(x));
  return y;
}

}  // namespace mlarun
