// ModelConfig's validation and derived quantities (docs/config.md §5-6): the bounds on every size field (one
// table, so no check or loop costs O(value)), parameter count from the shapes (docs/model.md §6.1) in closed form,
// softmax scale with the YaRN mscale (§2.7), cache bytes per token (§6.2). Sizes multiply with overflow checks
// (signed overflow is undefined behaviour, and printed a negative or a wrapped count before).
#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

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

// The bounds of every integer field: [min, max]. min 1 is "positive"; max is from config_limits.
struct IntBound {
  int64_t ModelConfig::*field;
  const char* deepseek;
  const char* hf;
  int64_t min, max;
};
using namespace config_limits;
constexpr IntBound kIntBounds[] = {
    {&ModelConfig::vocab_size, "vocab_size", "vocab_size", 1, kMaxVocab},
    {&ModelConfig::dim, "dim", "hidden_size", 1, kMaxWidth},
    {&ModelConfig::n_layers, "n_layers", "num_hidden_layers", 1, kMaxLayers},
    {&ModelConfig::n_heads, "n_heads", "num_attention_heads", 1, kMaxHeads},
    {&ModelConfig::kv_lora_rank, "kv_lora_rank", "kv_lora_rank", 1, kMaxWidth},
    {&ModelConfig::qk_nope_head_dim, "qk_nope_head_dim", "qk_nope_head_dim", 1, kMaxHeadDim},
    {&ModelConfig::qk_rope_head_dim, "qk_rope_head_dim", "qk_rope_head_dim", 1, kMaxHeadDim},
    {&ModelConfig::v_head_dim, "v_head_dim", "v_head_dim", 1, kMaxHeadDim},
    {&ModelConfig::max_seq_len, "max_seq_len", "max_position_embeddings", 1, kMaxSeqLen},
    {&ModelConfig::max_batch_size, "max_batch_size", "max_batch_size", 1, kMaxBatch},
    {&ModelConfig::q_lora_rank, "q_lora_rank", "q_lora_rank", 0, kMaxWidth},
    {&ModelConfig::inter_dim, "inter_dim", "intermediate_size", 0, kMaxWidth},
    {&ModelConfig::moe_inter_dim, "moe_inter_dim", "moe_intermediate_size", 0, kMaxWidth},
    {&ModelConfig::n_dense_layers, "n_dense_layers", "first_k_dense_replace", 0, kMaxLayers},
    {&ModelConfig::moe_layer_freq, "moe_layer_freq", "moe_layer_freq", 1, kMaxLayers},
    {&ModelConfig::n_routed_experts, "n_routed_experts", "n_routed_experts", 0, kMaxExperts},
    {&ModelConfig::n_shared_experts, "n_shared_experts", "n_shared_experts", 0, kMaxExperts},
    {&ModelConfig::n_activated_experts, "n_activated_experts", "num_experts_per_tok", 0, kMaxExperts},
    {&ModelConfig::n_expert_groups, "n_expert_groups", "n_group", 0, kMaxExperts},
    {&ModelConfig::n_limited_groups, "n_limited_groups", "topk_group", 0, kMaxExperts},
    {&ModelConfig::original_seq_len, "original_seq_len", "rope_scaling.original_max_position_embeddings", 0, kMaxSeqLen},
    {&ModelConfig::bos_token_id, "bos_token_id", "bos_token_id", -1, kMaxVocab - 1},
    {&ModelConfig::eos_token_id, "eos_token_id", "eos_token_id", -1, kMaxVocab - 1},
};

// Every floating-point field must be finite (the readers refuse infinity and NaN; this covers code-built configs).
struct RealField {
  double ModelConfig::*field;
  const char* deepseek;
  const char* hf;
};
constexpr RealField kRealFields[] = {
    {&ModelConfig::route_scale, "route_scale", "routed_scaling_factor"},
    {&ModelConfig::rope_theta, "rope_theta", "rope_theta"},
    {&ModelConfig::rope_factor, "rope_factor", "rope_scaling.factor"},
    {&ModelConfig::beta_fast, "beta_fast", "rope_scaling.beta_fast"},
    {&ModelConfig::beta_slow, "beta_slow", "rope_scaling.beta_slow"},
    {&ModelConfig::mscale, "mscale", "rope_scaling.mscale_all_dim"},
    {&ModelConfig::rope_attention_factor, "rope_attention_factor", "rope_scaling.attention_factor"},
    {&ModelConfig::rms_norm_eps, "rms_norm_eps", "rms_norm_eps"},
};

// A size and what it was computed from (config keys; a subtotal shows as its label, spelled out in `notes`), so an
// overflow names the keys.
struct Size {
  Size(int64_t value, std::string expression, bool is_sum = false, std::string subtotals = "")
      : v(value), expr(std::move(expression)), sum(is_sum), notes(std::move(subtotals)) {}
  int64_t v;
  std::string expr;
  bool sum;           // expr is a sum: parenthesise it inside a product
  std::string notes;  // "; <label> = <expr>" for each labelled subtotal inside
};

// Checked arithmetic on Sizes; an overflow throws "<source>: <what> overflows a signed 64-bit integer at ...".
class SizeMath {
 public:
  SizeMath(const ModelConfig& c, const char* what) : c_(c), what_(what), k_{c.format == "huggingface"} {}
  Size key(const char* deepseek, const char* hf, int64_t v) const { return Size(v, k_(deepseek, hf)); }
  static Size lit(int64_t v) { return Size(v, std::to_string(v)); }
  static Size named(const Size& s, const std::string& label) { return Size(s.v, label, false, s.notes + "; " + label + " = " + s.expr); }
  Size mul(const Size& a, const Size& b) const {
    int64_t r;
    Size out(0, factor(a) + " * " + factor(b), false, a.notes + b.notes);
    if (__builtin_mul_overflow(a.v, b.v, &r)) overflow(out, a.v, " * ", b.v);
    out.v = r;
    return out;
  }
  Size mul(const Size& a, const Size& b, const Size& c) const { return mul(mul(a, b), c); }
  Size add(const Size& a, const Size& b) const {
    int64_t r;
    Size out(0, a.expr + " + " + b.expr, true, a.notes + b.notes);
    if (__builtin_add_overflow(a.v, b.v, &r)) overflow(out, a.v, " + ", b.v);
    out.v = r;
    return out;
  }

 private:
  static std::string factor(const Size& s) { return s.sum ? "(" + s.expr + ")" : s.expr; }
  [[noreturn]] void overflow(const Size& s, int64_t a, const char* op, int64_t b) const {
    fail(c_.source.empty() ? "config" : c_.source, ": ", what_, " overflows a signed 64-bit integer at ", s.expr, " = ", a,
         op, b, s.notes.empty() ? "" : " (where" + s.notes.substr(1) + ")", ": these keys are too large together");
  }
  const ModelConfig& c_;
  const char* what_;
  KeyNamer k_;
};

}  // namespace

bool ModelConfig::is_moe_layer(int64_t layer) const {
  return n_routed_experts > 0 && layer >= n_dense_layers && moe_layer_freq >= 1 && layer % moe_layer_freq == 0;
}

int64_t ModelConfig::num_moe_layers() const {
  // The layers l in [n_dense_layers, n_layers) with l % moe_layer_freq == 0, counted without a loop.
  if (n_routed_experts <= 0 || moe_layer_freq < 1) return 0;
  int64_t first = std::max<int64_t>(n_dense_layers, 0);
  if (first >= n_layers) return 0;
  auto multiples_below = [&](int64_t x) { return x <= 0 ? 0 : (x - 1) / moe_layer_freq + 1; };  // in [0, x)
  return multiples_below(n_layers) - multiples_below(first);
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
  KeyNamer k{format == "huggingface"};
  SizeMath m(*this, "the parameter count");
  Size d = m.key("dim", "hidden_size", dim), H = m.key("n_heads", "num_attention_heads", n_heads);
  Size q = m.key("q_lora_rank", "q_lora_rank", q_lora_rank), kv = m.key("kv_lora_rank", "kv_lora_rank", kv_lora_rank);
  Size nope = m.key("qk_nope_head_dim", "qk_nope_head_dim", qk_nope_head_dim);
  Size rope = m.key("qk_rope_head_dim", "qk_rope_head_dim", qk_rope_head_dim);
  Size v = m.key("v_head_dim", "v_head_dim", v_head_dim);
  Size qk = m.add(nope, rope);
  Size attn = q_lora_rank > 0 ? m.add(m.add(m.mul(d, q), q), m.mul(q, H, qk)) : m.mul(d, H, qk);
  attn = m.add(attn, m.add(m.add(m.mul(d, m.add(kv, rope)), kv), m.mul(kv, H, m.add(nope, v))));
  attn = m.add(attn, m.mul(H, v, d));
  Size layer = m.add(m.mul(SizeMath::lit(2), d), SizeMath::named(attn, "attention weights of a layer"));
  Size total = m.add(m.add(m.mul(SizeMath::lit(2), m.key("vocab_size", "vocab_size", vocab_size), d), d),
                     m.mul(m.key("n_layers", "num_hidden_layers", n_layers), layer));  // embedding, lm head, norms
  int64_t n_moe = num_moe_layers(), n_dense = n_layers - n_moe;
  std::string layers = std::string(" of the ") + k("n_layers", "num_hidden_layers") + " (from " +
                       k("n_dense_layers", "first_k_dense_replace") + " on)";
  if (n_dense > 0) {
    Size mlp = m.mul(SizeMath::lit(3), d, m.key("inter_dim", "intermediate_size", inter_dim));
    total = m.add(SizeMath::named(total, "other weights"),
                  m.mul(Size(n_dense, "dense layers"), mlp));
  }
  if (n_moe > 0) {
    Size E = m.key("n_routed_experts", "n_routed_experts", n_routed_experts);
    Size f = m.key("moe_inter_dim", "moe_intermediate_size", moe_inter_dim);
    Size moe = has_gate_bias ? m.add(m.mul(E, d), E) : m.mul(E, d);
    moe = m.add(moe, m.mul(m.mul(E, SizeMath::lit(3)), d, f));
    moe = m.add(moe, m.mul(m.mul(SizeMath::lit(3), d), m.key("n_shared_experts", "n_shared_experts", n_shared_experts), f));
    total = m.add(SizeMath::named(total, "other weights"),
                  m.mul(Size(n_moe, "MoE layers" + layers), SizeMath::named(moe, "MoE weights of a layer")));
  }
  return total.v;
}

int64_t ModelConfig::latent_cache_bytes_per_token(DType kv_dtype) const {
  SizeMath m(*this, "the latent cache bytes per token");
  Size latent = m.add(m.key("kv_lora_rank", "kv_lora_rank", kv_lora_rank),
                      m.key("qk_rope_head_dim", "qk_rope_head_dim", qk_rope_head_dim));
  return m.mul(m.key("n_layers", "num_hidden_layers", n_layers), latent, Size(int64_t(dtype_size(kv_dtype)), "dtype bytes")).v;
}

int64_t ModelConfig::mha_cache_bytes_per_token(DType kv_dtype) const {
  SizeMath m(*this, "the MHA cache bytes per token");
  Size per_head = m.add(m.add(m.key("qk_nope_head_dim", "qk_nope_head_dim", qk_nope_head_dim),
                              m.key("qk_rope_head_dim", "qk_rope_head_dim", qk_rope_head_dim)),
                        m.key("v_head_dim", "v_head_dim", v_head_dim));
  Size heads = m.mul(m.key("n_layers", "num_hidden_layers", n_layers), m.key("n_heads", "num_attention_heads", n_heads));
  return m.mul(heads, per_head, Size(int64_t(dtype_size(kv_dtype)), "dtype bytes")).v;
}

void ModelConfig::validate() const {
  KeyNamer k{format == "huggingface"};
  // Bounds first: everything after them may multiply sizes.
  for (const IntBound& b : kIntBounds) {
    int64_t v = this->*b.field;
    const char* key = k(b.deepseek, b.hf);
    if (v > b.max)
      require(false, *this, key, v, "exceeds the limit of " + std::to_string(b.max) + " (docs/config.md §5)");
    if (v < b.min)
      require(false, *this, key, v,
              b.min == 1   ? "must be positive"
              : b.min == 0 ? "must not be negative"
                           : "must be -1 (none) or a token id");
  }
  for (const RealField& f : kRealFields)
    require(std::isfinite(this->*f.field), *this, k(f.deepseek, f.hf), this->*f.field, "must be a finite number");
  auto positive = [&](int64_t v, const char* ds, const char* hf) { require(v > 0, *this, k(ds, hf), v, "must be positive"); };
  require(qk_rope_head_dim % 2 == 0, *this, k("qk_rope_head_dim", "qk_rope_head_dim"), qk_rope_head_dim,
          "RoPE rotates pairs, so it must be even");
  require(n_dense_layers <= n_layers, *this, k("n_dense_layers", "first_k_dense_replace"), n_dense_layers,
          "must lie in [0, n_layers = " + std::to_string(n_layers) + "]");
  if (num_moe_layers() < n_layers) positive(inter_dim, "inter_dim", "intermediate_size");
  if (num_moe_layers() > 0) {
    positive(moe_inter_dim, "moe_inter_dim", "moe_intermediate_size");
    positive(n_activated_experts, "n_activated_experts", "num_experts_per_tok");
    require(n_activated_experts <= n_routed_experts, *this, k("n_activated_experts", "num_experts_per_tok"),
            n_activated_experts, "exceeds the " + std::to_string(n_routed_experts) + " routed experts");
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
    require(std::isfinite(softmax_scale()), *this, k("mscale", "rope_scaling.mscale_all_dim"), mscale,
            "makes the softmax scale overflow");
  }
  require(rms_norm_eps > 0, *this, "rms_norm_eps", rms_norm_eps, "must be positive");
  // The derived sizes must be representable (each throws naming the keys when not), so callers can print them.
  num_params();
  latent_cache_bytes_per_token(DType::F32);
  mha_cache_bytes_per_token(DType::F32);
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
