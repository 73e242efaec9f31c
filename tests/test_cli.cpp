// The `mlarun` command line end to end on both fixtures: `score` logits and `generate` tokens and step logits
// against the Hugging Face reference, at several block sizes; and clear failures on bad input.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <memory>

#include "runtime/json.h"
#include "runtime/safetensors.h"
#include "cli_runner.h"
#include "test_util.h"

using namespace mlarun;
using mlarun::testing::ScratchDir;

namespace {

using mlarun::testing::run_mlarun;
using mlarun::testing::RunResult;

std::string join(const Tensor& ids) {
  std::string s;
  for (int64_t i = 0; i < ids.numel(); ++i) s += (i ? "," : "") + std::to_string(ids.data<int64_t>()[i]);
  return s;
}

float max_abs_diff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  float m = 0;
  for (int64_t i = 0; i < std::min(a.numel(), b.numel()); ++i)
    m = std::max(m, std::fabs(a.data<float>()[i] - b.data<float>()[i]));
  return m;
}

void check_fixture(const std::string& name, int block_size) {
  ScratchDir tmp;
  std::string dir = mlarun::testing::data_dir() + "/" + name;
  SafetensorsFile ref(dir + "/reference.safetensors");
  for (int i = 0; ref.contains("prompt." + std::to_string(i) + ".input_ids"); ++i) {
    std::string p = "prompt." + std::to_string(i) + ".";
    std::string prompt = join(ref.load(p + "input_ids", DType::I64));
    std::string common = "--model " + dir + " --block-size " + std::to_string(block_size) + " --device cpu";

    RunResult score = run_mlarun("score " + common + " --tokens " + prompt + " --out " + tmp.file("score.safetensors"));
    ASSERT_EQ(score.exit_code, 0) << score.output;
    Tensor logits = SafetensorsFile(tmp.file("score.safetensors")).load("logits");
    EXPECT_LT(max_abs_diff(logits, ref.load(p + "logits")), 1e-4f) << name << " prompt " << i;

    Tensor greedy = ref.load(p + "greedy", DType::I64);
    RunResult gen = run_mlarun("generate " + common + " --prompt-ids " + prompt + " --max-new-tokens " +
                               std::to_string(greedy.numel()) + " --temperature 0 --ignore-eos --json --logits-out " +
                               tmp.file("steps.safetensors"));
    ASSERT_EQ(gen.exit_code, 0) << gen.output;
    std::string json_line = gen.output.substr(gen.output.find("{\"id\""));
    json::Value result = json::parse(json_line.substr(0, json_line.find('\n')), "generate output");
    std::string tokens;
    for (const json::Value& t : result.find("tokens")->items()) tokens += (tokens.empty() ? "" : ",") + std::to_string(t.as_int());
    EXPECT_EQ(tokens, join(greedy)) << name << " prompt " << i;
    Tensor steps = SafetensorsFile(tmp.file("steps.safetensors")).load("logits");
    EXPECT_LT(max_abs_diff(steps, ref.load(p + "greedy_logits")), 1e-4f) << name << " prompt " << i;
  }
}

}  // namespace

TEST(Cli, V2TinyScoreAndGenerateMatchHuggingFace) { check_fixture("deepseek-v2-tiny", 16); }
TEST(Cli, V3TinyScoreAndGenerateMatchHuggingFace) { check_fixture("deepseek-v3-tiny", 16); }
TEST(Cli, V3TinyBlockSize1) { check_fixture("deepseek-v3-tiny", 1); }
TEST(Cli, V2TinyBlockSize256) { check_fixture("deepseek-v2-tiny", 256); }

TEST(Cli, BadInputFailsWithAClearMessage) {
  std::string v2 = mlarun::testing::data_dir() + "/deepseek-v2-tiny";
  RunResult r = run_mlarun("generate --model " + v2 + " --prompt-ids 5,x,7");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--prompt-ids"), std::string::npos) << r.output;
  r = run_mlarun("generate --model " + v2 + " --prompt-ids 5,9999");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("9999"), std::string::npos) << r.output;
  r = run_mlarun("score --model " + v2 + " --tokens 1,2 --out /tmp/x.safetensors --block-size 300");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--block-size"), std::string::npos) << r.output;
  r = run_mlarun("info --model /nonexistent/dir");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("/nonexistent/dir"), std::string::npos) << r.output;
  r = run_mlarun("info --model " + mlarun::testing::data_dir() + "/deepseek-v3-tiny");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("16 files, 139 tensors, 1,958,576 values, of which 32 in 2 gate biases"), std::string::npos)
      << r.output;
  r = run_mlarun("info --config " + mlarun::testing::source_dir() + "/configs/config_236B.json");
  EXPECT_NE(r.output.find("(235.74B)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("69,120 bytes"), std::string::npos) << r.output;
}
