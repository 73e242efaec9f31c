// The load generator of `mlarun bench serve`, after `vllm bench serve`: random-id prompts sent to an OpenAI-
// compatible server's /v1/completions as streams, Poisson arrivals at a request rate with at most C in flight, and
// the serving metrics computed as vLLM computes them (TTFT, TPOT, ITL, end-to-end latency; throughputs over the
// whole run), so numbers from mlarun and from vLLM's own client can be compared field by field.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "runtime/json_fwd.h"

namespace mlarun::bench {

// What /v1/models says about the served model.
struct ServerInfo {
  std::string model;          // data[0].id
  int64_t vocab_size = 0;     // data[0].vocab_size (0 when the server does not say)
  int64_t max_model_len = 0;  // data[0].max_model_len (0 when the server does not say)
};
// GET BASE_URL/v1/models; throws mlarun::Error "option --base-url: cannot reach 'URL': WHY" when it does not
// answer (connection refused, timeout, not HTTP, no model listed).
ServerInfo probe_server(const std::string& base_url, double timeout_s = 10.0);

struct ServeLoadOptions {
  std::string base_url;  // scheme://host[:port][/prefix], no trailing slash needed
  std::string model;
  int64_t num_prompts = 1000;
  int64_t input_len = 1024;
  int64_t output_len = 128;
  int64_t vocab_size = 0;       // random prompt ids in [0, vocab_size)
  double request_rate = 0;      // requests per second (Poisson); infinity: all at once
  int64_t max_concurrency = 0;  // 0: unlimited
  uint64_t seed = 0;
  double request_timeout_s = 6 * 3600.0;  // vLLM's aiohttp timeout
};

// One request as the client saw it (times in seconds).
struct RequestOutcome {
  bool success = false;
  std::string error;
  int64_t prompt_len = 0;
  int64_t output_tokens = 0;  // the usage chunk's completion_tokens, else the number of text chunks
  double ttft = 0;            // first text chunk - send
  double latency = 0;         // last byte - send
  std::vector<double> itl;    // gaps between text chunks
};

// Called from the dispatching thread at most every few hundred milliseconds, and once at the end.
using LoadProgress = std::function<void(int64_t finished, int64_t failed, int64_t total, bool final)>;

struct ServeLoadRun {
  std::vector<RequestOutcome> requests;  // in prompt order
  double duration_s = 0;                 // first send to last finish
};
ServeLoadRun run_serve_load(const ServeLoadOptions& o, const LoadProgress& progress);

// vLLM's BenchmarkMetrics (times in ms): mean, median, std and p99 of each latency.
struct LatencyStats {
  double mean = 0, median = 0, std = 0, p99 = 0;
};
struct ServeMetrics {
  int64_t completed = 0, failed = 0;
  int64_t total_input_tokens = 0, total_output_tokens = 0;
  double duration_s = 0;
  double request_throughput = 0, output_throughput = 0, total_token_throughput = 0;
  LatencyStats ttft, tpot, itl, e2el;
};
ServeMetrics compute_serve_metrics(const ServeLoadRun& run);

// The result table (stdout) and the JSON with vLLM's field names (plus the run's settings).
std::string serve_metrics_table(const ServeLoadOptions& o, const ServeMetrics& m);
json::Value serve_metrics_json(const ServeLoadOptions& o, const ServeMetrics& m);

}  // namespace mlarun::bench
