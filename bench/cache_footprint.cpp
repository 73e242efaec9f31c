// Cache bytes per token, capacity in a budget and decode communication (see cache_footprint.h).
#include "bench/cache_footprint.h"

#include "runtime/error.h"

namespace mlarun {

int64_t kv_row_bytes(const ModelConfig& c, const AttentionKind& kind, int64_t row_values, CacheDtype dtype) {
  if (kind.is_mla()) {  // [latent | rope]: the latent quantized, the RoPE key kept in bf16
    MLARUN_CHECK(row_values == c.latent_dim(), "kv_row_bytes: an MLA row holds ", c.latent_dim(), " values, not ",
                 row_values);
    return cache_values_bytes(c.kv_lora_rank, dtype) + 2 * c.qk_rope_head_dim;
  }
  const int64_t d = baseline_head_dim(c);  // [K heads | V heads], each head quantized on its own
  MLARUN_CHECK(d > 0 && row_values % d == 0, "kv_row_bytes: ", row_values, " values are not whole heads of ", d);
  return (row_values / d) * cache_values_bytes(d, dtype);
}

CacheFootprint cache_footprint(const ModelConfig& c, const AttentionKind& kind, CacheDtype dtype, int64_t tp,
                               int64_t dcp) {
  KvHeadLayout layout = kv_head_layout(c, kind, tp, 0);  // every rank holds the same amount
  MLARUN_CHECK(dcp >= 1 && tp % dcp == 0, "cache_footprint: decode context parallel size ", dcp,
               " must be at least 1 and divide the tensor-parallel size ", tp);
  MLARUN_CHECK(dcp == 1 || kind.is_mla(), "cache_footprint: decode context parallelism applies to MLA only, not ",
               kind.name(), " (dcp ", dcp, ")");
  CacheFootprint f;
  f.kind = kind;
  f.dtype = dtype;
  f.tp = tp;
  f.dcp = dcp;
  f.n_layers = c.n_layers;
  if (kind.is_mla()) {
    f.elements_per_token_layer = c.kv_lora_rank + c.qk_rope_head_dim;  // d_c + d_h^R
    f.row_elements_per_rank = f.elements_per_token_layer;              // no head axis: the whole row
    f.replicated = tp / dcp > 1;  // tp / dcp groups each hold the whole context
    f.token_layer_bytes = f.row_bytes_per_rank = kv_row_bytes(c, kind, f.row_elements_per_rank, dtype);
    return f;
  }
  const int64_t d = baseline_head_dim(c);
  f.kv_heads = layout.kv_heads;
  f.kv_heads_per_rank = layout.local_kv_heads;
  f.elements_per_token_layer = 2 * f.kv_heads * d;  // K and V
  f.row_elements_per_rank = 2 * f.kv_heads_per_rank * d;
  f.replicated = layout.replicated();
  f.token_layer_bytes = kv_row_bytes(c, kind, f.elements_per_token_layer, dtype);
  f.row_bytes_per_rank = kv_row_bytes(c, kind, f.row_elements_per_rank, dtype);
  return f;
}

std::string footprint_note(const CacheFootprint& f) {
  if (f.kind.is_sliding()) return "caches min(L, " + std::to_string(f.kind.window) + ") tokens per sequence";
  return "";
}

int64_t weight_bytes_per_rank(const ModelConfig& c, int64_t tp) {
  MLARUN_CHECK(tp >= 1, "weight_bytes_per_rank: tp ", tp);
  return c.num_params() * 2 / tp;
}

int64_t BudgetCapacity::max_full_sequences(int64_t seq_len) const {
  MLARUN_CHECK(seq_len >= 1 && block_size >= 1 && dcp >= 1, "max_full_sequences: seq_len ", seq_len,
               ", block size ", block_size, ", dcp ", dcp);
  const int64_t cached = cached_tokens_per_sequence(seq_len);
  return num_blocks / ((cached + virtual_block_size() - 1) / virtual_block_size());
}

BudgetCapacity capacity_in_budget(const CacheFootprint& f, int64_t memory_bytes, int64_t weight_bytes,
                                  int64_t block_size) {
  MLARUN_CHECK(block_size >= 1, "capacity_in_budget: block size ", block_size);
  BudgetCapacity cap;
  cap.memory_bytes = memory_bytes;
  cap.weight_bytes = weight_bytes;
  cap.cache_budget_bytes = memory_bytes - weight_bytes;
  cap.block_size = block_size;
  cap.dcp = f.dcp;
  cap.window = f.kind.window;
  cap.bytes_per_block = f.bytes_per_rank_block(block_size);
  cap.num_blocks = cap.fits() ? cap.cache_budget_bytes / cap.bytes_per_block : 0;
  return cap;
}

DecodeComm decode_comm(const ModelConfig& c, int64_t tp, int64_t dcp) {
  MLARUN_CHECK(tp >= 1 && dcp >= 1 && tp % dcp == 0 && c.n_heads % tp == 0, "decode_comm: tp ", tp, ", dcp ", dcp,
               ", ", c.n_heads, " heads");
  constexpr double kAct = 2, kLse = 4;  // bf16 activations, f32 log-sum-exps
  auto ring_all_reduce = [](int64_t n, double size) { return 2.0 * double(n - 1) / double(n) * size; };
  auto ring_all_gather = [](int64_t n, double total) { return double(n - 1) / double(n) * total; };
  DecodeComm d;
  d.tp = tp;
  d.dcp = dcp;
  d.heads_per_rank = c.n_heads * dcp / tp;
  if (dcp > 1) {
    d.lse_all_gather = ring_all_gather(dcp, double(dcp * d.heads_per_rank) * kLse);
    d.partial_all_reduce = ring_all_reduce(dcp, double(d.heads_per_rank * c.kv_lora_rank) * kAct);
  }
  d.o_proj_all_reduce = ring_all_reduce(tp, double(c.dim) * kAct);
  return d;
}

std::string decode_comm_model() {
  return "bytes one rank sends (= receives) per decoded token per layer, ring collectives: all-reduce "
         "2 (n-1)/n x size, all-gather (n-1)/n x total; activations bf16, log-sum-exps f32";
}

}  // namespace mlarun
