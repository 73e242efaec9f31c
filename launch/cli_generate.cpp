// `mlarun generate`: one prompt (--prompt-ids) or a JSONL file of requests (--requests), run by the engine with
// continuous batching; results as JSON (stdout or --out), progress and capacity on stderr. Output paths and
// requests are checked before the weights load; a bad request line fails alone, named by FILE:LINE.
#include <cctype>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>

#include "engine/engine.h"
#include "launch/cli_common.h"
#include "launch/commands.h"
#include "launch/output_path.h"
#include "launch/requests_file.h"
#include "runtime/error.h"
#include "runtime/json.h"
#include "runtime/safetensors.h"

namespace mlarun::cli {

namespace {

json::Value ids_json(const std::vector<int32_t>& ids) {
  json::Value a = json::Value::array();
  for (int32_t t : ids) a.push_back(int64_t(t));
  return a;
}

json::Value result_json(const RequestOutput& r) {
  json::Value j = json::Value::object();
  j["id"] = r.id;
  j["tokens"] = ids_json(r.token_ids);
  j["finish_reason"] = finish_reason_name(r.finish_reason);
  if (!r.error.empty()) j["error"] = r.error;
  return j;
}

json::Value cache_json(const BlockManagerStats& st) {
  json::Value cache = json::Value::object();
  cache["blocks_total"] = st.num_blocks;
  cache["blocks_used"] = st.used;
  cache["blocks_free"] = st.free;
  cache["blocks_shared"] = st.shared;
  cache["prefix_queries"] = st.prefix_queries;
  cache["prefix_hits"] = st.prefix_hits;
  cache["prefix_cache_hit_rate"] = st.hit_rate();
  cache["tokens_stored"] = st.tokens_stored;
  cache["slots_reserved"] = st.slots_reserved;
  return cache;
}

json::Value summary_json(const Engine& engine, int64_t num_requests, int64_t failed) {
  // The cache at the end (every block back in the pool, prefix counters for the whole run) and at its fullest.
  json::Value cache = cache_json(engine.scheduler().block_manager().stats());
  cache["peak"] = cache_json(engine.stats().peak_cache);
  const EngineStats& es = engine.stats();
  json::Value s = json::Value::object();
  s["num_requests"] = num_requests;
  s["num_failed"] = failed;
  s["steps"] = es.steps;
  s["prompt_tokens_computed"] = es.prompt_tokens_computed;
  s["generated_tokens"] = es.generated_tokens;
  s["elapsed_s"] = es.seconds;
  s["output_throughput_tok_s"] = es.seconds > 0 ? double(es.generated_tokens) / es.seconds : 0.0;
  s["num_preemptions"] = engine.scheduler().num_preemptions();
  s["peak_running_sequences"] = es.peak_running;
  s["cache"] = cache;
  return s;
}

// The engine numbers the requests it was given; the file numbers every request line. An engine message that
// starts with "request <engine id>" is renumbered to the file's count, as the result's "id" is.
std::string renumbered(const std::string& error, int64_t engine_id, int64_t index) {
  const std::string prefix = "request " + std::to_string(engine_id);
  if (error.rfind(prefix, 0) != 0 || (error.size() > prefix.size() && std::isdigit(uint8_t(error[prefix.size()]))))
    return error;
  return "request " + std::to_string(index) + error.substr(prefix.size());
}

// One result line per request line, in file order (the "id" is the 0-based request number): the engine's result,
// or "abort" with the line's own error for a line that never reached the engine.
void write_results(const std::string& out, const std::vector<RequestSpec>& specs,
                   const std::vector<RequestOutput>& results, const std::map<int64_t, size_t>& spec_of) {
  std::vector<json::Value> lines(specs.size());
  for (const RequestOutput& res : results) {
    const size_t i = spec_of.at(res.id);
    lines[i] = result_json(res);
    lines[i]["id"] = int64_t(i);
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    if (specs[i].ok()) continue;
    RequestOutput failed;
    failed.id = int64_t(i);
    failed.finish_reason = FinishReason::Abort;
    failed.error = specs[i].error;
    lines[i] = result_json(failed);
  }
  std::ofstream file;
  if (!out.empty()) {
    file.open(out);
    if (!file) fail("option --out: cannot write '", out, "'");
  }
  std::ostream& sink = out.empty() ? std::cout : file;
  for (const json::Value& line : lines) sink << json::dump(line) << "\n";
  sink.flush();
  if (!sink) fail("option --out: writing '", out, "' failed");
}

void print_progress(int64_t done, int64_t total, const EngineStats& st) {
  static ProgressLine line;
  char rate[32];
  std::snprintf(rate, sizeof rate, "%.1f", st.seconds > 0 ? double(st.generated_tokens) / st.seconds : 0.0);
  line.update(detail::concat(done, "/", total, " requests done, ", st.generated_tokens, " tokens generated, ", rate,
                             " tok/s"),
              done == total);
}

}  // namespace

Command add_generate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "Generate tokens for one prompt or a JSONL file of requests");
  auto o = std::make_shared<ModelOptions>();
  auto prompt_ids = std::make_shared<std::string>();
  auto requests = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  auto logits_out = std::make_shared<std::string>();
  auto json_out = std::make_shared<bool>(false);
  auto params = std::make_shared<SamplingParams>();
  add_model_options(*cmd, *o);
  auto* p = cmd->add_option("--prompt-ids,--tokens", *prompt_ids, "Prompt token ids, comma-separated");
  auto* r = cmd->add_option("--requests", *requests,
                            "JSONL file, one request a line (prompt_ids, max_tokens, ...); a bad line fails alone, "
                            "and the exit code is 1 only when every request failed");
  p->excludes(r);
  cmd->add_option("--out", *out, "Write one JSON result a line here (default: stdout)");
  cmd->add_option("--logits-out", *logits_out, "With --prompt-ids: write each step's logits (tensor 'logits')");
  cmd->add_flag("--json", *json_out, "With --prompt-ids: print the result as JSON");
  cmd->add_option("--max-new-tokens,--max-tokens", params->max_tokens, "Tokens to generate");
  cmd->add_option("--temperature", params->temperature, "0 = greedy");
  cmd->add_option("--top-p", params->top_p, "Nucleus sampling mass, (0, 1]");
  cmd->add_option("--top-k", params->top_k, "Keep the k most likely tokens (0 = all)");
  cmd->add_option("--seed", params->seed, "Sampling seed");
  cmd->add_flag("--ignore-eos", params->ignore_eos, "Keep generating past EOS");
  return {cmd, [=]() {
            if (prompt_ids->empty() == requests->empty()) fail("generate needs --prompt-ids or --requests");
            // Before any weight loads: every output path writable, every request read and checked against the
            // vocabulary (the model's config gives it), so bad input costs seconds, not a run.
            if (is_driver_process()) {
              check_output_path("--out", *out);
              check_output_path("--logits-out", *logits_out);
            }
            const int64_t vocab = load_model_config_from_dir(o->model_dir).vocab_size;
            std::vector<RequestSpec> specs;
            if (!prompt_ids->empty()) {
              specs.push_back({parse_id_list(*prompt_ids, "--prompt-ids"), *params, "", ""});
              check_ids_in_vocabulary(specs[0].prompt, vocab, "--prompt-ids");
            } else {
              specs = read_requests_file(*requests, *params);
              check_requests_vocabulary(specs, vocab);
            }
            int64_t num_bad = 0;
            for (const RequestSpec& spec : specs) num_bad += !spec.ok();
            const bool driver = is_driver_process();
            if (driver)
              for (size_t i = 0; i < specs.size(); ++i)
                if (!specs[i].ok()) std::fprintf(stderr, "mlarun: request %zu failed: %s\n", i, specs[i].error.c_str());
            if (num_bad == int64_t(specs.size())) {  // nothing to run: no weights to load
              if (!driver) return 1;
              write_results(*out, specs, {}, {});
              json::Value summary = json::Value::object();
              summary["num_requests"] = int64_t(specs.size());
              summary["num_failed"] = num_bad;
              std::cerr << "mlarun: summary " << json::dump(summary) << "\n";
              return 1;
            }
            Session s = open_session(*o);
            Engine engine(s.options, *s.runner);
            RequestOptions options{!logits_out->empty(), false};
            std::map<int64_t, size_t> spec_of;  // engine id -> index in the file
            for (size_t i = 0; i < specs.size(); ++i)
              if (specs[i].ok()) spec_of[engine.add_request(std::move(specs[i].prompt), specs[i].params, options)] = i;
            std::vector<RequestOutput> results =
                engine.run(s.is_driver() && !prompt_ids->empty() ? nullptr : (s.is_driver() ? print_progress : nullptr));
            if (!s.is_driver()) return 0;
            if (!prompt_ids->empty()) {
              const RequestOutput& res = results.at(0);
              if (res.finish_reason == FinishReason::Abort) fail(res.error);
              if (!logits_out->empty()) {
                const int64_t N = int64_t(res.logits.size()), V = s.runner->vocab_size();
                Tensor t = Tensor::empty({N, V}, DType::F32);
                for (int64_t i = 0; i < N; ++i) std::copy(res.logits[size_t(i)].begin(), res.logits[size_t(i)].end(), t.data<float>() + i * V);
                write_safetensors(*logits_out, {{"logits", t}}, {{"format", "pt"}, {"producer", "mlarun generate"}});
              }
              if (*json_out) {
                json::Value j = result_json(res);
                j["stats"] = summary_json(engine, 1, 0);
                std::cout << json::dump(j) << "\n";
              } else {
                for (size_t i = 0; i < res.token_ids.size(); ++i) std::cout << (i ? "," : "") << res.token_ids[i];
                std::cout << "\n";
              }
              return 0;
            }
            int64_t failed = num_bad;
            for (RequestOutput& res : results) {
              const size_t i = spec_of.at(res.id);
              if (res.finish_reason != FinishReason::Abort) continue;
              ++failed;
              res.error = specs[i].where + ": " + renumbered(res.error, res.id, int64_t(i));
              std::fprintf(stderr, "mlarun: request %zu failed: %s\n", i, res.error.c_str());
            }
            write_results(*out, specs, results, spec_of);
            std::cerr << "mlarun: summary " << json::dump(summary_json(engine, int64_t(specs.size()), failed)) << "\n";
            return failed == int64_t(specs.size()) ? 1 : 0;  // non-zero only when every request failed
          }};
}

}  // namespace mlarun::cli
