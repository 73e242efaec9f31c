// The engine side of `mlarun serve`: one thread owns the Engine and steps it while work exists (continuous
// batching across every open HTTP request); HTTP handler threads submit requests through a mutex-protected
// queue and wait on each request's Channel (a condition variable) for new tokens and the finish. Aborts (a
// client that went away, a stop string) go through the same queue, so the Engine is only ever touched by its
// own thread. Also keeps vLLM's metric set for /metrics (Prometheus text, `mlarun:` prefix). Across ranks the engine
// thread is also the only one that touches MPI: it publishes each step's plan to the followers (serve_mirror.h).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/engine.h"
#include "launch/serve_mirror.h"

namespace mlarun::cli {

// One request as its handler sees it: every generated token so far and, at the end, why it finished.
struct Channel {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int32_t> tokens;
  bool finished = false;
  FinishReason reason = FinishReason::None;
  std::string error;  // set when reason is Abort
  int64_t num_prompt_tokens = 0;
  int64_t engine_id = -1;  // written and read by the engine thread only
  bool stopped = false;     // aborted for a stop string (engine thread only)

  // Waits until more than `have` tokens exist, the request finished, or `timeout` passed; returns a copy of the
  // tokens and whether it has finished.
  bool wait(size_t have, std::chrono::milliseconds timeout, std::vector<int32_t>& tokens_out);
};

class ServeEngine {
 public:
  // Starts the engine thread. `plans`: the followers' channel when serving across ranks (null: one rank).
  explicit ServeEngine(Engine& engine, PlanChannel* plans = nullptr);
  ~ServeEngine();                        // stops it; open channels finish as aborted

  std::shared_ptr<Channel> submit(std::vector<int32_t> prompt, const SamplingParams& params);
  // No-op once finished. `stop`: a stop string ended it, so /metrics counts it as finished_reason="stop".
  void abort(const std::shared_ptr<Channel>& channel, const std::string& reason, bool stop = false);
  std::string metrics_text(const std::string& model_name);  // Prometheus text format

 private:
  struct Pending {
    std::vector<int32_t> prompt;
    SamplingParams params;
    std::shared_ptr<Channel> channel;
  };
  struct Live {
    std::shared_ptr<Channel> channel;
    std::chrono::steady_clock::time_point arrival, first_token;
    int64_t num_tokens = 0;
  };
  struct Histogram {
    std::vector<double> bounds;
    std::vector<int64_t> counts;  // one per bound, plus +Inf
    double sum = 0;
    int64_t count = 0;
    explicit Histogram(std::vector<double> b) : bounds(std::move(b)), counts(bounds.size() + 1, 0) {}
    void observe(double v);
  };

  void loop();
  // Counts a finished request in the metrics; mu_ held.
  void count_finished(const Live& live, const RequestOutput& out, std::chrono::steady_clock::time_point now);
  void finish(Live& live, const RequestOutput& out);  // hands the final tokens and reason to the request's handler

  Engine& engine_;
  PlanChannel one_rank_;   // the inactive channel a single rank publishes to
  PlanPublisher publisher_;  // engine thread only
  std::mutex mu_;  // guards everything below but engine_ and live_
  std::condition_variable cv_;
  bool stop_ = false;
  std::vector<Pending> pending_;
  struct Abort {
    std::shared_ptr<Channel> channel;
    std::string reason;
    bool stop;
  };
  std::vector<Abort> aborts_;
  // Metrics, refreshed by the engine thread after each step.
  int64_t running_ = 0, waiting_ = 0, preemptions_ = 0, prompt_tokens_ = 0, generation_tokens_ = 0;
  int64_t cuda_graph_replays_ = 0;
  double kv_usage_ = 0;
  std::map<std::string, int64_t> finished_by_reason_;
  Histogram ttft_, tpot_, e2e_;
  std::map<int64_t, Live> live_;  // engine thread only: engine id -> request
  std::thread thread_;
};

}  // namespace mlarun::cli
