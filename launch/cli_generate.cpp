// `mlarun generate`: one prompt (--prompt-ids) or a JSONL file of requests (--requests), run by the engine with
// continuous batching; results as JSON (stdout or --out), progress and capacity on stderr.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>

#include "engine/engine.h"
#include "launch/cli_common.h"
#include "launch/commands.h"
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
  auto* r = cmd->add_option("--requests", *requests, "JSONL file, one request a line (prompt_ids, max_tokens, ...)");
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
            std::vector<RequestSpec> specs;
            if (!prompt_ids->empty())
              specs.push_back({parse_id_list(*prompt_ids, "--prompt-ids"), *params});
            else
              specs = read_requests_file(*requests, *params);
            Session s = open_session(*o);
            Engine engine(s.options, *s.runner);
            RequestOptions options{!logits_out->empty(), false};
            for (RequestSpec& spec : specs) engine.add_request(std::move(spec.prompt), spec.params, options);
            std::vector<RequestOutput> results =
                engine.run(s.is_driver() && !prompt_ids->empty() ? nullptr : (s.is_driver() ? print_progress : nullptr));
            if (!s.is_driver()) return 0;
            int64_t failed = 0;
            for (const RequestOutput& res : results) failed += res.finish_reason == FinishReason::Abort;
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
                j["stats"] = summary_json(engine, 1, failed);
                std::cout << json::dump(j) << "\n";
              } else {
                for (size_t i = 0; i < res.token_ids.size(); ++i) std::cout << (i ? "," : "") << res.token_ids[i];
                std::cout << "\n";
              }
              return 0;
            }
            std::ofstream file;
            if (!out->empty()) {
              file.open(*out);
              if (!file) fail("cannot write --out file '", *out, "'");
            }
            std::ostream& sink = out->empty() ? std::cout : file;
            for (const RequestOutput& res : results) sink << json::dump(result_json(res)) << "\n";
            for (const RequestOutput& res : results)
              if (res.finish_reason == FinishReason::Abort)
                std::fprintf(stderr, "mlarun: request %lld failed: %s\n", (long long)res.id, res.error.c_str());
            std::cerr << "mlarun: summary " << json::dump(summary_json(engine, int64_t(results.size()), failed)) << "\n";
            return failed == int64_t(results.size()) ? 1 : 0;
          }};
}

}  // namespace mlarun::cli
