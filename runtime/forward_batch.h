// ForwardBatch: everything one model step needs, as explicit data (no globals): the new tokens of every
// scheduled sequence laid end to end, where each goes in the paged cache, and which rows need logits.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/mla_path_rule.h"

namespace mlarun {

// Which MLA formulation attention uses. Auto: per sequence by the batch's MlaPathRule (absorbed for single-token
// decode; by default naive for every multi-token chunk, as DeepSeek serves it). Both compute the same function.
enum class MlaPath { Auto, Naive, Absorbed };

struct BatchSequence {
  int64_t token_start = 0;  // index of this sequence's first new token in the flat arrays
  int64_t num_tokens = 0;   // new tokens this step (a prefill chunk, or 1 when decoding)
  int64_t start_pos = 0;    // position of the first new token = tokens already in the cache
  std::vector<int32_t> block_table;  // cache blocks holding positions [0, start_pos + num_tokens)
};

struct ForwardBatch {
  std::vector<int32_t> token_ids;     // [T]
  std::vector<int64_t> positions;     // [T]
  std::vector<int64_t> slot_mapping;  // [T] cache slot per token (block * block_size + offset); -1: do not write
  std::vector<BatchSequence> sequences;
  std::vector<int64_t> logit_rows;    // flat token indices whose logits are returned, in this order
  MlaPath mla_path = MlaPath::Auto;
  MlaPathRule mla_rule;  // Auto's rule (runtime/mla_path_rule.h); the runner sets it from the model and its options

  int64_t num_tokens() const { return int64_t(token_ids.size()); }

  // Appends one sequence's new tokens: `tokens[i]` at position start_pos + i, written to the cache slot of that
  // position through `block_table`. Returns the flat index of its first token (for logit_rows).
  int64_t add_sequence(const int32_t* tokens, int64_t count, int64_t start_pos, std::vector<int32_t> block_table,
                       int64_t block_size);
  int64_t add_sequence(const std::vector<int32_t>& tokens, int64_t start_pos, std::vector<int32_t> block_table,
                       int64_t block_size) {
    return add_sequence(tokens.data(), int64_t(tokens.size()), start_pos, std::move(block_table), block_size);
  }
};

// The paged cache's one address formula: the slot of token `position` of a sequence whose cache blocks are
// `block_table`, block_table[position / block_size] * block_size + position % block_size. Throws, naming `who`,
// when the position has no block.
int64_t cache_slot(const std::vector<int32_t>& block_table, int64_t position, int64_t block_size,
                   const std::string& who = "sequence");

}  // namespace mlarun
