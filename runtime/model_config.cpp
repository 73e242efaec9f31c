// Loading ModelConfig from the three formats, its validation and its derived quantities (docs/config.md; the
// math the fields feed is docs/model.md).
#include "runtime/model_config.h"

#include <cmath>
#include <iostream>
#include <set>
#include <sys/stat.h>

#include "runtime/config_value.h"
#include "runtime/config_reader.h"
#include "runtime/error.h"
#include "runtime/json.h"

namespace mlarun {

const char* score_func_name(ScoreFunc f) { return f == ScoreFunc::Softmax ? "softmax" : "sigmoid"; }

const char* topk_method_name(TopkMethod m) {
  switch (m) {
    case TopkMethod::Greedy: return "greedy";
    case TopkMethod::GroupLimitedGreedy: return "group_limited_greedy";
    case TopkMethod::NoauxTc: return "noaux_tc";
  }
  return "?";
}

namespace {

ScoreFunc parse_score_func(ConfigReader& r, const std::string& key, ScoreFunc def) {
  std::string name = r.get_string(key, score_func_name(def));
  if (name == "softmax") return ScoreFunc::Softmax;
  if (name == "sigmoid") return ScoreFunc::Sigmoid;
  r.bad_value(key, "\"" + name + "\"", "expected \"softmax\" or \"sigmoid\"");
}

// The demo infers the routing variant from the score function and the group count.
void infer_routing(ModelConfig& c) {
  if (c.score_func == ScoreFunc::Sigmoid) {
    c.topk_method = TopkMethod::NoauxTc;
    c.has_gate_bias = true;
    c.norm_topk_prob = true;
  } else {
    c.topk_method = c.n_expert_groups > 1 ? TopkMethod::GroupLimitedGreedy : TopkMethod::Greedy;
    c.has_gate_bias = false;
    c.norm_topk_prob = false;
  }
}

double yarn_mscale(double factor, double mscale) { return factor <= 1 ? 1.0 : 0.1 * mscale * std::log(factor) + 1.0; }

}  // namespace

ModelConfig model_config_from_deepseek(const json::Value& tree, const std::string& source) {
  ConfigReader r(tree, source);
  ModelConfig c;
  c.format = "deepseek";
  c.source = source;
  c.max_batch_size = r.get_int("max_batch_size", c.max_batch_size);
  c.max_seq_len = r.get_int("max_seq_len", c.max_seq_len);
  c.dtype = r.get_string("dtype", c.dtype);
  if (c.dtype != "bf16" && c.dtype != "fp8") r.bad_value("dtype", "\"" + c.dtype + "\"", "expected \"bf16\" or \"fp8\"");
  c.scale_fmt = r.get_string_or_null("scale_fmt", "");
  if (!c.scale_fmt.empty() && c.scale_fmt != "ue8m0")
    r.bad_value("scale_fmt", "\"" + c.scale_fmt + "\"", "expected null or \"ue8m0\"");
  c.vocab_size = r.get_int("vocab_size", c.vocab_size);
  c.dim = r.get_int("dim", c.dim);
  c.inter_dim = r.get_int("inter_dim", c.inter_dim);
  c.moe_inter_dim = r.get_int("moe_inter_dim", c.moe_inter_dim);
  c.n_layers = r.get_int("n_layers", c.n_layers);
  c.n_dense_layers = r.get_int("n_dense_layers", c.n_dense_layers);
  c.n_heads = r.get_int("n_heads", c.n_heads);
  c.n_routed_experts = r.get_int("n_routed_experts", c.n_routed_experts);
  c.n_shared_experts = r.get_int("n_shared_experts", c.n_shared_experts);
  c.n_activated_experts = r.get_int("n_activated_experts", c.n_activated_experts);
  c.n_expert_groups = r.get_int("n_expert_groups", c.n_expert_groups);
  c.n_limited_groups = r.get_int("n_limited_groups", c.n_limited_groups);
  c.score_func = parse_score_func(r, "score_func", c.score_func);
  c.route_scale = r.get_double("route_scale", c.route_scale);
  c.q_lora_rank = r.get_int("q_lora_rank", c.q_lora_rank);
  c.kv_lora_rank = r.get_int("kv_lora_rank", c.kv_lora_rank);
  c.qk_nope_head_dim = r.get_int("qk_nope_head_dim", c.qk_nope_head_dim);
  c.qk_rope_head_dim = r.get_int("qk_rope_head_dim", c.qk_rope_head_dim);
  c.v_head_dim = r.get_int("v_head_dim", c.v_head_dim);
  c.original_seq_len = r.get_int("original_seq_len", c.original_seq_len);
  c.rope_theta = r.get_double("rope_theta", c.rope_theta);
  c.rope_factor = r.get_double("rope_factor", c.rope_factor);
  c.beta_fast = r.get_double("beta_fast", c.beta_fast);
  c.beta_slow = r.get_double("beta_slow", c.beta_slow);
  c.mscale = r.get_double("mscale", c.mscale);
  r.reject_unknown_keys();  // ModelArgs(**json) raises on an unknown key; so do we
  infer_routing(c);
  c.use_yarn = c.max_seq_len > c.original_seq_len;  // the demo switches YaRN off otherwise
  c.validate();
  return c;
}

namespace {

// Fills the RoPE fields from HF's `rope_scaling` (classic) or `rope_parameters` (transformers 5).
void read_hf_rope(ConfigReader& r, ModelConfig& c) {
  c.rope_theta = r.get_double("rope_theta", 10000.0);
  const char* key = r.has("rope_parameters") ? "rope_parameters" : "rope_scaling";
  r.ignore_keys({"rope_scaling", "rope_parameters"});  // only `key` is read; the other is a leftover twin
  if (!r.has(key) || r.is_null(key)) {
    c.use_yarn = false;
    return;
  }
  ConfigReader rs = r.child(key);
  if (rs.has("rope_theta")) c.rope_theta = rs.get_double("rope_theta", c.rope_theta);
  std::string type = rs.has("rope_type") ? rs.get_string("rope_type", "") : rs.get_string("type", "default");
  if (type == "default") {
    c.use_yarn = false;
    return;
  }
  if (type != "yarn")
    rs.bad_value(rs.has("rope_type") ? "rope_type" : "type", "\"" + type + "\"",
                 "unsupported rope scaling type (mlarun supports \"yarn\" and \"default\")");
  c.use_yarn = true;
  c.rope_factor = rs.require_double("factor");
  c.original_seq_len = rs.has("original_max_position_embeddings")
                           ? rs.get_int("original_max_position_embeddings", 0)
                           : r.get_int("max_position_embeddings", c.original_seq_len);
  c.beta_fast = rs.get_double_or_null("beta_fast", 32);
  c.beta_slow = rs.get_double_or_null("beta_slow", 1);
  double mscale = rs.get_double_or_null("mscale", 0);
  double mscale_all_dim = rs.get_double_or_null("mscale_all_dim", 0);
  c.mscale = mscale_all_dim;  // HF: the softmax scale gets yarn_get_mscale(factor, mscale_all_dim)^2 if non-zero
  if (rs.has("attention_factor") && !rs.is_null("attention_factor"))
    c.rope_attention_factor = rs.get_double("attention_factor", 1.0);
  else if (mscale != 0 && mscale_all_dim != 0)
    c.rope_attention_factor = yarn_mscale(c.rope_factor, mscale) / yarn_mscale(c.rope_factor, mscale_all_dim);
  else
    c.rope_attention_factor = yarn_mscale(c.rope_factor, 1.0);
  rs.ignore_keys({"truncate", "type", "rope_type", "rope_theta", "partial_rotary_factor"});
  rs.reject_unknown_keys();
}


// Routing as Hugging Face's native classes compute it (the fixtures' ground truth), which is narrower than
// what the config keys can say: DeepseekV2 always scores with softmax, picks greedy or group-limited greedy and
// never renormalises; DeepseekV3 always scores with sigmoid + e_score_correction_bias (noaux_tc) and
// renormalises iff norm_topk_prob. A key that asks for something else is followed the HF way, with a warning.
void read_hf_routing(ConfigReader& r, ModelConfig& c, bool v3) {
  auto warn = [&](const std::string& key, const std::string& value, const std::string& used) {
    std::cerr << "warning: " << r.source() << ": key '" << key << "': value " << value << " is not what Hugging Face's "
              << (v3 ? "DeepseekV3" : "DeepseekV2") << " computes; using " << used << "\n";
  };
  ScoreFunc asked = parse_score_func(r, "scoring_func", v3 ? ScoreFunc::Sigmoid : ScoreFunc::Softmax);
  c.score_func = v3 ? ScoreFunc::Sigmoid : ScoreFunc::Softmax;
  if (asked != c.score_func) warn("scoring_func", score_func_name(asked), score_func_name(c.score_func));
  std::string method = r.get_string("topk_method", v3 ? "noaux_tc" : "greedy");
  if (method != "greedy" && method != "group_limited_greedy" && method != "noaux_tc")
    r.bad_value("topk_method", "\"" + method + "\"", "expected greedy, group_limited_greedy or noaux_tc");
  bool norm = r.get_bool("norm_topk_prob", v3);
  if (v3) {
    c.topk_method = TopkMethod::NoauxTc;
    if (method != "noaux_tc") warn("topk_method", "\"" + method + "\"", "noaux_tc");
    c.norm_topk_prob = norm;
  } else {
    if (method == "noaux_tc")
      r.bad_value("topk_method", "\"noaux_tc\"", "DeepseekV2 supports greedy and group_limited_greedy only");
    c.topk_method = method == "greedy" ? TopkMethod::Greedy : TopkMethod::GroupLimitedGreedy;
    if (norm) warn("norm_topk_prob", "true", "no renormalisation (weights scaled by routed_scaling_factor)");
    c.norm_topk_prob = false;
  }
  c.has_gate_bias = c.topk_method == TopkMethod::NoauxTc;
}

}  // namespace

ModelConfig model_config_from_hf(const json::Value& tree, const std::string& source) {
  ConfigReader r(tree, source);
  ModelConfig c;
  c.format = "huggingface";
  c.source = source;
  std::string model_type = r.get_string("model_type", "deepseek_v3");
  if (model_type != "deepseek_v2" && model_type != "deepseek_v3" && model_type != "kimi_k2")
    r.bad_value("model_type", "\"" + model_type + "\"", "mlarun runs deepseek_v2 and deepseek_v3 models");
  bool v3 = model_type != "deepseek_v2";
  c.vocab_size = r.require_int("vocab_size");
  c.dim = r.require_int("hidden_size");
  c.n_layers = r.require_int("num_hidden_layers");
  c.n_heads = r.require_int("num_attention_heads");
  c.kv_lora_rank = r.require_int("kv_lora_rank");
  c.qk_nope_head_dim = r.require_int("qk_nope_head_dim");
  c.qk_rope_head_dim = r.require_int("qk_rope_head_dim");
  c.v_head_dim = r.require_int("v_head_dim");
  c.q_lora_rank = r.get_int_or_null("q_lora_rank", 0);
  int64_t kv_heads = r.get_int_or_null("num_key_value_heads", c.n_heads);
  if (kv_heads != c.n_heads)
    r.bad_value("num_key_value_heads", std::to_string(kv_heads),
                "MLA shares one latent across heads; it must equal num_attention_heads (" + std::to_string(c.n_heads) + ")");
  c.n_routed_experts = r.get_int_or_null("n_routed_experts", 0);
  c.n_dense_layers = r.get_int_or_null("first_k_dense_replace", 0);
  // HF's native classes make every layer from first_k_dense_replace on MoE, whatever moe_layer_freq says.
  if (int64_t freq = r.get_int_or_null("moe_layer_freq", 1); freq != 1)
    std::cerr << "warning: " << source << ": key 'moe_layer_freq': value " << freq
              << " is ignored, as Hugging Face's DeepSeek classes do (every layer after the dense ones is MoE)\n";
  // DeepseekV3 de-interleaves the rope dims before rotating (rope_interleave, default true), which equals rotating
  // adjacent pairs; with false it rotates the halves of the stored layout.
  c.rope_interleaved = !v3 || r.get_bool("rope_interleave", true);
  if (c.n_routed_experts > 0) {
    c.moe_inter_dim = r.require_int("moe_intermediate_size");
    c.n_activated_experts = r.require_int("num_experts_per_tok");
  } else {
    c.moe_inter_dim = r.get_int_or_null("moe_intermediate_size", 0);
    c.n_activated_experts = r.get_int_or_null("num_experts_per_tok", 0);
    c.n_dense_layers = c.n_layers;
  }
  c.inter_dim = c.n_dense_layers > 0 ? r.require_int("intermediate_size") : r.get_int_or_null("intermediate_size", 0);
  c.n_shared_experts = r.get_int_or_null("n_shared_experts", 0);
  c.n_expert_groups = r.get_int_or_null("n_group", 1);
  c.n_limited_groups = r.get_int_or_null("topk_group", 1);
  read_hf_routing(r, c, v3);
  c.route_scale = r.get_double_or_null("routed_scaling_factor", 1.0);
  c.rms_norm_eps = r.get_double("rms_norm_eps", 1e-6);
  c.bos_token_id = r.get_int_or_null("bos_token_id", -1);
  c.eos_token_id = r.get_int_or_null("eos_token_id", -1);
  read_hf_rope(r, c);
  c.max_seq_len = r.get_int("max_position_embeddings", c.max_seq_len);
  std::string act = r.get_string("hidden_act", "silu");
  if (act != "silu") r.bad_value("hidden_act", "\"" + act + "\"", "DeepSeek MLPs are SwiGLU (silu)");
  if (r.get_bool("tie_word_embeddings", false))
    r.bad_value("tie_word_embeddings", "true", "DeepSeek models keep a separate lm_head");
  if (r.get_bool("attention_bias", false)) r.bad_value("attention_bias", "true", "biases are not supported");
  if (r.has("quantization_config") && r.child("quantization_config").get_string("quant_method", "") == "fp8")
    c.dtype = "fp8";
  // Keys that describe training, tooling or serving and do not change the forward pass.
  r.ignore_keys({"architectures", "auto_map", "transformers_version", "torch_dtype", "dtype", "use_cache",
                 "initializer_range", "attention_dropout", "aux_loss_alpha", "seq_aux", "ep_size",
                 "num_nextn_predict_layers", "pretraining_tp", "quantization_config", "head_dim", "pad_token_id",
                 "mlp_bias", "output_router_logits", "router_aux_loss_coef", "_name_or_path",
                 "tokenizer_class", "max_window_layers", "use_sliding_window", "sliding_window"});
  r.warn_unknown_keys();  // HF configs carry tooling keys; an unfamiliar one is worth a warning, not a failure
  c.validate();
  return c;
}

ModelConfig load_model_config(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return load_model_config_from_dir(path);
  json::Value tree = load_config_tree(path);
  if (!tree.is_object()) fail(path, ": a config must be a mapping of keys to values, got a ", json::kind_name(tree));
  if (tree.contains("hidden_size") || tree.contains("model_type")) return model_config_from_hf(tree, path);
  return model_config_from_deepseek(tree, path);
}

ModelConfig load_model_config_from_dir(const std::string& dir) {
  std::string path = dir + "/config.json";
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) fail(dir, ": no config.json in the checkpoint directory");
  json::Value tree = load_config_tree(path);
  if (!tree.is_object()) fail(path, ": a config must be a JSON object");
  return model_config_from_hf(tree, path);
}

}  // namespace mlarun
