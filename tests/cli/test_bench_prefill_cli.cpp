// `mlarun bench prefill` end to end on the v3-tiny fixture's config: one record per (prefix, chunk), each path's
// timings, the attention multiply-adds against the work counted here term by term, the cost model's and Auto's
// choice against the rule's algebra, the measured winner against the record's own medians, the two paths' logits
// equal up to f32 rounding (the same function), the crossing table, and clear failures on bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "cli_runner.h"
#include "runtime/json.h"
#include "test_util.h"

using namespace mlarun;
using mlarun::testing::ScratchDir;

namespace {

using mlarun::testing::run_mlarun;
using mlarun::testing::RunResult;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::string tiny_config() { return mlarun::testing::data_dir() + "/deepseek-v3-tiny/config.json"; }

// v3-tiny: kv_lora_rank 48, nope 24, rope 8, v 24, 6 heads; one head's work for n new tokens after p cached.
double work(bool absorbed, int64_t n, int64_t p) {
  const double R = 48, nope = 24, rope = 8, v = 24;
  double w = absorbed ? double(n) * R * (nope + v) : double(n + p) * R * (nope + v);
  for (int64_t i = 0; i < n; ++i) w += double(p + i + 1) * (absorbed ? 2 * R + rope : nope + rope + v);
  return w;
}

json::Value run_json(const std::string& extra, ScratchDir& tmp) {
  RunResult r = run_mlarun("bench prefill --config " + tiny_config() +
                           " --layers 2 --prefix-lens 64,0 --chunk-lens 8,2,40 --batch 2 --iters 1 --warmup 0 --json " +
                           tmp.file("p.json") + extra);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  for (const char* part : {"naive attn ms", "absorbed attn ms", "max |logit diff|", "measured: absorbed faster up to",
                           "cost model crossing"})
    EXPECT_TRUE(contains(r.output, part)) << part << "\n" << r.output;
  return json::parse_file(tmp.file("p.json"));
}

}  // namespace

TEST(BenchPrefillCli, RecordsFollowTheCostModelAndThePathsAgree) {
  ScratchDir tmp;
  const json::Value out = run_json("", tmp);
  EXPECT_EQ(out.at("benchmark").get<std::string>(), "prefill_mla_paths");
  EXPECT_EQ(out.at("mla_absorbed_max_tokens").get<int64_t>(), 128) << "the CPU's default";
  const json::Value& recs = out.at("records");
  ASSERT_EQ(recs.size(), 6u);
  const int64_t want[6][2] = {{0, 2}, {0, 8}, {0, 40}, {64, 2}, {64, 8}, {64, 40}};  // sorted
  for (size_t i = 0; i < 6; ++i) {
    const json::Value& r = recs[i];
    const int64_t p = r.at("prefix_len").get<int64_t>(), n = r.at("chunk_len").get<int64_t>();
    EXPECT_EQ(p, want[i][0]);
    EXPECT_EQ(n, want[i][1]);
    const double scale = 6 /*heads*/ * 2 /*layers*/ * 2 /*sequences*/;
    EXPECT_DOUBLE_EQ(r.at("naive").at("attention_macs").get<double>(), scale * work(false, n, p));
    EXPECT_DOUBLE_EQ(r.at("absorbed").at("attention_macs").get<double>(), scale * work(true, n, p));
    const bool cheaper = work(true, n, p) < work(false, n, p);
    EXPECT_EQ(r.at("cost_model").get<std::string>(), cheaper ? "absorbed" : "naive") << p << "/" << n;
    EXPECT_EQ(r.at("auto").get<std::string>(), cheaper ? "absorbed" : "naive") << p << "/" << n;
    const double na = r.at("naive").at("attention_median_ms").get<double>();
    const double ab = r.at("absorbed").at("attention_median_ms").get<double>();
    EXPECT_GT(na, 0);
    EXPECT_GT(ab, 0);
    EXPECT_EQ(r.at("faster").get<std::string>(), ab < na ? "absorbed" : "naive");
    EXPECT_LT(r.at("max_abs_logit_diff").get<double>(), 1e-3) << "the two paths compute one function";
    EXPECT_GT(r.at("naive").at("step_median_s").get<double>(), 0);
  }
  EXPECT_EQ(recs[4].at("cost_model").get<std::string>(), "absorbed") << "8 tokens over 64: v3-tiny's crossing is 38";
  EXPECT_EQ(recs[1].at("cost_model").get<std::string>(), "naive") << "no prefix";
  const json::Value& cross = out.at("crossings");
  ASSERT_EQ(cross.size(), 2u);
  EXPECT_EQ(cross[0].at("cost_model_crossing").get<int64_t>(), 0);
  int64_t crossing = 0;  // the longest chunk the work count favours after 64 cached
  while (work(true, crossing + 1, 64) < work(false, crossing + 1, 64)) ++crossing;
  EXPECT_EQ(cross[1].at("cost_model_crossing").get<int64_t>(), crossing);
}

TEST(BenchPrefillCli, TheOptionBoundsAuto) {
  ScratchDir tmp;
  const json::Value out = run_json(" --mla-absorbed-max-tokens 4", tmp);
  const json::Value& r = out.at("records")[4];  // prefix 64, chunk 8
  EXPECT_EQ(r.at("cost_model").get<std::string>(), "absorbed");
  EXPECT_EQ(r.at("auto").get<std::string>(), "naive") << "longer than --mla-absorbed-max-tokens";
  EXPECT_EQ(out.at("records")[3].at("auto").get<std::string>(), "absorbed");
}

TEST(BenchPrefillCli, BadInputFailsClearly) {
  const std::string base = "bench prefill --config " + tiny_config();
  for (const auto& [args, mentions] : std::vector<std::pair<std::string, std::string>>{
           {" --prefix-lens 0,-4", "--prefix-lens"},
           {" --chunk-lens 0", "--chunk-lens"},
           {" --chunk-lens 2,2", "--chunk-lens"},
           {" --mla-absorbed-max-tokens 0", "--mla-absorbed-max-tokens"},
           {" --layers 9", "--layers"},
           {" --batch 0", "--batch"},
           {" --json /nonexistent/dir/p.json", "--json"}}) {
    RunResult r = run_mlarun(base + args);
    EXPECT_NE(r.exit_code, 0) << args;
    EXPECT_TRUE(contains(r.output, mentions)) << args << ": " << r.output;
  }
}
