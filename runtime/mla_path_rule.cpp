// MlaPathRule (see mla_path_rule.h): the cost model in exact integer arithmetic.
#include "runtime/mla_path_rule.h"

#include "runtime/error.h"
#include "runtime/model_config.h"

namespace mlarun {

bool MlaPathRule::absorbed(int64_t num_tokens, int64_t start_pos) const {
  if (num_tokens == 1) return true;
  if (num_tokens < 1 || num_tokens > max_absorbed_tokens) return false;
  return projection_per_row == 0 || absorbed_is_cheaper(num_tokens, start_pos);
}

bool MlaPathRule::absorbed_is_cheaper(int64_t num_tokens, int64_t start_pos) const {
  if (projection_per_row == 0) return false;
  // n * extra * (p + (n + 1) / 2) < p * projection, doubled to stay in integers. The products stay far below 2^63
  // for any real context (n <= max_absorbed_tokens, p <= max_model_len).
  const __int128 n = num_tokens, p = start_pos;
  return n * extra_per_key * (2 * p + n + 1) < 2 * p * projection_per_row;
}

double mla_attention_macs_per_head(const ModelConfig& c, bool absorbed, int64_t num_tokens, int64_t start_pos) {
  const double n = double(num_tokens), p = double(start_pos);
  const double keys = n * p + 0.5 * n * (n + 1);
  const double projection = double(c.kv_lora_rank * (c.qk_nope_head_dim + c.v_head_dim));
  return absorbed ? n * projection + keys * double(2 * c.kv_lora_rank + c.qk_rope_head_dim)
                  : (p + n) * projection + keys * double(c.qk_nope_head_dim + c.qk_rope_head_dim + c.v_head_dim);
}

MlaPathRule mla_path_rule(const ModelConfig& c, int64_t max_absorbed_tokens) {
  MLARUN_CHECK(max_absorbed_tokens >= 1, "option --mla-absorbed-max-tokens: value ", max_absorbed_tokens,
               ": must be at least 1 (1: the absorbed path for decode only)");
  MlaPathRule rule;
  rule.max_absorbed_tokens = max_absorbed_tokens;
  rule.projection_per_row = c.kv_lora_rank * (c.qk_nope_head_dim + c.v_head_dim);
  // Negative where a latent row is shorter than an up-projected key and value: the absorbed path then always wins.
  rule.extra_per_key = 2 * c.kv_lora_rank - c.qk_nope_head_dim - c.v_head_dim;
  return rule;
}

int64_t mla_absorbed_crossing(const ModelConfig& c, int64_t start_pos) {
  const MlaPathRule rule = mla_path_rule(c, 1);
  // The absorbed path's extra work grows with n, so the chunks it wins for are 1..crossing.
  int64_t n = 0;
  while (n < (int64_t(1) << 20) && rule.absorbed_is_cheaper(n + 1, start_pos)) ++n;
  return n;
}

}  // namespace mlarun
