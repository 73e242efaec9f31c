// Engine: the loop that turns requests into tokens. Each step asks the Scheduler for a batch (prefill chunks and
// decode tokens under the token and sequence budgets), lays it out as one ForwardBatch (tokens, positions,
// slot_mapping, block tables), runs the model, samples each finished-chunk sequence with its own RNG, and hands
// the tokens back to the scheduler. Every request ends with tokens and a finish reason, or an error.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/model_runner.h"
#include "engine/scheduler.h"

namespace mlarun {

struct RequestOutput {
  int64_t id = 0;
  std::vector<int32_t> prompt_token_ids;
  std::vector<int32_t> token_ids;  // generated
  FinishReason finish_reason = FinishReason::None;
  std::string error;                           // set when finish_reason is Abort
  std::vector<std::vector<float>> logits;      // per generated token, when requested
  std::vector<std::vector<float>> prompt_logits;  // per prompt position, when requested
};

struct RequestOptions {
  bool keep_logits = false;         // the logits each generated token was sampled from
  bool keep_prompt_logits = false;  // logits at every prompt position (needs prefix caching off for the request)
};

struct EngineStats {
  BlockManagerStats peak_cache;  // the cache at the step that held the most blocks
  int64_t peak_running = 0;      // most sequences in one step
  int64_t steps = 0;
  int64_t prompt_tokens_computed = 0;
  int64_t generated_tokens = 0;
  double seconds = 0;
};

class Engine {
 public:
  // Schedules with `options`; a block count of -1 takes the runner's whole cache (else at most that many).
  Engine(RuntimeOptions options, ModelRunner& runner);

  int64_t add_request(std::vector<int32_t> prompt, SamplingParams params, RequestOptions options = {});
  // Runs one step; returns the requests that finished in it.
  std::vector<RequestOutput> step();
  // Steps until every request has finished; `progress` is called after each step with (done, total).
  std::vector<RequestOutput> run(const std::function<void(int64_t, int64_t, const EngineStats&)>& progress = {});

  // Streaming: (request id, token) for every token the last step() sampled, in batch order (a request that
  // finished in that step included), so a server can hand each request its new tokens as they come.
  const std::vector<std::pair<int64_t, int32_t>>& last_step_tokens() const { return last_step_tokens_; }
  // Finishes a queued or running request with FinishReason::Abort and `reason` (its cache blocks return to the
  // pool at once); it comes back from the next step(). Call between steps. False when no unfinished request has
  // that id.
  bool abort(int64_t id, const std::string& reason) { return scheduler_.abort(id, reason); }

  bool has_unfinished() const { return !scheduler_.is_finished(); }
  const Scheduler& scheduler() const { return scheduler_; }
  const ModelRunner& runner() const { return runner_; }
  const EngineStats& stats() const { return stats_; }

 private:
  std::vector<int64_t> logit_positions(const ScheduledSequence& s) const;
  ForwardBatch build_batch(const ScheduledBatch& scheduled) const;
  RequestOutput collect(Sequence& seq);

  ModelRunner& runner_;
  Scheduler scheduler_;
  int64_t next_id_ = 0;
  int64_t num_added_ = 0;
  int64_t num_done_ = 0;
  std::map<int64_t, RequestOptions> options_;
  std::map<int64_t, RequestOutput> partial_;  // logits gathered while a request runs
  EngineStats stats_;
  std::vector<std::pair<int64_t, int32_t>> last_step_tokens_;
};

}  // namespace mlarun
