// Sequence: token bookkeeping and the slot arithmetic that maps a token position onto the paged cache through
// the block table.
#include "engine/sequence.h"

#include <cmath>
#include <utility>

#include "runtime/error.h"
#include "runtime/forward_batch.h"

namespace mlarun {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::None: return "none";
    case FinishReason::Length: return "length";
    case FinishReason::Stop: return "stop";
    case FinishReason::Abort: return "abort";
  }
  return "unknown";
}

Sequence::Sequence(int64_t id, std::vector<int32_t> prompt_token_ids, SamplingParams params)
    : rng(params.seed),
      id_(id),
      token_ids_(std::move(prompt_token_ids)),
      num_prompt_tokens_(static_cast<int64_t>(token_ids_.size())),
      params_(std::move(params)) {}

std::vector<int32_t> Sequence::completion_tokens() const {
  return {token_ids_.begin() + num_prompt_tokens_, token_ids_.end()};
}

int32_t Sequence::last_token() const {
  MLARUN_CHECK(!token_ids_.empty(), "sequence ", id_, " has no tokens");
  return token_ids_.back();
}

int64_t Sequence::num_blocks(int64_t block_size) const {
  MLARUN_CHECK(block_size >= 1, "block_size must be >= 1, got ", block_size);
  return (num_tokens() + block_size - 1) / block_size;
}

int64_t Sequence::slot(int64_t position, int64_t block_size) const {
  return cache_slot(block_table, position, block_size, "sequence " + std::to_string(id_));
}

void Sequence::append_token(int32_t token) { token_ids_.push_back(token); }

}  // namespace mlarun
