// Scheduler: admission, chunked prefill, decode, recompute preemption and finishing (contract in scheduler.h).
#include "engine/scheduler.h"

#include <algorithm>
#include <utility>

#include "runtime/error.h"

namespace mlarun {

int64_t ScheduledBatch::num_tokens() const {
  int64_t n = 0;
  for (const auto& s : seqs) n += s.num_new_tokens;
  return n;
}

int64_t ScheduledBatch::num_samples() const {
  return std::count_if(seqs.begin(), seqs.end(), [](const ScheduledSequence& s) { return s.samples; });
}

namespace {
RuntimeOptions validated(RuntimeOptions options) {
  options.validate();
  MLARUN_CHECK(options.num_blocks >= 1, "scheduler: the cache block count is not resolved (",
               options.num_blocks, "); the runner sizes it, or set --num-gpu-blocks-override");
  return options;
}
}  // namespace

Scheduler::Scheduler(RuntimeOptions options)
    : config_(validated(std::move(options))),
      block_manager_(config_.num_blocks, config_.scheduler_block_size(), config_.enable_prefix_caching) {}

int64_t Scheduler::max_cache_positions(const Sequence& seq) const {
  const int64_t prompt = seq.num_prompt_tokens();
  const int64_t max_total = std::min(prompt + seq.params().max_tokens, config_.max_model_len);
  return std::max(prompt, max_total - 1);  // the last sampled token is never written
}

std::string Scheduler::rejection_reason(const Sequence& seq) const {
  try {
    seq.params().validate();
  } catch (const Error& e) {
    return detail::concat("request ", seq.id(), ": ", e.what());
  }
  if (seq.num_tokens() == 0) return detail::concat("request ", seq.id(), " has an empty prompt");
  if (seq.num_prompt_tokens() > config_.max_model_len)
    return detail::concat("request ", seq.id(), ": prompt of ", seq.num_prompt_tokens(),
                          " tokens is longer than max_model_len (", config_.max_model_len, ")");
  const int64_t positions = max_cache_positions(seq);
  const int64_t bs = block_manager_.block_size();  // the DCP group's block (docs/layouts.md §2.6)
  const int64_t blocks = (positions + bs - 1) / bs;
  if (blocks > config_.num_blocks)
    return detail::concat("request ", seq.id(), " needs up to ", blocks, " cache blocks (", positions,
                          " tokens: prompt ", seq.num_prompt_tokens(), " + max_tokens ", seq.params().max_tokens,
                          ", capped by max_model_len ", config_.max_model_len, ") but the whole pool holds ",
                          config_.num_blocks, " blocks of ", bs, " tokens");
  return "";
}

void Scheduler::add(std::unique_ptr<Sequence> seq) {
  MLARUN_CHECK(seq != nullptr, "Scheduler::add: null sequence");
  MLARUN_CHECK(seq->status == SequenceStatus::Waiting && seq->block_table.empty() && seq->num_cached_tokens == 0,
               "Scheduler::add: sequence ", seq->id(), " was already scheduled");
  const std::string reason = rejection_reason(*seq);
  if (!reason.empty()) {
    seq->error_message = reason;
    finish(*seq, FinishReason::Abort);
    finished_.push_back(std::move(seq));
    return;
  }
  waiting_.push_back(std::move(seq));
}

bool Scheduler::abort(int64_t seq_id, const std::string& reason) {
  for (auto* queue : {&waiting_, &running_}) {
    auto it = std::find_if(queue->begin(), queue->end(), [&](const auto& s) { return s->id() == seq_id; });
    if (it == queue->end()) continue;
    (*it)->error_message = reason;
    finish(**it, FinishReason::Abort);
    finished_.push_back(std::move(*it));
    queue->erase(it);
    return true;
  }
  return false;
}

void Scheduler::finish(Sequence& seq, FinishReason reason) {
  if (!seq.block_table.empty()) block_manager_.deallocate(seq);
  seq.status = SequenceStatus::Finished;
  seq.finish_reason = reason;
}

void Scheduler::preempt_newest() {
  std::unique_ptr<Sequence> victim = std::move(running_.back());
  running_.pop_back();
  block_manager_.deallocate(*victim);  // its tokens are kept; all of them are recomputed on readmission
  victim->status = SequenceStatus::Waiting;
  waiting_.push_front(std::move(victim));
  ++num_preemptions_;
}

ScheduledBatch Scheduler::schedule() {
  ScheduledBatch batch;
  int64_t budget = config_.max_num_batched_tokens;
  bool preempted = false;

  // 1. Decodes: running sequences with one token left to compute, oldest first. A decode that needs a block the
  //    pool lacks preempts the newest running sequence, possibly itself.
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    Sequence& seq = *running_[i];
    if (seq.num_tokens() - seq.num_cached_tokens != 1) continue;
    while (!block_manager_.can_append(seq) && running_.size() > i + 1) {
      preempt_newest();
      preempted = true;
    }
    if (!block_manager_.can_append(seq)) {  // it is the newest itself
      preempt_newest();
      preempted = true;
      break;
    }
    block_manager_.may_append(seq);
    batch.seqs.push_back({&seq, 1, seq.num_cached_tokens, /*is_prefill=*/false, /*samples=*/true});
    --budget;
  }

  // 2. Prefill chunks of running sequences whose prompt is partly computed (their blocks are already allocated).
  for (const auto& p : running_) {
    if (budget == 0) break;
    Sequence& seq = *p;
    const int64_t pending = seq.num_tokens() - seq.num_cached_tokens;
    if (pending <= 1) continue;
    const int64_t chunk = std::min(pending, budget);
    batch.seqs.push_back({&seq, chunk, seq.num_cached_tokens, /*is_prefill=*/true, chunk == pending});
    budget -= chunk;
  }

  // 3. Admit waiting sequences first come, first served, while the budgets and the pool allow; none in a step that
  //    had to preempt (the pool is short, and the preempted sequence is first in line).
  while (!preempted && budget > 0 && !waiting_.empty() && num_running() < config_.max_num_seqs) {
    Sequence& seq = *waiting_.front();
    if (!block_manager_.can_allocate(seq)) break;
    block_manager_.allocate(seq);  // prefix hits set num_cached_tokens
    seq.status = SequenceStatus::Running;
    const int64_t pending = seq.num_tokens() - seq.num_cached_tokens;
    const int64_t chunk = std::min(pending, budget);
    batch.seqs.push_back({&seq, chunk, seq.num_cached_tokens, /*is_prefill=*/true, chunk == pending});
    budget -= chunk;
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
  return batch;
}

FinishReason Scheduler::stop_reason(const Sequence& seq) const {
  const int32_t token = seq.last_token();
  const SamplingParams& params = seq.params();
  if (!params.ignore_eos && config_.eos_token_id >= 0 && token == config_.eos_token_id) return FinishReason::Stop;
  const auto& stops = params.stop_token_ids;
  if (std::find(stops.begin(), stops.end(), token) != stops.end()) return FinishReason::Stop;
  if (seq.num_completion_tokens() >= params.max_tokens) return FinishReason::Length;
  if (seq.num_tokens() >= config_.max_model_len) return FinishReason::Length;
  return FinishReason::None;
}

void Scheduler::postprocess(const ScheduledBatch& batch, const std::vector<int32_t>& sampled) {
  MLARUN_CHECK(static_cast<int64_t>(sampled.size()) == batch.num_samples(), "postprocess: batch has ",
               batch.num_samples(), " sampling sequences but ", sampled.size(), " tokens were sampled");
  size_t next = 0;
  for (const ScheduledSequence& s : batch.seqs) {
    Sequence& seq = *s.seq;
    MLARUN_CHECK(seq.status == SequenceStatus::Running && seq.num_cached_tokens == s.start_pos,
                 "postprocess: sequence ", seq.id(), " is not the one scheduled at position ", s.start_pos);
    block_manager_.mark_computed(seq, s.num_new_tokens);
    if (!s.samples) continue;
    const int32_t token = sampled[next++];
    MLARUN_CHECK(token >= 0, "postprocess: sampled token id ", token, " for sequence ", seq.id(), " is negative");
    seq.append_token(token);
    const FinishReason reason = stop_reason(seq);
    if (reason != FinishReason::None) finish(seq, reason);
  }
  move_finished_out_of_running();
}

void Scheduler::move_finished_out_of_running() {
  std::deque<std::unique_ptr<Sequence>> still_running;
  for (auto& seq : running_) {
    if (seq->is_finished())
      finished_.push_back(std::move(seq));
    else
      still_running.push_back(std::move(seq));
  }
  running_.swap(still_running);
}

std::vector<std::unique_ptr<Sequence>> Scheduler::take_finished() {
  std::vector<std::unique_ptr<Sequence>> out;
  out.swap(finished_);
  return out;
}

}  // namespace mlarun
