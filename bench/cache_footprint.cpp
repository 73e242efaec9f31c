// Cache bytes per token and capacity in a budget (see cache_footprint.h).
#include "bench/cache_footprint.h"

#include "runtime/error.h"

namespace mlarun {

CacheFootprint cache_footprint(const ModelConfig& c, const AttentionKind& kind, DType dtype, int64_t tp) {
  KvHeadLayout layout = kv_head_layout(c, kind, tp, 0);  // every rank holds the same amount
  CacheFootprint f;
  f.kind = kind;
  f.dtype = dtype;
  f.tp = tp;
  f.n_layers = c.n_layers;
  if (kind.is_mla()) {
    f.elements_per_token_layer = c.kv_lora_rank + c.qk_rope_head_dim;  // d_c + d_h^R
    f.elements_per_token_layer_per_rank = f.elements_per_token_layer;  // no head axis: replicated
    f.replicated = tp > 1;
    return f;
  }
  const int64_t d = baseline_head_dim(c);
  f.kv_heads = layout.kv_heads;
  f.kv_heads_per_rank = layout.local_kv_heads;
  f.elements_per_token_layer = 2 * f.kv_heads * d;  // K and V
  f.elements_per_token_layer_per_rank = 2 * f.kv_heads_per_rank * d;
  f.replicated = layout.replicated();
  return f;
}

std::string footprint_note(const CacheFootprint& f) {
  if (f.kind.is_mla() && f.dtype == DType::F8_E4M3)
    return "FP8 latent caches also keep scales (not counted)";
  return "";
}

int64_t weight_bytes_per_rank(const ModelConfig& c, int64_t tp) {
  MLARUN_CHECK(tp >= 1, "weight_bytes_per_rank: tp ", tp);
  return c.num_params() * 2 / tp;
}

int64_t BudgetCapacity::max_full_sequences(int64_t seq_len) const {
  MLARUN_CHECK(seq_len >= 1 && block_size >= 1, "max_full_sequences: seq_len ", seq_len, ", block size ", block_size);
  return num_blocks / ((seq_len + block_size - 1) / block_size);
}

BudgetCapacity capacity_in_budget(const CacheFootprint& f, int64_t memory_bytes, int64_t weight_bytes,
                                  int64_t block_size) {
  MLARUN_CHECK(block_size >= 1, "capacity_in_budget: block size ", block_size);
  BudgetCapacity cap;
  cap.memory_bytes = memory_bytes;
  cap.weight_bytes = weight_bytes;
  cap.cache_budget_bytes = memory_bytes - weight_bytes;
  cap.block_size = block_size;
  cap.bytes_per_block = f.bytes_per_token_per_rank() * block_size;
  cap.num_blocks = cap.fits() ? cap.cache_budget_bytes / cap.bytes_per_block : 0;
  return cap;
}

}  // namespace mlarun
