// What each attention kind caches per token, per layer and for the whole model, what one tensor-parallel rank
// holds of it, and how many tokens and sequences fit in a memory budget. Pure arithmetic from the config (the
// DeepSeek-V2 paper's formulas: MHA 2*n_h*d_h, GQA 2*G*d_h, MQA 2*d_h, MLA kv_lora_rank + rope elements per token
// per layer), so `bench cache` and the tests can hold the numbers; the real allocation is cache_measurement.h.
//
// Under tensor parallelism MLA's latent has no head axis: every rank holds all of it. Decode context parallelism
// (DCP, N ranks of a TP group, N dividing tp) shards it by token instead: each rank of the group stores every
// N-th token of every sequence, so a rank's row stays 576 values but it holds 1/N of the tokens (1,152 / N bytes
// per token per layer in bf16), and the group holds N times a rank's tokens. MHA/GQA split their kv heads; GQA
// groups no further than one per rank, and MQA's single head is replicated; DCP is MLA only (dcp 1 for them).
// The DCP merge traffic per decoded token sits beside the all-reduce every TP layer already does (DecodeComm).
//
// Bytes follow cache_dtype.h: bf16 2 B per value; fp8/int8 1 B per value plus a 4 B scale per 128-value tile
// (MLA 656 B per token per layer, its RoPE part bf16; a baseline K or V head of 128 values 132 B). A sliding window
// (kind.window W) keeps the heads' row but only min(L, W) tokens of a sequence of L, so sequences in a budget are
// counted per sequence (BudgetCapacity::max_full_sequences).
#pragma once

#include <cstdint>
#include <string>

#include "bench/attention_kind.h"
#include "bench/cache_dtype.h"
#include "runtime/model_config.h"

namespace mlarun {

struct CacheFootprint {
  AttentionKind kind;
  CacheDtype dtype = CacheDtype::BF16;
  int64_t tp = 1;
  int64_t dcp = 1;                                // decode context parallel size (MLA only; 1 = off)
  int64_t n_layers = 0;
  int64_t kv_heads = 0;                           // whole model (0 for MLA)
  int64_t kv_heads_per_rank = 0;                  // 0 for MLA
  int64_t elements_per_token_layer = 0;           // whole model, as the paper counts
  int64_t row_elements_per_rank = 0;              // one rank's row for each token it stores (MLA: 576 at any dcp)
  int64_t token_layer_bytes = 0;                  // whole model, scales counted (MLA fp8: 656)
  int64_t row_bytes_per_rank = 0;                 // one rank's row in bytes, scales counted (MLA fp8: 656)
  bool replicated = false;                        // every rank (or several) holds the same values

  int64_t bytes_per_token_layer() const { return token_layer_bytes; }
  int64_t bytes_per_token() const { return bytes_per_token_layer() * n_layers; }
  // One rank's bytes per token of the context it serves: its row over the dcp ranks sharing the tokens (1,152 / N
  // for MLA in bf16; fractional only where N does not divide the row's bytes, e.g. fp8 at dcp 16).
  double bytes_per_token_layer_per_rank() const { return double(row_bytes_per_rank) / double(dcp); }
  double bytes_per_token_per_rank() const { return bytes_per_token_layer_per_rank() * double(n_layers); }
  // One rank's block: block_size of its own tokens in every layer. Under DCP it backs a virtual block of
  // block_size * dcp tokens of the group.
  int64_t bytes_per_rank_block(int64_t block_size) const { return row_bytes_per_rank * n_layers * block_size; }
};

// Throws naming the kind, tp and dcp when the heads cannot be split over tp ranks, when dcp < 1 or does not
// divide tp, or when dcp > 1 for a kind other than MLA.
CacheFootprint cache_footprint(const ModelConfig& c, const AttentionKind& kind, CacheDtype dtype, int64_t tp,
                               int64_t dcp = 1);

// Bytes of one token's row of `row_values` values for `kind` in `dtype`, scales counted: MLA's row is the
// kv_lora_rank latent (quantized) and the RoPE key (bf16); a baseline's row is K and V heads of head_dim values.
int64_t kv_row_bytes(const ModelConfig& c, const AttentionKind& kind, int64_t row_values, CacheDtype dtype);

// A caveat to print beside a footprint ("" when none): a sliding window caches min(L, W) tokens per sequence.
std::string footprint_note(const CacheFootprint& f);

// One rank's share of the bf16 weights: num_params * 2 / tp (the same model weights for every attention kind).
int64_t weight_bytes_per_rank(const ModelConfig& c, int64_t tp);

// Paged capacity in a budget: whole blocks of block_size tokens per rank over all layers; under DCP N the group
// (the scheduler's view) holds virtual blocks of block_size * N tokens, N times a rank's tokens.
struct BudgetCapacity {
  int64_t memory_bytes = 0;           // the device's memory (e.g. 80 GiB)
  int64_t weight_bytes = 0;           // this rank's weights
  int64_t cache_budget_bytes = 0;     // memory - weights; <= 0 means the weights alone do not fit
  int64_t block_size = 0;             // tokens of a rank's block
  int64_t dcp = 1;
  int64_t window = 0;                 // sliding window of the kind (0: none): a sequence caches min(L, window)
  int64_t bytes_per_block = 0;        // all layers, this rank
  int64_t num_blocks = 0;             // vLLM's num_gpu_blocks (per rank = virtual blocks of the group)
  int64_t virtual_block_size() const { return block_size * dcp; }
  int64_t tokens() const { return num_blocks * virtual_block_size(); }  // the context the TP group holds
  bool fits() const { return cache_budget_bytes > 0; }
  // Tokens a sequence of seq_len keeps cached: min(seq_len, window) with a window.
  int64_t cached_tokens_per_sequence(int64_t seq_len) const {
    return window > 0 && window < seq_len ? window : seq_len;
  }
  // vLLM's figure: cached tokens over the tokens a sequence caches.
  double max_concurrency(int64_t seq_len) const {
    return double(tokens()) / double(cached_tokens_per_sequence(seq_len));
  }
  // Sequences of seq_len tokens that each get their own ceil(cached tokens / virtual_block_size) blocks.
  int64_t max_full_sequences(int64_t seq_len) const;
  // The context those sequences serve: max_full_sequences(seq_len) * seq_len.
  int64_t context_tokens(int64_t seq_len) const { return max_full_sequences(seq_len) * seq_len; }
};
BudgetCapacity capacity_in_budget(const CacheFootprint& f, int64_t memory_bytes, int64_t weight_bytes,
                                  int64_t block_size);

// Bytes one rank moves per decoded token per layer, "on the wire" in a ring model: all-reduce 2 (n-1)/n * size,
// all-gather (n-1)/n * total. Activations in bf16 (2 bytes), log-sum-exps in f32 (4 bytes).
struct DecodeComm {
  int64_t tp = 1, dcp = 1;
  int64_t heads_per_rank = 0;       // Hg = n_heads * dcp / tp: every rank of a DCP group computes the same heads
  double lse_all_gather = 0;        // DCP: each rank's Hg f32 log-sum-exps gathered over the group (N * Hg * 4)
  double partial_all_reduce = 0;    // DCP: the rescaled partial outputs, Hg * kv_lora_rank bf16, summed
  double merge() const { return lse_all_gather + partial_all_reduce; }
  double o_proj_all_reduce = 0;     // every TP layer: dim bf16 values summed over tp ranks
};
DecodeComm decode_comm(const ModelConfig& c, int64_t tp, int64_t dcp);
// The model above in words, for tables and JSON.
std::string decode_comm_model();

}  // namespace mlarun
