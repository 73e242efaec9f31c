// Sequence and SamplingParams: validation with messages that name the field, and the slot arithmetic that maps a
// token position onto the paged cache through the block table.
#include "runtime/sequence.h"

#include <cmath>
#include <utility>

#include "runtime/error.h"

namespace mlarun {

void SamplingParams::validate() const {
  MLARUN_CHECK(std::isfinite(temperature) && temperature >= 0,
               "SamplingParams.temperature must be a finite number >= 0 (0 = greedy), got ", temperature);
  MLARUN_CHECK(top_p > 0 && top_p <= 1, "SamplingParams.top_p must be in (0, 1], got ", top_p);
  MLARUN_CHECK(top_k >= 0, "SamplingParams.top_k must be >= 0 (0 = off), got ", top_k);
  MLARUN_CHECK(max_tokens >= 1, "SamplingParams.max_tokens must be >= 1, got ", max_tokens);
  for (int32_t id : stop_token_ids)
    MLARUN_CHECK(id >= 0, "SamplingParams.stop_token_ids must hold token ids >= 0, got ", id);
}

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
  MLARUN_CHECK(block_size >= 1, "block_size must be >= 1, got ", block_size);
  const int64_t block_index = position / block_size;
  MLARUN_CHECK(position >= 0 && block_index < static_cast<int64_t>(block_table.size()), "sequence ", id_,
               ": position ", position, " has no cache block (", block_table.size(), " blocks of ", block_size,
               " tokens)");
  return static_cast<int64_t>(block_table[block_index]) * block_size + position % block_size;
}

void Sequence::append_token(int32_t token) { token_ids_.push_back(token); }

}  // namespace mlarun
