// What each attention kind caches per token, per layer and for the whole model, what one tensor-parallel rank
// holds of it, and how many tokens and sequences fit in a memory budget. Pure arithmetic from the config (the
// DeepSeek-V2 paper's formulas: MHA 2*n_h*d_h, GQA 2*G*d_h, MQA 2*d_h, MLA kv_lora_rank + rope elements per token
// per layer), so `bench cache` and the tests can hold the numbers; the real allocation is cache_measurement.h.
//
// Under tensor parallelism MLA's latent has no head axis: every rank holds all of it (the remedy, decode context
// parallelism, shards the latent by token across ranks: docs/layouts.md §2.4). MHA/GQA split their kv heads;
// GQA groups no further than one per rank, and MQA's single head is replicated.
#pragma once

#include <cstdint>
#include <string>

#include "bench/attention_kind.h"
#include "runtime/dtype.h"
#include "runtime/model_config.h"

namespace mlarun {

struct CacheFootprint {
  AttentionKind kind;
  DType dtype = DType::BF16;
  int64_t tp = 1;
  int64_t n_layers = 0;
  int64_t kv_heads = 0;                           // whole model (0 for MLA)
  int64_t kv_heads_per_rank = 0;                  // 0 for MLA
  int64_t elements_per_token_layer = 0;           // whole model, as the paper counts
  int64_t elements_per_token_layer_per_rank = 0;  // what one rank stores
  bool replicated = false;                        // every rank (or several) holds the same values

  int64_t element_bytes() const { return int64_t(dtype_size(dtype)); }
  int64_t bytes_per_token_layer() const { return elements_per_token_layer * element_bytes(); }
  int64_t bytes_per_token() const { return bytes_per_token_layer() * n_layers; }
  int64_t bytes_per_token_layer_per_rank() const { return elements_per_token_layer_per_rank * element_bytes(); }
  int64_t bytes_per_token_per_rank() const { return bytes_per_token_layer_per_rank() * n_layers; }
};

// Throws naming the kind and tp when the heads cannot be split over tp ranks.
CacheFootprint cache_footprint(const ModelConfig& c, const AttentionKind& kind, DType dtype, int64_t tp);

// A caveat to print beside a footprint ("" when none): fp8 latent caches keep scales that are not counted here.
std::string footprint_note(const CacheFootprint& f);

// One rank's share of the bf16 weights: num_params * 2 / tp (the same model weights for every attention kind).
int64_t weight_bytes_per_rank(const ModelConfig& c, int64_t tp);

// Paged capacity of one rank in a budget: whole blocks of block_size tokens over all layers.
struct BudgetCapacity {
  int64_t memory_bytes = 0;           // the device's memory (e.g. 80 GiB)
  int64_t weight_bytes = 0;           // this rank's weights
  int64_t cache_budget_bytes = 0;     // memory - weights; <= 0 means the weights alone do not fit
  int64_t block_size = 0;
  int64_t bytes_per_block = 0;        // all layers, this rank
  int64_t num_blocks = 0;             // vLLM's num_gpu_blocks
  int64_t tokens() const { return num_blocks * block_size; }
  bool fits() const { return cache_budget_bytes > 0; }
  double max_concurrency(int64_t seq_len) const { return double(tokens()) / double(seq_len); }  // vLLM's figure
  // Sequences of seq_len tokens that each get their own ceil(seq_len / block_size) blocks.
  int64_t max_full_sequences(int64_t seq_len) const;
};
BudgetCapacity capacity_in_budget(const CacheFootprint& f, int64_t memory_bytes, int64_t weight_bytes,
                                  int64_t block_size);

}  // namespace mlarun
