// ModelConfig: the architecture of a DeepSeek-V2/V3 model, one field per key of DeepSeek's `ModelArgs`
// (inference/model.py), plus what Hugging Face configs say explicitly and the demo infers (top-k method,
// renormalisation, gate bias, eps). Loaded from DeepSeek's inference JSON, the same keys in YAML, or a Hugging
// Face config.json; every error names the file, the key and the value.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/dtype.h"
#include "runtime/json_fwd.h"

namespace mlarun {

enum class ScoreFunc { Softmax, Sigmoid };
// How experts are picked: plain top-k; top-k inside the best groups (group score = max); or top-k inside the
// best groups of bias-corrected scores (group score = sum of the top two), DeepSeek-V3's noaux_tc.
enum class TopkMethod { Greedy, GroupLimitedGreedy, NoauxTc };

const char* score_func_name(ScoreFunc f);
const char* topk_method_name(TopkMethod m);

// Upper bounds on the size fields (docs/config.md §5), generously above every real model (DeepSeek-V3: 61
// layers, vocabulary 129,280, dim 7,168, 256 experts, head dims 128/64/128, 163,840 positions). They keep every
// loop and product over a config's sizes cheap; products are still computed with overflow checks.
// ModelConfig::validate() checks each field against its entry of the table in model_config_checks.cpp.
namespace config_limits {
inline constexpr int64_t kMaxLayers = 4096;            // n_layers, n_dense_layers, moe_layer_freq
inline constexpr int64_t kMaxVocab = int64_t(1) << 24;  // vocab_size (16,777,216), bos/eos token ids below it
inline constexpr int64_t kMaxWidth = int64_t(1) << 20;  // dim, inter_dim, moe_inter_dim, q/kv_lora_rank (1,048,576)
inline constexpr int64_t kMaxHeadDim = int64_t(1) << 16;  // qk_nope/qk_rope/v_head_dim (65,536)
inline constexpr int64_t kMaxHeads = int64_t(1) << 16;    // n_heads (65,536)
inline constexpr int64_t kMaxExperts = int64_t(1) << 16;  // routed/shared/activated experts, groups (65,536)
inline constexpr int64_t kMaxSeqLen = int64_t(1) << 30;   // max_seq_len, original_seq_len (1,073,741,824)
inline constexpr int64_t kMaxBatch = int64_t(1) << 24;    // max_batch_size (16,777,216)
}  // namespace config_limits

struct ModelConfig {
  // --- DeepSeek ModelArgs, with its defaults ---
  int64_t max_batch_size = 8;
  int64_t max_seq_len = 4096 * 4;
  std::string dtype = "bf16";  // weight dtype of the checkpoint: "bf16" or "fp8"
  std::string scale_fmt;       // "" or "ue8m0"
  int64_t vocab_size = 102400;
  int64_t dim = 2048;
  int64_t inter_dim = 10944;
  int64_t moe_inter_dim = 1408;
  int64_t n_layers = 27;
  int64_t n_dense_layers = 1;
  int64_t n_heads = 16;
  int64_t n_routed_experts = 64;
  int64_t n_shared_experts = 2;
  int64_t n_activated_experts = 6;
  int64_t n_expert_groups = 1;
  int64_t n_limited_groups = 1;
  ScoreFunc score_func = ScoreFunc::Softmax;
  double route_scale = 1.0;
  int64_t q_lora_rank = 0;  // 0: no query compression (a full q_proj)
  int64_t kv_lora_rank = 512;
  int64_t qk_nope_head_dim = 128;
  int64_t qk_rope_head_dim = 64;
  int64_t v_head_dim = 128;
  int64_t original_seq_len = 4096;
  double rope_theta = 10000.0;
  double rope_factor = 40;
  double beta_fast = 32;
  double beta_slow = 1;
  double mscale = 1.0;  // feeds the softmax scale (HF: rope_scaling.mscale_all_dim)

  // --- explicit in Hugging Face configs, inferred by the demo ---
  TopkMethod topk_method = TopkMethod::Greedy;
  bool norm_topk_prob = false;   // renormalise the top-k weights (demo: iff sigmoid)
  bool has_gate_bias = false;    // e_score_correction_bias (noaux_tc)
  bool use_yarn = true;          // YaRN frequencies and softmax mscale
  double rope_attention_factor = 1.0;  // HF scales cos/sin by this (1 for every official config)
  int64_t moe_layer_freq = 1;
  bool rope_interleaved = true;  // rotate adjacent pairs (2i, 2i+1); false: halves (i, i + d/2), NeoX style
  double rms_norm_eps = 1e-6;
  int64_t bos_token_id = -1;
  int64_t eos_token_id = -1;
  std::string format;  // "deepseek" or "huggingface"
  std::string source;  // file it came from

  // --- derived ---
  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  int64_t latent_dim() const { return kv_lora_rank + qk_rope_head_dim; }  // cached per token per layer
  bool is_moe_layer(int64_t layer) const;
  int64_t num_moe_layers() const;
  double softmax_scale() const;
  // The sizes below are computed with overflow checks: an overflow throws naming the keys that multiply.
  int64_t num_params() const;  // from the shapes, excluding MTP layers
  int64_t latent_cache_bytes_per_token(DType kv_dtype = DType::BF16) const;  // all layers
  // What a standard MHA with the same heads would cache: K (qk_head_dim) and V (v_head_dim) per head.
  int64_t mha_cache_bytes_per_token(DType kv_dtype = DType::BF16) const;

  // Throws naming `source` and the key when a value is out of range (config_limits), not finite, inconsistent,
  // or makes a derived size overflow. Costs O(1), whatever the values.
  void validate() const;
  // Throws when the model cannot be split over `tp` ranks (heads, routed experts, vocabulary).
  void validate_for_tp(int64_t tp) const;
  json::Value to_json() const;
};

// Picks the format from the content: a Hugging Face config has "hidden_size" or "model_type".
ModelConfig load_model_config(const std::string& path);
ModelConfig model_config_from_deepseek(const json::Value& tree, const std::string& source);
ModelConfig model_config_from_hf(const json::Value& tree, const std::string& source);
// A checkpoint directory's config.json.
ModelConfig load_model_config_from_dir(const std::string& dir);

}  // namespace mlarun
