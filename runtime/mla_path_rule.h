// Which MLA formulation a sequence's new tokens take (docs/model.md §2.6). The naive path up-projects every
// cached latent of the context to per-head K/V; the absorbed path moves the up-projections onto the queries and
// the output and attends over the latents themselves. For a chunk of n new tokens over p cached ones, per head:
//   naive    = (p + n) * d_c * (d_n + d_v)        up-projection of the context
//            + K * (d_n + d_r + d_v)              attention over K = n * p + n * (n + 1) / 2 keys
//   absorbed = n * d_c * (d_n + d_v)              q_nope . W_UK and o_lat . W_UV
//            + K * (2 * d_c + d_r)                attention over the latent rows
// multiply-adds (the head count cancels). The absorbed path wins when n * (2 d_c - d_n - d_v) * (p + (n + 1) / 2)
// < p * d_c * (d_n + d_v): for DeepSeek's dims (512, 128, 128, 64) whenever n stays below about 170 and p is long
// against n. SGLang makes the same choice for short extends over a cached prefix; vLLM and DeepSeek's demo take
// the absorbed path for decode only. This is the rule, as data carried by each ForwardBatch: the runner builds
// it from the model's dims and --mla-absorbed-max-tokens; the kernels' real crossing is measured by
// `mlarun bench prefill`.
#pragma once

#include <cstdint>

namespace mlarun {

struct ModelConfig;

struct MlaPathRule {
  // Chunks of more new tokens always take the naive path. 1 (the default): decode only, as DeepSeek serves it.
  int64_t max_absorbed_tokens = 1;
  // The cost model's weights from the model's dims; 0 (the default): no model, every chunk of at most
  // max_absorbed_tokens tokens is absorbed.
  int64_t projection_per_row = 0;  // d_c * (d_n + d_v)
  int64_t extra_per_key = 0;       // (2 d_c + d_r) - (d_n + d_r + d_v) = 2 d_c - d_n - d_v (may be negative)

  // Whether a sequence with `num_tokens` new tokens after `start_pos` cached ones takes the absorbed path. One new
  // token always does (decode); a longer chunk when it is at most max_absorbed_tokens long and the cost model
  // (when it has weights) says the absorbed path does less work.
  bool absorbed(int64_t num_tokens, int64_t start_pos) const;
  // The cost model alone: the absorbed path does fewer multiply-adds (false without weights).
  bool absorbed_is_cheaper(int64_t num_tokens, int64_t start_pos) const;
};

// The multiply-adds above for one head of model `c` on the naive or the absorbed path: `num_tokens` new tokens
// after `start_pos` cached ones (what `mlarun bench prefill` reports each path's attention rate against).
double mla_attention_macs_per_head(const ModelConfig& c, bool absorbed, int64_t num_tokens, int64_t start_pos);

// The cost-model rule for model `c`, absorbing chunks of at most `max_absorbed_tokens` new tokens.
MlaPathRule mla_path_rule(const ModelConfig& c, int64_t max_absorbed_tokens);

// The longest chunk the absorbed path does less work for after `start_pos` cached tokens, by the cost model of `c`
// (0 when even one token is cheaper on the naive path: no cached prefix; capped at 2^20 tokens).
int64_t mla_absorbed_crossing(const ModelConfig& c, int64_t start_pos);

}  // namespace mlarun
