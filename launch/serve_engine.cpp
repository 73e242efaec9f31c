// The engine thread of `mlarun serve` and its metrics (see serve_engine.h).
#include "launch/serve_engine.h"

#include <cstdio>
#include <sstream>

#include "runtime/error.h"

namespace mlarun::cli {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }
}  // namespace

bool Channel::wait(size_t have, std::chrono::milliseconds timeout, std::vector<int32_t>& tokens_out) {
  std::unique_lock<std::mutex> lk(mu);
  cv.wait_for(lk, timeout, [&] { return finished || tokens.size() > have; });
  tokens_out = tokens;
  return finished;
}

void ServeEngine::Histogram::observe(double v) {
  size_t i = 0;
  while (i < bounds.size() && v > bounds[i]) ++i;
  ++counts[i];
  sum += v;
  ++count;
}

// vLLM's bucket bounds for the three latency histograms.
ServeEngine::ServeEngine(Engine& engine, PlanChannel* plans)
    : engine_(engine),
      publisher_(plans ? *plans : one_rank_),
      ttft_({0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
             80.0, 160.0, 640.0, 2560.0}),
      tpot_({0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
             80.0}),
      e2e_({0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0,
            960.0, 1920.0, 7680.0}) {
  thread_ = std::thread([this] { loop(); });
}

ServeEngine::~ServeEngine() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::shared_ptr<Channel> ServeEngine::submit(std::vector<int32_t> prompt, const SamplingParams& params) {
  auto channel = std::make_shared<Channel>();
  channel->num_prompt_tokens = int64_t(prompt.size());
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stop_) {
      channel->finished = true;
      channel->reason = FinishReason::Abort;
      channel->error = "the server is shutting down";
      return channel;
    }
    pending_.push_back({std::move(prompt), params, channel});
  }
  cv_.notify_all();
  return channel;
}

void ServeEngine::abort(const std::shared_ptr<Channel>& channel, const std::string& reason, bool stop) {
  {
    std::lock_guard<std::mutex> lk(channel->mu);
    if (channel->finished) return;
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    aborts_.push_back({channel, reason, stop});
  }
  cv_.notify_all();
}

void ServeEngine::count_finished(const Live& live, const RequestOutput& out, Clock::time_point now) {
  ++finished_by_reason_[live.channel->stopped ? "stop" : finish_reason_name(out.finish_reason)];
  e2e_.observe(seconds_between(live.arrival, now));
  if (live.num_tokens > 1) tpot_.observe(seconds_between(live.first_token, now) / double(live.num_tokens - 1));
}

void ServeEngine::finish(Live& live, const RequestOutput& out) {
  Channel& ch = *live.channel;
  {
    std::lock_guard<std::mutex> lk(ch.mu);
    ch.tokens = out.token_ids;  // the engine's final word (the same tokens the steps streamed)
    ch.finished = true;
    ch.reason = out.finish_reason;
    ch.error = out.error;
  }
  ch.cv.notify_all();
}

void ServeEngine::loop() {
  while (true) {
    std::vector<Pending> pending;
    std::vector<Abort> aborts;
    bool stopping = false;
    {
      std::unique_lock<std::mutex> lk(mu_);
      auto ready = [&] { return stop_ || !pending_.empty() || !aborts_.empty() || engine_.has_unfinished(); };
      if (publisher_.active())
        cv_.wait_for(lk, publisher_.heartbeat(), ready);  // woken empty-handed: the plan below is a heartbeat
      else
        cv_.wait(lk, ready);
      stopping = stop_;
      pending.swap(pending_);
      aborts.swap(aborts_);
    }
    if (stopping) {
      publisher_.publish_shutdown();
      break;
    }
    const auto now = Clock::now();
    for (Pending& p : pending) {
      try {
        const int64_t id = publisher_.add_request(engine_, std::move(p.prompt), p.params);
        p.channel->engine_id = id;
        live_[id] = Live{p.channel, now, now, 0};
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lk(p.channel->mu);
        p.channel->finished = true;
        p.channel->reason = FinishReason::Abort;
        p.channel->error = e.what();
        p.channel->cv.notify_all();
      }
    }
    bool aborted = false;
    for (Abort& a : aborts)
      if (a.channel->engine_id >= 0 && publisher_.abort(engine_, a.channel->engine_id, a.reason)) {
        aborted = true;
        a.channel->stopped = a.stop;
      }
    const bool step = engine_should_step(engine_, aborted);
    publisher_.publish(step);
    if (!step) continue;
    std::vector<RequestOutput> done;
    try {
      done = engine_.step();
    } catch (const std::exception& e) {  // the engine is broken: end every request with the reason, stop serving
      std::fprintf(stderr, "mlarun: serve: engine step failed: %s\n", e.what());
      for (auto& [id, live] : live_) {
        std::lock_guard<std::mutex> lk(live.channel->mu);
        live.channel->finished = true;
        live.channel->reason = FinishReason::Abort;
        live.channel->error = std::string("engine failure: ") + e.what();
        live.channel->cv.notify_all();
      }
      live_.clear();
      {
        std::lock_guard<std::mutex> lk(mu_);
        stop_ = true;
      }
      // Followers that failed alike are waiting for a plan; one still inside the step's collectives is ended by
      // the collective watchdog.
      publisher_.publish_shutdown();
      break;
    }
    // The step's metrics in one update, then the handlers: a client that has just seen its request finish reads
    // /metrics that already count it, and no reader sees the gauges of this step without its finished requests.
    const auto after = Clock::now();
    int64_t new_prompt = 0, new_gen = 0;
    std::vector<std::pair<Channel*, int32_t>> fresh;  // (request, token) to hand over
    for (const auto& [id, token] : engine_.last_step_tokens()) {
      auto it = live_.find(id);
      if (it == live_.end()) continue;
      Live& live = it->second;
      ++new_gen;
      if (live.num_tokens++ == 0) {
        live.first_token = after;
        new_prompt += live.channel->num_prompt_tokens;
        std::lock_guard<std::mutex> lk(mu_);
        ttft_.observe(seconds_between(live.arrival, after));
      }
      fresh.emplace_back(live.channel.get(), token);
    }
    {
      const BlockManagerStats cache = engine_.scheduler().block_manager().stats();
      std::lock_guard<std::mutex> lk(mu_);
      running_ = engine_.scheduler().num_running();
      waiting_ = engine_.scheduler().num_waiting();
      preemptions_ = engine_.scheduler().num_preemptions();
      kv_usage_ = cache.num_blocks ? double(cache.used) / double(cache.num_blocks) : 0.0;
      cuda_graph_replays_ = engine_.runner().cuda_graph_replays();
      prompt_tokens_ += new_prompt;
      generation_tokens_ += new_gen;
      for (const RequestOutput& out : done)
        if (auto it = live_.find(out.id); it != live_.end()) count_finished(it->second, out, after);
    }
    for (auto& [channel, token] : fresh) {
      {
        std::lock_guard<std::mutex> lk(channel->mu);
        channel->tokens.push_back(token);
      }
      channel->cv.notify_all();
    }
    for (const RequestOutput& out : done) {
      auto it = live_.find(out.id);
      if (it == live_.end()) continue;
      finish(it->second, out);
      live_.erase(it);
    }
  }
}

std::string ServeEngine::metrics_text(const std::string& model_name) {
  std::lock_guard<std::mutex> lk(mu_);
  std::ostringstream o;
  o.precision(17);
  const std::string labels = "model_name=\"" + model_name + "\"";
  auto metric = [&](const char* name, const char* type, const char* help, double value) {
    o << "# HELP mlarun:" << name << " " << help << "\n# TYPE mlarun:" << name << " " << type << "\nmlarun:" << name
      << "{" << labels << "} " << value << "\n";
  };
  auto histogram = [&](const char* name, const char* help, const Histogram& h) {
    o << "# HELP mlarun:" << name << " " << help << "\n# TYPE mlarun:" << name << " histogram\n";
    int64_t cumulative = 0;
    for (size_t i = 0; i <= h.bounds.size(); ++i) {
      cumulative += h.counts[i];
      o << "mlarun:" << name << "_bucket{" << labels << ",le=\"";
      if (i < h.bounds.size())
        o << h.bounds[i];
      else
        o << "+Inf";
      o << "\"} " << cumulative << "\n";
    }
    o << "mlarun:" << name << "_sum{" << labels << "} " << h.sum << "\nmlarun:" << name << "_count{" << labels << "} "
      << h.count << "\n";
  };
  metric("num_requests_running", "gauge", "Number of requests in model execution batches.", double(running_));
  metric("num_requests_waiting", "gauge", "Number of requests waiting to be processed.",
         double(waiting_ + int64_t(pending_.size())));
  metric("kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.", kv_usage_);
  metric("num_preemptions_total", "counter", "Cumulative number of preemptions from the engine.", double(preemptions_));
  metric("prompt_tokens_total", "counter", "Number of prefill tokens processed.", double(prompt_tokens_));
  metric("generation_tokens_total", "counter", "Number of generation tokens processed.", double(generation_tokens_));
  metric("cuda_graph_replays_total", "counter", "Number of decode steps replayed from CUDA graphs.",
         double(cuda_graph_replays_));
  o << "# HELP mlarun:request_success_total Count of finished requests by finish reason.\n"
       "# TYPE mlarun:request_success_total counter\n";
  for (const auto& [reason, n] : finished_by_reason_)
    o << "mlarun:request_success_total{" << labels << ",finished_reason=\"" << reason << "\"} " << n << "\n";
  histogram("time_to_first_token_seconds", "Histogram of time to first token in seconds.", ttft_);
  histogram("time_per_output_token_seconds", "Histogram of time per output token in seconds.", tpot_);
  histogram("e2e_request_latency_seconds", "Histogram of end to end request latency in seconds.", e2e_);
  return o.str();
}

}  // namespace mlarun::cli
