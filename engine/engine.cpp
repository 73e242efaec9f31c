// Engine step loop (see engine.h).
#include "engine/engine.h"

#include <algorithm>
#include <chrono>

#include "kernels/cpu/sampling.h"
#include "kernels/ops.h"
#include "runtime/error.h"

namespace mlarun {

namespace {
RuntimeOptions with_runner_cache(RuntimeOptions options, const ModelRunner& runner) {
  if (options.num_blocks == -1) options.num_blocks = runner.num_blocks();
  return options;
}
}  // namespace

Engine::Engine(RuntimeOptions options, ModelRunner& runner)
    : runner_(runner), scheduler_(with_runner_cache(std::move(options), runner)) {
  MLARUN_CHECK(scheduler_.config().scheduler_block_size() == runner.block_size() &&
                   scheduler_.config().num_blocks <= runner.num_blocks(),
               "engine: scheduler wants ", scheduler_.config().num_blocks, " blocks of ",
               scheduler_.config().scheduler_block_size(), " tokens, the model's cache has ", runner.num_blocks(),
               " of ", runner.block_size());
}

int64_t Engine::add_request(std::vector<int32_t> prompt, SamplingParams params, RequestOptions options) {
  const int64_t vocab = runner_.vocab_size();
  for (int32_t t : prompt)
    MLARUN_CHECK(t >= 0 && t < vocab, "request ", next_id_, ": token id ", t, " is outside the vocabulary [0, ", vocab,
                 ")");
  MLARUN_CHECK(!options.keep_prompt_logits || !scheduler_.config().enable_prefix_caching,
               "request ", next_id_, ": prompt logits need an engine with prefix caching off (a cached prefix is not recomputed)");
  int64_t id = next_id_++;
  options_[id] = options;
  partial_[id].prompt_token_ids = prompt;
  scheduler_.add(std::make_unique<Sequence>(id, std::move(prompt), std::move(params)));
  ++num_added_;
  return id;
}

// Positions of `s` whose logits the step must return: every prompt position of a prefill chunk when the request
// keeps prompt logits, and the last position when the sequence samples. Sorted, without repeats.
std::vector<int64_t> Engine::logit_positions(const ScheduledSequence& s) const {
  std::vector<int64_t> positions;
  const int64_t end = s.start_pos + s.num_new_tokens;
  if (options_.at(s.seq->id()).keep_prompt_logits && s.is_prefill)
    for (int64_t p = s.start_pos; p < std::min(end, s.seq->num_prompt_tokens()); ++p) positions.push_back(p);
  if (s.samples && (positions.empty() || positions.back() != end - 1)) positions.push_back(end - 1);
  return positions;
}

ForwardBatch Engine::build_batch(const ScheduledBatch& scheduled) const {
  ForwardBatch b;
  b.mla_rule = runner_.mla_path_rule();
  const int64_t bs = scheduler_.block_manager().block_size();  // under DCP the group's block: virtual slots
  for (const ScheduledSequence& s : scheduled.seqs) {
    const Sequence& seq = *s.seq;
    const int64_t first =
        b.add_sequence(seq.token_ids().data() + s.start_pos, s.num_new_tokens, s.start_pos, seq.block_table, bs);
    for (int64_t p : logit_positions(s)) b.logit_rows.push_back(first + p - s.start_pos);
  }
  return b;
}

RequestOutput Engine::collect(Sequence& seq) {
  RequestOutput out = std::move(partial_[seq.id()]);
  partial_.erase(seq.id());
  options_.erase(seq.id());
  out.id = seq.id();
  out.token_ids = seq.completion_tokens();
  out.finish_reason = seq.finish_reason;
  out.error = seq.error_message;
  ++num_done_;
  return out;
}

std::vector<RequestOutput> Engine::step() {
  auto t0 = std::chrono::steady_clock::now();
  ScheduledBatch scheduled = scheduler_.schedule();
  std::vector<int32_t> sampled;
  last_step_tokens_.clear();
  if (!scheduled.empty()) {
    ForwardBatch batch = build_batch(scheduled);
    Tensor logits = runner_.execute(batch);  // on the model's device
    const int64_t V = runner_.vocab_size();
    // Rows to sample, each with its request's parameters and one uniform drawn from its own RNG (greedy rows draw
    // nothing), chosen in one ops::sample_rows call on the logits' device. Only the rows a request keeps (prompt
    // logits, keep_logits) come to the host, in one copy.
    std::vector<int64_t> sample_rows, keep_rows;
    std::vector<std::vector<std::vector<float>>*> keep_into;  // where each kept row goes, in order
    std::vector<SamplingParams> sample_params;
    std::vector<double> uniforms;
    int64_t row = 0;
    for (const ScheduledSequence& s : scheduled.seqs) {
      Sequence& seq = *s.seq;
      RequestOutput& part = partial_[seq.id()];
      const RequestOptions& opt = options_.at(seq.id());
      int64_t prompt_kept = int64_t(part.prompt_logits.size());
      for (int64_t p : logit_positions(s)) {
        // Prompt rows are kept once (a preempted request recomputes them).
        if (opt.keep_prompt_logits && p < seq.num_prompt_tokens() && p == prompt_kept) {
          keep_rows.push_back(row);
          keep_into.push_back(&part.prompt_logits);
          ++prompt_kept;
        }
        if (s.samples && p == s.start_pos + s.num_new_tokens - 1) {
          sample_rows.push_back(row);
          sample_params.push_back(seq.params());
          uniforms.push_back(seq.params().is_greedy() ? 0.0 : uniform_unit(seq.rng));
          if (opt.keep_logits) {
            keep_rows.push_back(row);
            keep_into.push_back(&part.logits);
          }
        }
        ++row;
      }
    }
    if (!keep_rows.empty()) {
      const Tensor kept = ops::to_host_f32(ops::gather_rows(logits, keep_rows));
      for (size_t i = 0; i < keep_rows.size(); ++i) {
        const float* l = kept.data<float>() + int64_t(i) * V;
        keep_into[i]->emplace_back(l, l + V);
      }
    }
    if (runner_.is_driver() && !sample_rows.empty())
      sampled = ops::sample_rows(ops::gather_rows(logits, sample_rows), sample_params, uniforms);
    else
      sampled.assign(sample_rows.size(), 0);
    runner_.sync_sampled(sampled);
    stats_.generated_tokens += int64_t(sampled.size());
    for (const ScheduledSequence& s : scheduled.seqs)
      if (s.is_prefill) stats_.prompt_tokens_computed += s.num_new_tokens;
    BlockManagerStats now = scheduler_.block_manager().stats();  // before postprocess frees finished sequences
    if (now.used > stats_.peak_cache.used) stats_.peak_cache = now;
    stats_.peak_running = std::max<int64_t>(stats_.peak_running, int64_t(scheduled.seqs.size()));
    size_t next_sample = 0;
    for (const ScheduledSequence& s : scheduled.seqs)
      if (s.samples) last_step_tokens_.emplace_back(s.seq->id(), sampled[next_sample++]);
    scheduler_.postprocess(scheduled, sampled);
    ++stats_.steps;
  }
  std::vector<RequestOutput> done;
  for (auto& seq : scheduler_.take_finished()) done.push_back(collect(*seq));
  stats_.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  MLARUN_CHECK(!scheduled.empty() || !done.empty() || scheduler_.is_finished(),
               "engine: the scheduler made no progress with ", scheduler_.num_waiting(), " waiting and ",
               scheduler_.num_running(), " running requests");
  return done;
}

std::vector<RequestOutput> Engine::run(const std::function<void(int64_t, int64_t, const EngineStats&)>& progress) {
  std::vector<RequestOutput> all;
  while (true) {
    std::vector<RequestOutput> done = step();
    for (auto& d : done) all.push_back(std::move(d));
    if (progress) progress(num_done_, num_added_, stats_);
    if (scheduler_.is_finished()) break;
  }
  std::sort(all.begin(), all.end(), [](const RequestOutput& a, const RequestOutput& b) { return a.id < b.id; });
  return all;
}

}  // namespace mlarun
