// ModelConfig's validation and derived quantities (docs/config.md §5-6): parameter count from the shapes
// (docs/model.md §6.1), softmax scale with the YaRN mscale (§2.7), cache bytes per token (§6.2).
#include <cmath>

#include "runtime/error.h"
#include "runtime/json.h"
#include "runtime/model_config.h"

namespace mlarun {

namespace {

// Names a field the way the config's own format spells it.
struct KeyNamer {
  bool hf;
  const char* operator()(const char* deepseek, const char* huggingface) const { return hf ? huggingface : deepseek; }
};

template <typename T>
void require(bool ok, const ModelConfig& c, const char* key, T value, const std::string& problem) {
  if (!ok) fail(c.source.empty() ? "config" : c.source, ": key '", key, "': value ", value, ": ", problem);
}

}  // namespace

bool ModelConfig::is_moe_layer(int64_t layer) const {
  return n_routed_experts > 0 && layer >= n_dense_layers && layer % moe_layer_freq == 0;
}

int64_t ModelConfig::num_moe_layers() const {
  int64_t n = 0;
  for (int64_t l = 0; l < n_layers; ++l) n += is_moe_layer(l);
  return n;
}

double ModelConfig::softmax_scale() const {
  double scale = 1.0 / std::sqrt(double(qk_head_dim()));
  if (use_yarn && rope_factor > 1 && mscale != 0) {
    double m = 0.1 * mscale * std::log(rope_factor) + 1.0;
    scale *= m * m;
  }
  return scale;
}

int64_t ModelConfig::num_params() const {
  int64_t attn = 0;
  if (q_lora_rank > 0)
    attn += dim * q_lora_rank + q_lora_rank + q_lora_rank * n_heads * qk_head_dim();
  else
    attn += dim * n_heads * qk_head_dim();
  attn += dim * latent_dim() + kv_lora_rank + kv_lora_rank * n_heads * (qk_nope_head_dim + v_head_dim);
  attn += n_heads * v_head_dim * dim;
  int64_t dense_mlp = 3 * dim * inter_dim;
  int64_t moe = n_routed_experts * dim + (has_gate_bias ? n_routed_experts : 0) +
                n_routed_experts * 3 * dim * moe_inter_dim + 3 * dim * n_shared_experts * moe_inter_dim;
  int64_t total = 2 * vocab_size * dim + dim;  // embedding, lm head, final norm
  for (int64_t l = 0; l < n_layers; ++l) total += 2 * dim + attn + (is_moe_layer(l) ? moe : dense_mlp);
  return total;
}

int64_t ModelConfig::latent_cache_bytes_per_token(DType kv_dtype) const {
  return n_layers * latent_dim() * int64_t(dtype_size(kv_dtype));
}

int64_t ModelConfig::mha_cache_bytes_per_token(DType kv_dtype) const {
  return n_layers * n_heads * (qk_head_dim() + v_head_dim) * int64_t(dtype_size(kv_dtype));
}

void ModelConfig::validate() const {
  KeyNamer k{format == "huggingface"};
  auto positive = [&](int64_t v, const char* ds, const char* hf) { require(v > 0, *this, k(ds, hf), v, "must be positive"); };
  positive(vocab_size, "vocab_size", "vocab_size");
  positive(dim, "dim", "hidden_size");
  positive(n_layers, "n_layers", "num_hidden_layers");
  positive(n_heads, "n_heads", "num_attention_heads");
  positive(kv_lora_rank, "kv_lora_rank", "kv_lora_rank");
  positive(qk_nope_head_dim, "qk_nope_head_dim", "qk_nope_head_dim");
  positive(qk_rope_head_dim, "qk_rope_head_dim", "qk_rope_head_dim");
  positive(v_head_dim, "v_head_dim", "v_head_dim");
  positive(max_seq_len, "max_seq_len", "max_position_embeddings");
  positive(max_batch_size, "max_batch_size", "max_batch_size");
  require(qk_rope_head_dim % 2 == 0, *this, k("qk_rope_head_dim", "qk_rope_head_dim"), qk_rope_head_dim,
          "RoPE rotates pairs, so it must be even");
  require(q_lora_rank >= 0, *this, k("q_lora_rank", "q_lora_rank"), q_lora_rank, "must be 0 (no compression) or positive");
  require(n_dense_layers >= 0 && n_dense_layers <= n_layers, *this, k("n_dense_layers", "first_k_dense_replace"),
          n_dense_layers, "must lie in [0, n_layers = " + std::to_string(n_layers) + "]");
  require(moe_layer_freq >= 1, *this, "moe_layer_freq", moe_layer_freq, "must be at least 1");
  if (num_moe_layers() < n_layers) positive(inter_dim, "inter_dim", "intermediate_size");
  if (num_moe_layers() > 0) {
    positive(moe_inter_dim, "moe_inter_dim", "moe_intermediate_size");
    positive(n_activated_experts, "n_activated_experts", "num_experts_per_tok");
    require(n_activated_experts <= n_routed_experts, *this, k("n_activated_experts", "num_experts_per_tok"),
            n_activated_experts, "exceeds the " + std::to_string(n_routed_experts) + " routed experts");
    require(n_shared_experts >= 0, *this, k("n_shared_experts", "n_shared_experts"), n_shared_experts, "must not be negative");
    positive(n_expert_groups, "n_expert_groups", "n_group");
    require(n_routed_experts % n_expert_groups == 0, *this, k("n_expert_groups", "n_group"), n_expert_groups,
            "must divide the " + std::to_string(n_routed_experts) + " routed experts");
    require(n_limited_groups >= 1 && n_limited_groups <= n_expert_groups, *this, k("n_limited_groups", "topk_group"),
            n_limited_groups, "must lie in [1, " + std::to_string(n_expert_groups) + "]");
    int64_t per_group = n_routed_experts / n_expert_groups;
    require(n_limited_groups * per_group >= n_activated_experts, *this, k("n_limited_groups", "topk_group"),
            n_limited_groups, "keeps fewer experts than the " + std::to_string(n_activated_experts) + " activated");
    if (topk_method == TopkMethod::NoauxTc)
      require(per_group >= 2, *this, k("n_expert_groups", "n_group"), n_expert_groups,
              "noaux_tc scores a group by its top two experts, so each group needs at least 2");
    require(route_scale > 0, *this, k("route_scale", "routed_scaling_factor"), route_scale, "must be positive");
  }
  require(rope_theta > 0, *this, "rope_theta", rope_theta, "must be positive");
  if (use_yarn) {
    require(rope_factor > 0, *this, k("rope_factor", "rope_scaling.factor"), rope_factor, "must be positive");
    require(original_seq_len > 0, *this, k("original_seq_len", "rope_scaling.original_max_position_embeddings"),
            original_seq_len, "must be positive");
    require(beta_fast > 0 && beta_slow > 0, *this, k("beta_fast", "rope_scaling.beta_fast"), beta_fast,
            "beta_fast and beta_slow must be positive");
  }
  require(rms_norm_eps > 0, *this, "rms_norm_eps", rms_norm_eps, "must be positive");
}

void ModelConfig::validate_for_tp(int64_t tp) const {
  MLARUN_CHECK(tp >= 1, "tensor-parallel size must be at least 1, got ", tp);
  KeyNamer k{format == "huggingface"};
  auto divisible = [&](int64_t v, const char* ds, const char* hf, const char* what) {
    if (v % tp != 0)
      fail(source, ": cannot split the model over ", tp, " ranks: ", k(ds, hf), " = ", v, " ", what,
           " is not divisible by ", tp);
  };
  divisible(n_heads, "n_heads", "num_attention_heads", "(attention heads)");
  if (num_moe_layers() > 0) {
    divisible(n_routed_experts, "n_routed_experts", "n_routed_experts", "(routed experts)");
    divisible(n_shared_experts * moe_inter_dim, "moe_inter_dim", "moe_intermediate_size",
              "times n_shared_experts (shared-expert width)");
  }
  if (num_moe_layers() < n_layers) divisible(inter_dim, "inter_dim", "intermediate_size", "(dense MLP width)");
  divisible(vocab_size, "vocab_size", "vocab_size", "(vocabulary)");
}

json::Value ModelConfig::to_json() const {
  json::Value j = json::Value::object();
  j["format"] = format;
  j["source"] = source;
  j["vocab_size"] = vocab_size;
  j["dim"] = dim;
  j["inter_dim"] = inter_dim;
  j["moe_inter_dim"] = moe_inter_dim;
  j["n_layers"] = n_layers;
  j["n_dense_layers"] = n_dense_layers;
  j["n_heads"] = n_heads;
  j["n_routed_experts"] = n_routed_experts;
  j["n_shared_experts"] = n_shared_experts;
  j["n_activated_experts"] = n_activated_experts;
  j["n_expert_groups"] = n_expert_groups;
  j["n_limited_groups"] = n_limited_groups;
  j["score_func"] = score_func_name(score_func);
  j["topk_method"] = topk_method_name(topk_method);
  j["norm_topk_prob"] = norm_topk_prob;
  j["route_scale"] = route_scale;
  j["q_lora_rank"] = q_lora_rank;
  j["kv_lora_rank"] = kv_lora_rank;
  j["qk_nope_head_dim"] = qk_nope_head_dim;
  j["qk_rope_head_dim"] = qk_rope_head_dim;
  j["v_head_dim"] = v_head_dim;
  j["max_seq_len"] = max_seq_len;
  j["original_seq_len"] = original_seq_len;
  j["rope_theta"] = rope_theta;
  j["rope_factor"] = rope_factor;
  j["beta_fast"] = beta_fast;
  j["beta_slow"] = beta_slow;
  j["mscale"] = mscale;
  j["use_yarn"] = use_yarn;
  j["dtype"] = dtype;
  j["qk_head_dim"] = qk_head_dim();
  j["softmax_scale"] = softmax_scale();
  j["num_params"] = num_params();
  j["latent_cache_bytes_per_token_bf16"] = latent_cache_bytes_per_token(DType::BF16);
  j["mha_cache_bytes_per_token_bf16"] = mha_cache_bytes_per_token(DType::BF16);
  return j;
}

}  // namespace mlarun
