// Measures the paged cache for real: sizes the pools the way a runner does, from the attention layer's own cache
// row width (not the footprint formulas), allocates them with CachePool (host memory without a GPU, GPU memory
// with one), touches every byte, then fills the BlockManager with sequences until it refuses, writes each
// sequence's mark into its slots through its block table, and reads the marks back. The tokens it holds are the
// measured capacity, to set against cache_footprint.h's computed one for the same budget.
//
// Under decode context parallelism (footprint dcp N > 1) the budget is one rank's: the block manager hands out
// virtual blocks of block_size * N tokens (the group's view), block k of a sequence being block k of every rank's
// pool; token p lives on rank p % N at that rank's slot block_table[p / (block_size N)] * block_size +
// (p / N) % block_size, computed by the runtime's own context_parallel_local_slot (runtime/step_tensors.h). The
// ranks' pools have the same shape, so one pool is allocated and each rank's tokens are written and read back in
// turn: every token of the group must land in exactly one rank's slot.
//
// Quantized pools (fp8, int8) hold their scales: a row is allocated as its bytes (kv_row_bytes: values, one fp32
// scale per 128-value tile, MLA's bf16 RoPE part; 656 for MLA) of 1-byte elements (F8_E4M3 for fp8, I8 for int8),
// so the pool's size is what a quantized cache takes. A sliding-window kind fills sequences of
// min(seq_len, window) tokens.
#pragma once

#include <cstdint>

#include "bench/cache_footprint.h"
#include "runtime/tensor.h"

namespace mlarun {

// Values per token per layer in one rank's pool, as the attention layer itself sizes it.
int64_t cache_row_width(const ModelConfig& c, const AttentionKind& kind, int64_t tp);

struct CacheMeasurement {
  Device device = Device::CPU;
  int64_t budget_bytes = 0;
  int64_t block_size = 0;           // tokens of a rank's block
  int64_t dcp = 1;                  // ranks sharing the tokens; the block manager's blocks hold block_size * dcp
  int64_t row_width = 0;            // values, from the layer
  int64_t row_bytes = 0;            // bytes of that row in the footprint's kv dtype, scales counted
  DType pool_dtype = DType::BF16;   // elements the pool is allocated with (F8_E4M3 / I8: bytes of quantized rows)
  int64_t fill_len = 0;             // tokens per sequence filled: min(seq_len, window)
  int64_t num_blocks_computed = 0;  // footprint arithmetic: budget / bytes per block
  int64_t num_blocks = 0;           // allocated (per rank; = the group's virtual blocks)
  int64_t pool_bytes = 0;           // CachePool::bytes()
  int64_t resident_bytes = -1;      // host: growth of this process's resident memory after touching; -1 unknown
  int64_t sequences = 0;            // admitted by the BlockManager before it refused
  int64_t tokens = 0;               // token positions they hold (BlockManager stats; the group's under DCP)
  int64_t tokens_computed = 0;      // num_blocks_computed * block_size * dcp
  int64_t tokens_verified = 0;      // tokens whose rank's slot read back their owner's mark in every layer
  double seconds = 0;
  double deviation() const { return tokens_computed ? double(tokens - tokens_computed) / double(tokens_computed) : 0; }
};

// One rank's pools for footprint `f` (its dcp included) in `budget_bytes`, filled with sequences of up to
// `seq_len` tokens.
CacheMeasurement measure_cache_capacity(const ModelConfig& c, const CacheFootprint& f, int64_t budget_bytes,
                                        int64_t block_size, int64_t seq_len, Device device);

}  // namespace mlarun
