// Deterministic random weights of a config's shapes (see random_weights.h).
#include "bench/random_weights.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/ops.h"
#include "kernels/random_normal.h"
#include "runtime/error.h"
#include "runtime/parallel_ranges.h"

namespace mlarun {

namespace {

using random_values::splitmix64;

uint64_t name_hash(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a
  for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ULL;
  return h;
}

}  // namespace

void random_normal_values(uint64_t stream, int64_t first_index, float* out, int64_t n) {
  parallel_ranges(n, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) out[i] = random_values::normal(stream, uint64_t(first_index + i));
  });
}

RandomWeights::RandomWeights(const ModelConfig& c, AttentionKind attention, uint64_t seed)
    : attention_(attention), seed_(seed), config_source_(c.source) {
  add("model.embed_tokens.weight", {c.vocab_size, c.dim}, Init::Embedding);
  add("model.norm.weight", {c.dim}, Init::Norm);
  add("lm_head.weight", {c.vocab_size, c.dim}, Init::Matrix);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {c.dim}, Init::Norm);
    add(p + "post_attention_layernorm.weight", {c.dim}, Init::Norm);
    add_attention(c, p + "self_attn.");
    if (!c.is_moe_layer(l)) {
      add_mlp(p + "mlp.", c.dim, c.inter_dim);
      continue;
    }
    add(p + "mlp.gate.weight", {c.n_routed_experts, c.dim}, Init::Matrix);
    if (c.has_gate_bias) add(p + "mlp.gate.e_score_correction_bias", {c.n_routed_experts}, Init::Bias);
    for (int64_t e = 0; e < c.n_routed_experts; ++e)
      add_mlp(p + "mlp.experts." + std::to_string(e) + ".", c.dim, c.moe_inter_dim);
    if (c.n_shared_experts > 0) add_mlp(p + "mlp.shared_experts.", c.dim, c.n_shared_experts * c.moe_inter_dim);
  }
}

void RandomWeights::add_attention(const ModelConfig& c, const std::string& p) {
  const int64_t H = c.n_heads;
  if (!attention_.is_mla()) {
    const int64_t d = baseline_head_dim(c), G = attention_.kv_heads(c);
    add(p + "q_proj.weight", {H * d, c.dim}, Init::Matrix);
    add(p + "k_proj.weight", {G * d, c.dim}, Init::Matrix);
    add(p + "v_proj.weight", {G * d, c.dim}, Init::Matrix);
    add(p + "o_proj.weight", {c.dim, H * d}, Init::Matrix);
    return;
  }
  if (c.q_lora_rank > 0) {
    add(p + "q_a_proj.weight", {c.q_lora_rank, c.dim}, Init::Matrix);
    add(p + "q_a_layernorm.weight", {c.q_lora_rank}, Init::Norm);
    add(p + "q_b_proj.weight", {H * c.qk_head_dim(), c.q_lora_rank}, Init::Matrix);
  } else {
    add(p + "q_proj.weight", {H * c.qk_head_dim(), c.dim}, Init::Matrix);
  }
  add(p + "kv_a_proj_with_mqa.weight", {c.latent_dim(), c.dim}, Init::Matrix);
  add(p + "kv_a_layernorm.weight", {c.kv_lora_rank}, Init::Norm);
  add(p + "kv_b_proj.weight", {H * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank}, Init::Matrix);
  add(p + "o_proj.weight", {c.dim, H * c.v_head_dim}, Init::Matrix);
}

void RandomWeights::add_mlp(const std::string& p, int64_t dim, int64_t inter) {
  add(p + "gate_proj.weight", {inter, dim}, Init::Matrix);
  add(p + "up_proj.weight", {inter, dim}, Init::Matrix);
  add(p + "down_proj.weight", {dim, inter}, Init::Matrix);
}

void RandomWeights::add(const std::string& name, const Shape& shape, Init init) {
  tensors_[name] = Spec{shape, init, splitmix64(seed_ ^ name_hash(name))};
}

std::string RandomWeights::source_name() const {
  return "random weights (" + attention_.name() + ", seed " + std::to_string(seed_) + ") for " +
         (config_source_.empty() ? std::string("a config") : config_source_);
}

const RandomWeights::Spec& RandomWeights::spec(const std::string& tensor) const {
  auto it = tensors_.find(tensor);
  if (it == tensors_.end()) fail(source_name(), ": no tensor '", tensor, "'");
  return it->second;
}

Shape RandomWeights::shape_of(const std::string& tensor) const { return spec(tensor).shape; }

Tensor RandomWeights::load(const std::string& tensor, DType dtype) const {
  const Spec& s = spec(tensor);
  return load_slice(tensor, 0, 0, s.shape.at(0), dtype);
}

RandomWeights::Slice RandomWeights::slice_of(const std::string& tensor, int dim, int64_t begin, int64_t end) const {
  const Spec& s = spec(tensor);
  const int nd = int(s.shape.size());
  MLARUN_CHECK(dim >= 0 && dim < nd && begin >= 0 && begin <= end && end <= s.shape[size_t(dim)], source_name(),
               ": slice [", begin, ", ", end, ") of dimension ", dim, " is outside tensor '", tensor, "' of shape ",
               shape_str(s.shape));
  int64_t inner = 1;
  for (int i = dim + 1; i < nd; ++i) inner *= s.shape[size_t(i)];
  Slice r;
  r.stream = s.stream;
  r.shape = s.shape;
  r.shape[size_t(dim)] = end - begin;
  // One contiguous run of the full tensor per index of the dimensions before `dim`.
  r.run = std::max<int64_t>(1, (end - begin) * inner);
  r.stride = s.shape[size_t(dim)] * inner;
  r.first = begin * inner;
  switch (s.init) {
    case Init::Norm: r.scale = 0.05f, r.offset = 1.0f; break;
    case Init::Matrix: r.scale = 1.0f / std::sqrt(float(s.shape.back())); break;
    case Init::Embedding: break;
    case Init::Bias: r.scale = 0.01f; break;
  }
  return r;
}

Tensor RandomWeights::load_slice(const std::string& tensor, int dim, int64_t begin, int64_t end, DType dtype) const {
  const Tensor out = load_slice_placed(tensor, dim, begin, end, Placement::cpu());
  return dtype == DType::F32 ? out : out.to_dtype(dtype);
}

Tensor RandomWeights::load_slice_placed(const std::string& tensor, int dim, int64_t begin, int64_t end,
                                        const Placement& placement) const {
  const Slice sl = slice_of(tensor, dim, begin, end);
  Tensor out = Tensor::empty(sl.shape, placement.dtype, placement.device);
  ops::fill_random_normal(out, sl.stream, sl.run, sl.stride, sl.first, sl.scale, sl.offset);
  return out;
}

std::vector<std::string> RandomWeights::tensor_names() const {
  std::vector<std::string> names;
  for (const auto& [name, spec] : tensors_) names.push_back(name);
  return names;
}

int64_t RandomWeights::total_values() const {
  int64_t n = 0;
  for (const auto& [name, spec] : tensors_) n += checked_numel(spec.shape, name);
  return n;
}

void write_random_cache_rows(std::vector<Tensor>& layers, const KvCacheFormat& format,
                             const std::vector<int64_t>& slots, uint64_t seed, int64_t seq, int64_t num_seqs,
                             const Placement& placement) {
  if (slots.empty()) return;
  Tensor rows = Tensor::empty({int64_t(slots.size()), format.width()}, placement.dtype, placement.device);
  for (size_t l = 0; l < layers.size(); ++l) {
    ops::fill_random_normal(rows, seed * 1000003 + uint64_t(int64_t(l) * num_seqs + seq), rows.numel(), 0, 0, 1.0f,
                            0.0f);
    if (format.quantized())
      ops::write_cache_quantized(layers[l], format, slots, rows);
    else
      ops::write_cache(layers[l], slots, rows);
  }
}

}  // namespace mlarun
