// `mlarun bench serve` end to end: against `mlarun serve` on v3-tiny (a child process, serve_fixture.h), 8
// requests at most 4 in flight all complete with 8 tokens each, the JSON carries vLLM's field names with finite
// positive throughputs and TTFT <= E2E, and the table is printed; an unreachable --base-url fails fast naming it.
#include <gtest/gtest.h>

#include <cmath>

#include "cli/cli_runner.h"
#include "cli/serve_fixture.h"
#include "test_util.h"

namespace mlarun::testing {
namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

TEST(BenchServe, TinyServerTableAndJson) {
  ServeProcess server({"--max-model-len", "128", "--max-num-seqs", "16", "--block-size", "16"});
  ScratchDir tmp;
  const std::string json_path = tmp.file("serve.json");
  RunResult r = run_mlarun("bench serve --base-url http://127.0.0.1:" + std::to_string(server.port()) +
                           " --num-prompts 8 --request-rate inf --max-concurrency 4 --input-len 16 --output-len 8"
                           " --json " + json_path);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* part : {"Successful requests", "Failed requests", "Request throughput (req/s)",
                           "Output token throughput (tok/s)", "Mean TTFT (ms)", "Median TPOT (ms)", "P99 ITL (ms)",
                           "8/8 requests finished"})
    EXPECT_TRUE(contains(r.output, part)) << "missing '" << part << "' in\n" << r.output;

  json::Value j = json::parse_file(json_path);
  EXPECT_EQ(j.at("completed").get<int64_t>(), 8);
  EXPECT_EQ(j.at("failed").get<int64_t>(), 0);
  EXPECT_EQ(j.at("total_input_tokens").get<int64_t>(), 8 * 16);
  EXPECT_EQ(j.at("total_output_tokens").get<int64_t>(), 8 * 8);
  EXPECT_EQ(j.at("model_id").get<std::string>(), "tiny");
  for (const char* key : {"request_throughput", "output_throughput", "duration", "mean_ttft_ms", "median_ttft_ms",
                          "p99_ttft_ms", "mean_tpot_ms", "median_tpot_ms", "p99_tpot_ms", "mean_itl_ms",
                          "median_itl_ms", "p99_itl_ms", "mean_e2el_ms", "p99_e2el_ms"}) {
    const double v = j.at(key).get<double>();
    EXPECT_TRUE(std::isfinite(v) && v > 0) << key << " = " << v;
  }
  EXPECT_NEAR(j.at("output_throughput").get<double>(), 8.0 * j.at("request_throughput").get<double>(), 1e-6);
  EXPECT_LE(j.at("mean_ttft_ms").get<double>(), j.at("mean_e2el_ms").get<double>());
  EXPECT_LE(j.at("p99_ttft_ms").get<double>(), j.at("p99_e2el_ms").get<double>());
  EXPECT_LE(j.at("mean_tpot_ms").get<double>(), j.at("mean_e2el_ms").get<double>());
}

TEST(BenchServe, UnreachableUrlFailsFastNamingIt) {
  const int port = free_port();  // nothing listens there
  RunResult r = run_mlarun("bench serve --base-url http://127.0.0.1:" + std::to_string(port) + " --num-prompts 2");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "option --base-url: cannot reach 'http://127.0.0.1:" + std::to_string(port)))
      << r.output;
}

TEST(BenchServe, BadOptionValuesNamed) {
  RunResult r = run_mlarun("bench serve --request-rate fast");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "option --request-rate: value 'fast'")) << r.output;
  r = run_mlarun("bench serve --num-prompts 0");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "option --num-prompts: value 0")) << r.output;
  r = run_mlarun("bench serve --json /nonexistent-dir/x.json");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "option --json: cannot write")) << r.output;
}

}  // namespace
}  // namespace mlarun::testing
