// The op types built from a model's config: RoPE frequencies (YaRN or plain, as Hugging Face computes them in
// f32) and the MoE routing parameters. Host arithmetic shared by every backend.
#include "kernels/op_types.h"

#include <algorithm>
#include <cmath>

namespace mlarun::ops {

RopeTable make_rope_table(const ModelConfig& c) {
  const int64_t dim = c.qk_rope_head_dim, half = dim / 2;
  RopeTable t;
  t.interleaved = c.rope_interleaved;
  t.inv_freq.resize(size_t(half));
  std::vector<float> pos_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) pos_freq[size_t(i)] = std::pow(float(c.rope_theta), float(2 * i) / float(dim));
  if (!c.use_yarn) {
    for (int64_t i = 0; i < half; ++i) t.inv_freq[size_t(i)] = 1.0f / pos_freq[size_t(i)];
    return t;
  }
  // The dimension index whose wavelength makes `rotations` turns over the original context.
  auto correction_dim = [&](double rotations) {
    return double(dim) * std::log(double(c.original_seq_len) / (rotations * 2 * M_PI)) / (2 * std::log(c.rope_theta));
  };
  double low = std::max(std::floor(correction_dim(c.beta_fast)), 0.0);
  double high = std::min(std::ceil(correction_dim(c.beta_slow)), double(dim - 1));
  if (low == high) high += 0.001;
  const float factor = float(c.rope_factor);
  for (int64_t i = 0; i < half; ++i) {
    float ramp = std::clamp(float((float(i) - low) / (high - low)), 0.0f, 1.0f);
    float extrapolation_weight = 1.0f - ramp;
    float extrapolated = 1.0f / pos_freq[size_t(i)];
    float interpolated = 1.0f / (factor * pos_freq[size_t(i)]);
    t.inv_freq[size_t(i)] = interpolated * (1.0f - extrapolation_weight) + extrapolated * extrapolation_weight;
  }
  t.attention_factor = float(c.rope_attention_factor);
  return t;
}

RoutingParams RoutingParams::from(const ModelConfig& c) {
  RoutingParams p;
  p.score_func = c.score_func;
  p.method = c.topk_method;
  p.n_groups = c.n_expert_groups;
  p.topk_groups = c.n_limited_groups;
  p.top_k = c.n_activated_experts;
  p.normalize = c.norm_topk_prob;
  p.scale = float(c.route_scale);
  return p;
}

RopeTable rope_table_on(RopeTable table, Device device) {
  Tensor host = Tensor::from_f32({int64_t(table.inv_freq.size())}, table.inv_freq);
  table.inv_freq_tensor = device == Device::CPU ? host : host.to(device);
  return table;
}

}  // namespace mlarun::ops
