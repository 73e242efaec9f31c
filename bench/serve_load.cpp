// The load generator of `mlarun bench serve` (serve_load.h): one thread per request in flight, each a cpp-httplib
// client reading the server-sent events of one /v1/completions stream and stamping its chunks as they arrive;
// the dispatcher sleeps Poisson gaps and waits for a free slot under --max-concurrency. Metrics follow vLLM's
// benchmarks/serve.py (calculate_metrics): output tokens from the usage chunk, TPOT over output tokens - 1, ITL
// from every gap between text chunks, percentiles with linear interpolation (numpy's default).
#include "bench/serve_load.h"

#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <limits>
#include <mutex>
#include <random>
#include <thread>

#include "bench/bench_common.h"
#include "bench/text_table.h"
#include "runtime/error.h"
#include "runtime/json.h"

namespace mlarun::bench {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// "http://host:port/prefix" -> {"http://host:port", "/prefix"}.
std::pair<std::string, std::string> split_url(const std::string& url) {
  const size_t scheme = url.find("://");
  if (scheme == std::string::npos || (url.compare(0, scheme, "http") != 0 && url.compare(0, scheme, "https") != 0))
    fail("option --base-url: value '", url, "': expected http://HOST:PORT (or https://...)");
  const size_t slash = url.find('/', scheme + 3);
  std::string host = url.substr(0, slash), prefix = slash == std::string::npos ? "" : url.substr(slash);
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  if (host.size() <= scheme + 3) fail("option --base-url: value '", url, "': no host");
  return {host, prefix};
}

std::string describe(httplib::Error e) {  // httplib's names are terse ("Connection")
  switch (e) {
    case httplib::Error::Connection: return "could not connect (connection refused: is the server running there?)";
    case httplib::Error::ConnectionTimeout: return "connection timed out";
    case httplib::Error::Read: return "no complete answer (read failed or timed out)";
    case httplib::Error::Write: return "could not send the request";
    case httplib::Error::SSLConnection: return "TLS connection failed";
    default: return httplib::to_string(e);
  }
}

// Reads one stream: the `data:` lines of the server-sent events as they come.
RequestOutcome send_one(const ServeLoadOptions& o, const std::vector<int32_t>& prompt) {
  RequestOutcome out;
  out.prompt_len = int64_t(prompt.size());
  const auto [host, prefix] = split_url(o.base_url);
  httplib::Client client(host);
  client.set_connection_timeout(30, 0);
  client.set_read_timeout(time_t(o.request_timeout_s), 0);
  json::Value body = {{"model", o.model}, {"prompt", prompt}, {"max_tokens", o.output_len}, {"temperature", 0.0},
                      {"ignore_eos", true}, {"stream", true}, {"stream_options", {{"include_usage", true}}}};
  httplib::Request req;
  req.method = "POST";
  req.path = prefix + "/v1/completions";
  req.body = json::dump(body);
  req.set_header("Content-Type", "application/json");
  std::string pending, error_body;
  int64_t text_chunks = 0, usage_tokens = -1;
  bool done = false;
  double last = 0;
  const Clock::time_point start = Clock::now();
  auto on_data = [&](const std::string& data) {
    if (data == "[DONE]") {
      done = true;
      return;
    }
    json::Value v;
    try {
      v = json::parse(data, "chunk");
    } catch (const Error& e) {
      out.error = e.what();
      return;
    }
    if (v.contains("error")) {
      out.error = json::show(v["error"]);
      return;
    }
    if (auto* u = json::find(v, "usage"); u && u->is_object())
      if (auto t = json::find(*u, "completion_tokens"); t && t->is_number_integer()) usage_tokens = t->get<int64_t>();
    const json::Value* choices = json::find(v, "choices");
    if (!choices || !choices->is_array() || choices->empty()) return;
    const json::Value* text = json::find((*choices)[0], "text");
    if (!text || !text->is_string() || text->get<std::string>().empty()) return;
    const double now = seconds_since(start);
    if (text_chunks == 0)
      out.ttft = now;
    else
      out.itl.push_back(now - last);
    last = now;
    ++text_chunks;
  };
  int status = 0;
  req.response_handler = [&](const httplib::Response& r) {
    status = r.status;
    return true;
  };
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    if (status != 200) {
      error_body.append(data, n);
      return true;
    }
    pending.append(data, n);
    size_t pos;
    while ((pos = pending.find('\n')) != std::string::npos) {
      std::string line = pending.substr(0, pos);
      pending.erase(0, pos + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.rfind("data:", 0) == 0) on_data(line.substr(line.size() > 5 && line[5] == ' ' ? 6 : 5));
    }
    return true;
  };
  auto res = client.send(req);
  out.latency = seconds_since(start);
  if (!res) {
    out.error = "request failed: " + describe(res.error());
  } else if (status != 200) {
    out.error = "HTTP " + std::to_string(status) + ": " + error_body.substr(0, 300);
  } else if (out.error.empty()) {
    out.output_tokens = usage_tokens >= 0 ? usage_tokens : text_chunks;
    if (!done)
      out.error = "the stream ended without data: [DONE]";
    else if (text_chunks == 0)
      out.error = "no text in the stream";
    else
      out.success = true;
  }
  return out;
}

LatencyStats stats_ms(const std::vector<double>& seconds) {  // vLLM: `or 0` for an empty list
  LatencyStats s;
  if (seconds.empty()) return s;
  double sum = 0;
  for (double x : seconds) sum += x;
  s.mean = sum / double(seconds.size()) * 1000;
  double var = 0;
  for (double x : seconds) var += (x * 1000 - s.mean) * (x * 1000 - s.mean);
  s.std = std::sqrt(var / double(seconds.size()));  // numpy's std: population
  s.median = percentile(seconds, 50) * 1000;
  s.p99 = percentile(seconds, 99) * 1000;
  return s;
}

}  // namespace

ServerInfo probe_server(const std::string& base_url, double timeout_s) {
  const auto [host, prefix] = split_url(base_url);
  httplib::Client client(host);
  const time_t sec = time_t(timeout_s);
  client.set_connection_timeout(sec, 0);
  client.set_read_timeout(sec, 0);
  auto res = client.Get((prefix + "/v1/models").c_str());
  if (!res) fail("option --base-url: cannot reach '", base_url, "': ", describe(res.error()));
  if (res->status != 200)
    fail("option --base-url: '", base_url, "/v1/models' answered HTTP ", res->status, " (not an OpenAI-compatible "
         "server?)");
  ServerInfo info;
  try {
    json::Value v = json::parse(res->body, base_url + "/v1/models");
    const json::Value& m = v.at("data").at(0);
    info.model = m.at("id").get<std::string>();
    if (auto* n = json::find(m, "vocab_size"); n && n->is_number_integer()) info.vocab_size = n->get<int64_t>();
    if (auto* n = json::find(m, "max_model_len"); n && n->is_number_integer()) info.max_model_len = n->get<int64_t>();
  } catch (const std::exception& e) {
    fail("option --base-url: '", base_url, "/v1/models' lists no model: ", e.what());
  }
  return info;
}

ServeLoadRun run_serve_load(const ServeLoadOptions& o, const LoadProgress& progress) {
  // Prompts and arrival gaps drawn up front from one seeded generator, so a seed names the same workload.
  std::mt19937_64 rng(o.seed);
  std::uniform_int_distribution<int32_t> token(0, int32_t(o.vocab_size - 1));
  std::vector<std::vector<int32_t>> prompts(size_t(o.num_prompts));
  for (auto& p : prompts)
    for (int64_t i = 0; i < o.input_len; ++i) p.push_back(token(rng));
  std::vector<double> arrival(size_t(o.num_prompts), 0.0);
  if (std::isfinite(o.request_rate)) {
    std::exponential_distribution<double> gap(o.request_rate);
    double t = 0;
    for (double& a : arrival) a = (t += gap(rng));
    const double first = arrival.empty() ? 0 : arrival[0];
    for (double& a : arrival) a -= first;  // the first request goes at once
  }

  ServeLoadRun run;
  run.requests.resize(prompts.size());
  std::mutex mu;
  std::condition_variable cv;
  int64_t in_flight = 0, finished = 0, failed = 0;
  const int64_t limit = o.max_concurrency > 0 ? o.max_concurrency : std::numeric_limits<int64_t>::max();
  std::vector<std::thread> threads;
  const int64_t total = o.num_prompts;
  auto report = [&](std::unique_lock<std::mutex>& lock) {  // progress outside the lock
    const int64_t f = finished, x = failed;
    lock.unlock();
    progress(f, x, total, false);
    lock.lock();
  };
  const Clock::time_point start = Clock::now();
  for (size_t i = 0; i < prompts.size(); ++i) {
    std::unique_lock<std::mutex> lock(mu);
    const Clock::time_point due = start + std::chrono::duration_cast<Clock::duration>(
                                              std::chrono::duration<double>(arrival[i]));
    for (Clock::time_point now = Clock::now(); now < due || in_flight >= limit; now = Clock::now()) {
      const Clock::time_point tick = now + std::chrono::milliseconds(250);
      cv.wait_until(lock, now < due ? std::min(due, tick) : tick);
      report(lock);
    }
    ++in_flight;
    threads.emplace_back([&, i] {
      RequestOutcome r = send_one(o, prompts[i]);
      std::lock_guard<std::mutex> g(mu);
      run.requests[i] = std::move(r);
      --in_flight;
      ++finished;
      if (!run.requests[i].success) ++failed;
      cv.notify_all();
    });
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    while (finished < total) {
      cv.wait_for(lock, std::chrono::milliseconds(250));
      report(lock);
    }
  }
  run.duration_s = seconds_since(start);
  for (auto& t : threads) t.join();
  progress(finished, failed, total, true);
  return run;
}

ServeMetrics compute_serve_metrics(const ServeLoadRun& run) {
  ServeMetrics m;
  std::vector<double> ttft, tpot, itl, e2el;
  for (const RequestOutcome& r : run.requests) {
    if (!r.success) {
      ++m.failed;
      continue;
    }
    ++m.completed;
    m.total_input_tokens += r.prompt_len;
    m.total_output_tokens += r.output_tokens;
    ttft.push_back(r.ttft);
    e2el.push_back(r.latency);
    itl.insert(itl.end(), r.itl.begin(), r.itl.end());
    if (r.output_tokens > 1) tpot.push_back((r.latency - r.ttft) / double(r.output_tokens - 1));
  }
  m.duration_s = run.duration_s;
  if (m.duration_s > 0) {
    m.request_throughput = double(m.completed) / m.duration_s;
    m.output_throughput = double(m.total_output_tokens) / m.duration_s;
    m.total_token_throughput = double(m.total_input_tokens + m.total_output_tokens) / m.duration_s;
  }
  m.ttft = stats_ms(ttft);
  m.tpot = stats_ms(tpot);
  m.itl = stats_ms(itl);
  m.e2el = stats_ms(e2el);
  return m;
}

std::string serve_metrics_table(const ServeLoadOptions& o, const ServeMetrics& m) {
  TextTable t({"Serving benchmark result", "value"});
  auto row = [&](const std::string& name, const std::string& value) { t.add_row({name, value}); };
  row("Successful requests", with_commas(m.completed));
  row("Failed requests", with_commas(m.failed));
  row("Maximum request concurrency", o.max_concurrency > 0 ? with_commas(o.max_concurrency) : "unlimited");
  row("Request rate (req/s)", std::isfinite(o.request_rate) ? fixed(o.request_rate, 2) : "inf");
  row("Benchmark duration (s)", fixed(m.duration_s, 2));
  row("Total input tokens", with_commas(m.total_input_tokens));
  row("Total generated tokens", with_commas(m.total_output_tokens));
  row("Request throughput (req/s)", fixed(m.request_throughput, 2));
  row("Output token throughput (tok/s)", fixed(m.output_throughput, 2));
  row("Total token throughput (tok/s)", fixed(m.total_token_throughput, 2));
  for (const auto& [label, s] : {std::pair<const char*, const LatencyStats*>{"TTFT", &m.ttft},
                                 {"TPOT", &m.tpot}, {"ITL", &m.itl}, {"E2E latency", &m.e2el}}) {
    t.add_separator();
    row(std::string("Mean ") + label + " (ms)", fixed(s->mean, 2));
    row(std::string("Median ") + label + " (ms)", fixed(s->median, 2));
    row(std::string("P99 ") + label + " (ms)", fixed(s->p99, 2));
  }
  return t.render();
}

json::Value serve_metrics_json(const ServeLoadOptions& o, const ServeMetrics& m) {
  json::Value j = {{"backend", "openai"},
                   {"base_url", o.base_url},
                   {"model_id", o.model},
                   {"num_prompts", o.num_prompts},
                   {"input_len", o.input_len},
                   {"output_len", o.output_len},
                   {"request_rate", std::isfinite(o.request_rate) ? json::Value(o.request_rate) : json::Value("inf")},
                   {"max_concurrency", o.max_concurrency > 0 ? json::Value(o.max_concurrency) : json::Value(nullptr)},
                   {"seed", o.seed},
                   {"duration", m.duration_s},
                   {"completed", m.completed},
                   {"failed", m.failed},
                   {"total_input_tokens", m.total_input_tokens},
                   {"total_output_tokens", m.total_output_tokens},
                   {"request_throughput", m.request_throughput},
                   {"output_throughput", m.output_throughput},
                   {"total_token_throughput", m.total_token_throughput}};
  for (const auto& [name, s] : {std::pair<const char*, const LatencyStats*>{"ttft", &m.ttft},
                                {"tpot", &m.tpot}, {"itl", &m.itl}, {"e2el", &m.e2el}}) {
    j[std::string("mean_") + name + "_ms"] = s->mean;
    j[std::string("median_") + name + "_ms"] = s->median;
    j[std::string("std_") + name + "_ms"] = s->std;
    j[std::string("p99_") + name + "_ms"] = s->p99;
  }
  return j;
}

}  // namespace mlarun::bench
