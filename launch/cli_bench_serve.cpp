// `mlarun bench serve`: `vllm bench serve` against any OpenAI-compatible server (ours or vLLM's). Random-id prompts
// of --input-len, --output-len tokens each (ignore_eos), Poisson arrivals at --request-rate with at most
// --max-concurrency in flight; prints vLLM's result table (completed, failed, throughputs, TTFT/TPOT/ITL/E2E mean,
// median, p99) and writes its JSON field names with --json. The load generator is bench/serve_load.h.
#include <cmath>
#include <cstdio>
#include <iostream>
#include <limits>
#include <memory>

#include "bench/bench_common.h"
#include "bench/serve_load.h"
#include "bench/text_table.h"
#include "launch/cli_common.h"
#include "launch/commands.h"
#include "launch/output_path.h"
#include "runtime/error.h"
#include "runtime/json.h"

namespace mlarun::cli {

namespace {

double parse_rate(const std::string& text) {
  if (text == "inf" || text == "infinity") return std::numeric_limits<double>::infinity();
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !(v > 0) || !std::isfinite(v))
    fail("option --request-rate: value '", text, "': expected requests per second above 0, or inf");
  return v;
}

}  // namespace

Command add_bench_serve_command(CLI::App& bench) {
  auto* cmd = bench.add_subcommand("serve", "Load an OpenAI-compatible server as `vllm bench serve` does");
  auto o = std::make_shared<bench::ServeLoadOptions>();
  auto rate = std::make_shared<std::string>("inf");
  auto json_out = std::make_shared<std::string>();
  auto vocab = std::make_shared<int64_t>(0);
  o->base_url = "http://127.0.0.1:8000";
  cmd->add_option("--base-url", o->base_url, "The server, http://HOST:PORT (its /v1/completions is loaded)");
  cmd->add_option("--model", o->model, "Model name in the requests (default: the first of /v1/models)");
  cmd->add_option("--num-prompts", o->num_prompts, "Requests to send");
  cmd->add_option("--request-rate", *rate, "Requests per second, Poisson arrivals; inf: all at once");
  cmd->add_option("--max-concurrency", o->max_concurrency, "Most requests in flight (0: unlimited)");
  cmd->add_option("--input-len,--random-input-len", o->input_len, "Prompt tokens per request (random ids)");
  cmd->add_option("--output-len,--random-output-len", o->output_len, "Generated tokens per request (ignore_eos)");
  cmd->add_option("--vocab-size", *vocab,
                  "Prompt ids are drawn below this (default: vocab_size from /v1/models, which mlarun serve gives)");
  cmd->add_option("--seed", o->seed, "Seed of the prompts and arrival times");
  cmd->add_option("--json", *json_out, "Write the result as JSON here (vLLM's field names)");
  return {cmd, [=]() {
            check_output_path("--json", *json_out);
            o->request_rate = parse_rate(*rate);
            if (o->num_prompts < 1) fail("option --num-prompts: value ", o->num_prompts, ": must be at least 1");
            if (o->input_len < 1) fail("option --input-len: value ", o->input_len, ": must be at least 1");
            if (o->output_len < 1) fail("option --output-len: value ", o->output_len, ": must be at least 1");
            if (o->max_concurrency < 0)
              fail("option --max-concurrency: value ", o->max_concurrency, ": must be 0 (unlimited) or positive");
            if (*vocab < 0 || *vocab > std::numeric_limits<int32_t>::max())
              fail("option --vocab-size: value ", *vocab, ": must be positive");
            const bench::ServerInfo info = bench::probe_server(o->base_url);  // fails fast naming --base-url
            if (o->model.empty()) o->model = info.model;
            o->vocab_size = *vocab > 0 ? *vocab : info.vocab_size;
            if (o->vocab_size <= 0)
              fail("option --vocab-size: the server's /v1/models gives no vocab_size; pass the model's vocabulary "
                   "size");
            if (info.max_model_len > 0 && o->input_len + o->output_len > info.max_model_len)
              fail("options --input-len and --output-len: ", o->input_len, " + ", o->output_len,
                   " tokens exceed the server's max_model_len ", info.max_model_len);
            std::fprintf(stderr, "mlarun: %lld requests to %s (model %s), %s\n", (long long)o->num_prompts,
                         o->base_url.c_str(), o->model.c_str(),
                         (std::isfinite(o->request_rate) ? bench::fixed(o->request_rate, 2) + " req/s"
                                                         : std::string("all at once")).c_str());
            auto line = std::make_shared<ProgressLine>();
            bench::ServeLoadRun run = bench::run_serve_load(
                *o, [line](int64_t done, int64_t failed, int64_t total, bool final) {
                  line->update(std::to_string(done) + "/" + std::to_string(total) + " requests finished" +
                                   (failed > 0 ? " (" + std::to_string(failed) + " failed)" : ""),
                               final);
                });
            const bench::ServeMetrics m = bench::compute_serve_metrics(run);
            for (const bench::RequestOutcome& r : run.requests)  // the first failure's reason, for the user
              if (!r.success) {
                std::fprintf(stderr, "mlarun: %lld requests failed; the first: %s\n", (long long)m.failed,
                             r.error.c_str());
                break;
              }
            std::cout << bench::serve_metrics_table(*o, m);
            if (!json_out->empty()) {
              bench::write_text_file(*json_out, json::dump(bench::serve_metrics_json(*o, m), 2) + "\n", "--json");
              std::cout << "JSON:  " << *json_out << "\n";
            }
            return m.completed > 0 ? 0 : 1;
          }};
}

}  // namespace mlarun::cli
