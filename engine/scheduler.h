// Scheduler: continuous batching over the BlockManager (ids and counts only). Each step mixes decode tokens and
// chunked prefills within a token budget and a sequence budget; when the cache runs out it preempts the newest
// running sequence by recompute, so no request is lost and every request finishes.
//
// Step contract, for each ScheduledSequence s of a batch:
//   - the model computes tokens [s.start_pos, s.start_pos + s.num_new_tokens) of s.seq (start_pos equals
//     seq->num_cached_tokens at schedule time), writing their cache entries at seq->slot(pos, block_size);
//   - if s.samples, the logits of the chunk's last token are sampled: one token per such entry, in batch order,
//     handed to postprocess().
// A decode (is_prefill = false) is one token, the sequence's last one. A prefill chunk is one or more prompt
// tokens (after preemption, the "prompt" to recompute is every token the sequence holds).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "engine/block_manager.h"
#include "engine/sequence.h"
#include "runtime/runtime_options.h"

namespace mlarun {

struct ScheduledSequence {
  Sequence* seq = nullptr;
  int64_t num_new_tokens = 0;  // tokens computed this step
  int64_t start_pos = 0;       // position of the first of them (== seq->num_cached_tokens when scheduled)
  bool is_prefill = false;     // false: a one-token decode
  bool samples = false;        // the chunk reaches the sequence's last token: sample one token from its logits
};

struct ScheduledBatch {
  std::vector<ScheduledSequence> seqs;  // decodes first, then prefill chunks
  bool empty() const { return seqs.empty(); }
  int64_t num_tokens() const;   // sum of num_new_tokens
  int64_t num_samples() const;  // entries with samples = true: the size postprocess() expects
};

class Scheduler {
 public:
  // Reads the scheduling fields of `options` (budgets, max_model_len, block size and count, prefix caching, EOS);
  // the block count must be resolved (>= 1). Throws naming the option when they are invalid.
  explicit Scheduler(RuntimeOptions options);

  // Queues a request. One that can never run (empty prompt, invalid SamplingParams, prompt longer than
  // max_model_len, or more cache than the whole pool holds) is finished at once with FinishReason::Abort and an
  // error_message, and is handed back by take_finished(); the others are unaffected.
  void add(std::unique_ptr<Sequence> seq);
  // Finishes a queued or running request with FinishReason::Abort. Call between steps, never between
  // schedule() and postprocess(). Returns false if no unfinished request has that id.
  bool abort(int64_t seq_id, const std::string& reason);

  ScheduledBatch schedule();
  // `sampled` holds one token per entry of `batch` with samples = true, in batch order.
  void postprocess(const ScheduledBatch& batch, const std::vector<int32_t>& sampled);

  bool is_finished() const { return waiting_.empty() && running_.empty(); }  // nothing left to run
  std::vector<std::unique_ptr<Sequence>> take_finished();  // every request finished since the last call

  int64_t num_waiting() const { return static_cast<int64_t>(waiting_.size()); }
  int64_t num_running() const { return static_cast<int64_t>(running_.size()); }
  int64_t num_preemptions() const { return num_preemptions_; }
  const RuntimeOptions& config() const { return config_; }
  const BlockManager& block_manager() const { return block_manager_; }

 private:
  // Cache positions the request may ever write: its prompt, plus every completion token but the last.
  int64_t max_cache_positions(const Sequence& seq) const;
  std::string rejection_reason(const Sequence& seq) const;  // "" when the request can run
  void finish(Sequence& seq, FinishReason reason);
  FinishReason stop_reason(const Sequence& seq) const;  // FinishReason::None while it goes on
  void preempt_newest();
  void move_finished_out_of_running();

  RuntimeOptions config_;
  BlockManager block_manager_;
  std::deque<std::unique_ptr<Sequence>> waiting_;  // front runs first; preempted sequences return to the front
  std::deque<std::unique_ptr<Sequence>> running_;  // hold cache blocks; oldest first
  std::vector<std::unique_ptr<Sequence>> finished_;
  int64_t num_preemptions_ = 0;
};

}  // namespace mlarun
