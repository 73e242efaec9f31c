// CPU MoE gate routing (twin of cuda/moe_routing.cu), Hugging Face's semantics: scores by softmax or
// sigmoid, optional group-limited selection (group max, or sum of the top two bias-corrected scores for
// noaux_tc), top-k, weights from the unbiased scores, optional renormalisation, then the routed scaling factor.
// Then the token permutation: assignments grouped by expert with a stable counting sort.
#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>

#include "kernels/cpu/cpu_ops.h"
#include "runtime/error.h"

namespace mlarun::ops::cpu {

namespace {
// Indices of the k largest values, largest first; ties go to the lower index.
std::vector<int64_t> top_indices(const std::vector<float>& v, int64_t k) {
  std::vector<int64_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int64_t a, int64_t b) {
    return v[size_t(a)] > v[size_t(b)] || (v[size_t(a)] == v[size_t(b)] && a < b);
  });
  idx.resize(size_t(k));
  return idx;
}
}  // namespace

Routing route(const Tensor& logits, const Tensor& bias, const RoutingParams& p) {
  const int64_t T = logits.dim(0), E = logits.dim(1);
  const bool use_bias = p.method == TopkMethod::NoauxTc;
  const bool grouped = p.method != TopkMethod::Greedy && p.n_groups > 1;
  const int64_t per_group = E / p.n_groups;
  Routing r{Tensor::empty({T, p.top_k}, DType::I32), Tensor::empty({T, p.top_k}, DType::F32)};
  std::vector<float> scores(static_cast<size_t>(E)), choice(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t) {
    const float* row = logits.data<float>() + t * E;
    if (p.score_func == ScoreFunc::Softmax) {
      float mx = *std::max_element(row, row + E);
      double sum = 0;
      for (int64_t e = 0; e < E; ++e) sum += (scores[size_t(e)] = std::exp(row[e] - mx));
      for (auto& s : scores) s = float(s / sum);
    } else {
      for (int64_t e = 0; e < E; ++e) scores[size_t(e)] = 1.0f / (1.0f + std::exp(-row[e]));
    }
    for (int64_t e = 0; e < E; ++e) choice[size_t(e)] = scores[size_t(e)] + (use_bias ? bias.data<float>()[e] : 0.0f);
    if (grouped || use_bias) {
      std::vector<float> group_score(static_cast<size_t>(p.n_groups));
      for (int64_t g = 0; g < p.n_groups; ++g) {
        std::vector<float> members(choice.begin() + g * per_group, choice.begin() + (g + 1) * per_group);
        std::sort(members.begin(), members.end(), std::greater<float>());
        group_score[size_t(g)] = use_bias ? members[0] + (per_group > 1 ? members[1] : 0.0f) : members[0];
      }
      std::vector<int64_t> kept = top_indices(group_score, p.topk_groups);
      std::vector<bool> keep(size_t(p.n_groups), false);
      for (int64_t g : kept) keep[size_t(g)] = true;
      for (int64_t e = 0; e < E; ++e)
        if (!keep[size_t(e / per_group)]) choice[size_t(e)] = -INFINITY;
    }
    std::vector<int64_t> chosen = top_indices(choice, p.top_k);
    float sum = 0;
    for (int64_t j = 0; j < p.top_k; ++j) sum += scores[size_t(chosen[size_t(j)])];
    for (int64_t j = 0; j < p.top_k; ++j) {
      float w = scores[size_t(chosen[size_t(j)])];
      if (p.normalize) w /= (sum + 1e-20f);
      r.experts.data<int32_t>()[t * p.top_k + j] = int32_t(chosen[size_t(j)]);
      r.weights.data<float>()[t * p.top_k + j] = w * p.scale;
    }
  }
  return r;
}

ExpertGroups group_by_expert(const Tensor& experts, const Tensor& weights, int64_t first_expert,
                             int64_t num_experts) {
  const int64_t T = experts.dim(0), K = experts.dim(1);
  ExpertGroups g;
  g.offsets.assign(size_t(num_experts + 1), 0);
  for (int64_t i = 0; i < T * K; ++i) {  // counting sort by local expert; tokens stay in order within an expert
    int64_t local = int64_t(experts.data<int32_t>()[i]) - first_expert;
    if (local >= 0 && local < num_experts) ++g.offsets[size_t(local + 1)];
  }
  for (int64_t j = 0; j < num_experts; ++j) g.offsets[size_t(j + 1)] += g.offsets[size_t(j)];
  g.tokens.resize(size_t(g.offsets.back()));
  g.weights.resize(size_t(g.offsets.back()));
  std::vector<int64_t> fill(g.offsets.begin(), g.offsets.end() - 1);
  for (int64_t i = 0; i < T * K; ++i) {
    int64_t local = int64_t(experts.data<int32_t>()[i]) - first_expert;
    if (local < 0 || local >= num_experts) continue;
    size_t at = size_t(fill[size_t(local)]++);
    g.tokens[at] = i / K;
    g.weights[at] = weights.data<float>()[i];
  }
  return g;
}

ExpertPermutation permute_by_expert(const Tensor& experts, const Tensor& weights, int64_t first_expert,
                                    int64_t num_experts) {
  const ExpertGroups g = group_by_expert(experts, weights, first_expert, num_experts);
  const int64_t T = experts.dim(0), K = experts.dim(1), A = int64_t(g.tokens.size());
  ExpertPermutation p;
  p.offsets = g.offsets;
  p.tokens = Tensor::empty({A}, DType::I64);
  p.weights = Tensor::from_f32({A}, g.weights);
  p.slot_of = Tensor::empty({T, K}, DType::I64);
  std::vector<int64_t> fill(g.offsets.begin(), g.offsets.end() - 1);
  for (int64_t i = 0; i < T * K; ++i) {  // the counting sort's placement again, recording where each went
    const int64_t local = int64_t(experts.data<int32_t>()[i]) - first_expert;
    p.slot_of.data<int64_t>()[i] = local >= 0 && local < num_experts ? fill[size_t(local)]++ : -1;
  }
  for (int64_t a = 0; a < A; ++a) p.tokens.data<int64_t>()[a] = g.tokens[size_t(a)];
  return p;
}

ExpertCapacityLayout permute_to_capacity(const Tensor& experts, int64_t first_expert, int64_t num_experts) {
  const int64_t T = experts.dim(0), K = experts.dim(1), n = num_experts;
  ExpertCapacityLayout c;
  c.num_experts = n;
  c.tokens = Tensor::empty({T * n}, DType::I64);
  c.slot_of = Tensor::empty({T, K}, DType::I64);
  c.counts = Tensor::zeros({n}, DType::I64);
  std::fill_n(c.tokens.data<int64_t>(), T * n, int64_t(-1));
  int64_t* count = c.counts.data<int64_t>();
  for (int64_t i = 0; i < T * K; ++i) {  // assignment order is token order: each expert's tokens ascend
    const int64_t local = int64_t(experts.data<int32_t>()[i]) - first_expert;
    int64_t slot = -1;
    if (local >= 0 && local < n) {
      const int64_t c_row = count[local]++;
      MLARUN_CHECK(c_row < T, "permute_to_capacity: expert ", local + first_expert,
                   " chosen more than once by a token");
      slot = c_row * n + local;
      c.tokens.data<int64_t>()[slot] = i / K;
    }
    c.slot_of.data<int64_t>()[i] = slot;
  }
  return c;
}

Tensor combine_experts(const Tensor& expert_out, const Tensor& slot_of, const Tensor& experts, const Tensor& weights) {
  const int64_t T = slot_of.dim(0), K = slot_of.dim(1), D = expert_out.dim(1);
  Tensor y = Tensor::zeros({T, D}, DType::F32);
  std::vector<int64_t> order(static_cast<size_t>(K));
  for (int64_t t = 0; t < T; ++t) {
    const int64_t* slots = slot_of.data<int64_t>() + t * K;
    const int32_t* ex = experts.data<int32_t>() + t * K;
    std::iota(order.begin(), order.end(), int64_t(0));
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return ex[a] < ex[b]; });
    float* out = y.data<float>() + t * D;
    for (int64_t k : order) {
      if (slots[k] < 0) continue;
      const float w = weights.data<float>()[t * K + k];
      const float* row = expert_out.data<float>() + slots[k] * D;
      for (int64_t d = 0; d < D; ++d) out[d] += w * row[d];
    }
  }
  return y;
}

}  // namespace mlarun::ops::cpu
