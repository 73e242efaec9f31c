// Sequence: one request's token state as the scheduler and block manager see it (ids and counts, no tensors),
// plus its SamplingParams. Each sequence owns its RNG, so a seeded request samples the same tokens whatever else
// shares its batches.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "runtime/sampling_params.h"

namespace mlarun {

enum class SequenceStatus { Waiting, Running, Finished };
enum class FinishReason { None, Length, Stop, Abort };
const char* finish_reason_name(FinishReason r);  // "none", "length", "stop", "abort" (OpenAI's finish_reason)

class Sequence {
 public:
  Sequence(int64_t id, std::vector<int32_t> prompt_token_ids, SamplingParams params = {});

  int64_t id() const { return id_; }
  const SamplingParams& params() const { return params_; }
  const std::vector<int32_t>& token_ids() const { return token_ids_; }  // prompt then completion
  int64_t num_tokens() const { return static_cast<int64_t>(token_ids_.size()); }
  int64_t num_prompt_tokens() const { return num_prompt_tokens_; }  // fixed at construction, even across preemption
  int64_t num_completion_tokens() const { return num_tokens() - num_prompt_tokens_; }
  std::vector<int32_t> completion_tokens() const;
  int32_t last_token() const;
  bool is_finished() const { return status == SequenceStatus::Finished; }

  // Blocks needed to hold every current token: ceil(num_tokens / block_size).
  int64_t num_blocks(int64_t block_size) const;
  // Cache slot of a token position: block_table[pos / bs] * bs + pos % bs. Throws if the position has no block.
  int64_t slot(int64_t position, int64_t block_size) const;

  void append_token(int32_t token);

  // Bookkeeping written by the Scheduler and BlockManager.
  SequenceStatus status = SequenceStatus::Waiting;
  FinishReason finish_reason = FinishReason::None;
  std::string error_message;        // why the request was aborted ("" otherwise)
  // Leading tokens whose cache entries are written (by a finished step, or shared from a prefix-cache hit).
  // The next step computes tokens [num_cached_tokens, ...); always < num_tokens while the sequence runs.
  int64_t num_cached_tokens = 0;
  std::vector<int32_t> block_table;  // cache block id per block_size tokens
  std::mt19937_64 rng;               // seeded with params.seed; advanced only by this request's samples

 private:
  int64_t id_;
  std::vector<int32_t> token_ids_;
  int64_t num_prompt_tokens_;
  SamplingParams params_;
};

}  // namespace mlarun
