// The command line's conventions, as a vLLM user expects them: `mlarun --version`; vLLM's spellings of the engine
// options (--tensor-parallel-size, --max-model-len, --max-num-seqs, --num-gpu-blocks-override,
// --enable-prefix-caching / --no-enable-prefix-caching, --kv-cache-dtype, --gpu-memory-utilization) doing what the
// older spellings do; every default shown in --help; one name for prompt ids; progress that writes whole lines
// when stderr is not a terminal.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <string>

#include "cli_runner.h"
#include "runtime/json.h"
#include "test_util.h"

using namespace mlarun;
using mlarun::testing::run_mlarun;
using mlarun::testing::RunResult;
using mlarun::testing::ScratchDir;

namespace {

const std::string kV3 = mlarun::testing::data_dir() + "/deepseek-v3-tiny";

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The line of `output` that starts with `prefix` (empty if none).
std::string line_starting(const std::string& output, const std::string& prefix) {
  size_t at = output.find(prefix);
  if (at == std::string::npos) return "";
  return output.substr(at, output.find('\n', at) - at);
}

}  // namespace

TEST(CliConventions, VersionFlag) {
  RunResult r = run_mlarun("--version");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "mlarun 0.")) << r.output;
}

TEST(CliConventions, HelpShowsEveryDefault) {
  RunResult r = run_mlarun("generate --help");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* option : {"--block-size", "--max-num-seqs", "--max-model-len", "--max-num-batched-tokens",
                             "--gpu-memory-utilization", "--num-gpu-blocks-override", "--kv-cache-dtype",
                             "--tensor-parallel-size", "--device", "--max-tokens", "--temperature", "--top-p",
                             "--prefill-context-piece-tokens"})
    EXPECT_TRUE(contains(r.output, option)) << option << "\n" << r.output;
  for (const char* shown : {"INT=64", "INT=256", "INT=4096", "INT=8192", "FLOAT=0.9", "INT=-1", "TEXT=auto", "INT=16"})
    EXPECT_TRUE(contains(r.output, shown)) << shown << "\n" << r.output;
}

TEST(CliConventions, VllmSpellingsMatchTheOlderOnes) {
  const std::string prompt = " --prompt-ids 5,17,42,9 --max-tokens 4 --ignore-eos --device cpu --model " + kV3;
  RunResult vllm = run_mlarun("generate" + prompt +
                              " --tensor-parallel-size 1 --max-num-seqs 2 --max-model-len 64 --num-gpu-blocks-override 9"
                              " --block-size 8 --no-enable-prefix-caching --kv-cache-dtype auto"
                              " --gpu-memory-utilization 0.5 --max-num-batched-tokens 32");
  ASSERT_EQ(vllm.exit_code, 0) << vllm.output;
  EXPECT_TRUE(contains(vllm.output, "9 blocks x 8 tokens")) << vllm.output;
  EXPECT_TRUE(contains(vllm.output, "for 64 tokens per request")) << vllm.output;
  RunResult older = run_mlarun("generate" + prompt +
                               " --tp 1 --max-batch-size 2 --max-seq-len 64 --num-blocks 9 --block-size 8"
                               " --no-prefix-caching");
  ASSERT_EQ(older.exit_code, 0) << older.output;
  const std::string tokens = vllm.output.substr(vllm.output.rfind('\n', vllm.output.size() - 2) + 1);
  EXPECT_EQ(tokens, older.output.substr(older.output.rfind('\n', older.output.size() - 2) + 1));
  EXPECT_FALSE(tokens.empty());
}

TEST(CliConventions, PrefixCachingFlagsTurnItOnAndOff) {
  ScratchDir tmp;
  const std::string same = "{\"prompt_ids\": [5, 17, 42, 9, 100, 3, 77, 12, 8, 61], \"max_tokens\": 2}\n";
  const std::string requests = tmp.write("reqs.jsonl", same + same);
  const std::string common = "generate --device cpu --model " + kV3 + " --requests " + requests +
                             " --block-size 4 --max-num-seqs 1 --out " + tmp.file("out.jsonl");
  auto prefix_hits = [](const RunResult& r) {
    const std::string summary = line_starting(r.output, "mlarun: summary ");
    EXPECT_FALSE(summary.empty()) << r.output;
    json::Value j = json::parse(summary.substr(std::string("mlarun: summary ").size()), "summary");
    return json::to_int64(j.at("cache").at("prefix_hits")).value_or(-1);
  };
  RunResult on = run_mlarun(common + " --enable-prefix-caching");
  ASSERT_EQ(on.exit_code, 0) << on.output;
  EXPECT_GT(prefix_hits(on), 0) << on.output;
  RunResult off = run_mlarun(common + " --no-enable-prefix-caching");
  ASSERT_EQ(off.exit_code, 0) << off.output;
  EXPECT_EQ(prefix_hits(off), 0) << off.output;
}

TEST(CliConventions, KvCacheDtypeRefusesAnUnknownName) {
  RunResult r = run_mlarun("generate --device cpu --model " + kV3 + " --prompt-ids 1,2 --kv-cache-dtype fp4");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "--kv-cache-dtype")) << r.output;
  EXPECT_TRUE(contains(r.output, "'fp4'")) << r.output;
  EXPECT_TRUE(contains(r.output, "expected auto, bf16, fp8 or int8")) << r.output;
}

TEST(CliConventions, ScoreAndGenerateTakePromptIdsUnderOneName) {
  ScratchDir tmp;
  const std::string common = " --device cpu --model " + kV3;
  RunResult a = run_mlarun("score" + common + " --prompt-ids 5,17,42 --out " + tmp.file("a.safetensors"));
  ASSERT_EQ(a.exit_code, 0) << a.output;
  RunResult b = run_mlarun("score" + common + " --tokens 5,17,42 --out " + tmp.file("b.safetensors"));
  ASSERT_EQ(b.exit_code, 0) << b.output;
  EXPECT_EQ(read_bytes(tmp.file("a.safetensors")), read_bytes(tmp.file("b.safetensors")));
  EXPECT_FALSE(read_bytes(tmp.file("a.safetensors")).empty());
  RunResult bad = run_mlarun("score" + common + " --prompt-ids 5,x --out " + tmp.file("c.safetensors"));
  EXPECT_EQ(bad.exit_code, 1) << bad.output;
  EXPECT_TRUE(contains(bad.output, "--prompt-ids")) << bad.output;
  RunResult gen = run_mlarun("generate" + common + " --tokens 5,17,42 --max-tokens 2");
  EXPECT_EQ(gen.exit_code, 0) << gen.output;
}

TEST(CliConventions, ProgressWritesWholeLinesWhenStderrIsNotATerminal) {
  ScratchDir tmp;
  const std::string requests =
      tmp.write("reqs.jsonl", "{\"prompt_ids\": [5, 17], \"max_tokens\": 2}\n{\"prompt_ids\": [9], \"max_tokens\": 3}\n");
  RunResult r = run_mlarun("generate --device cpu --model " + kV3 + " --requests " + requests + " --out " +
                           tmp.file("out.jsonl"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(contains(r.output, "\r")) << "a pipe gets no carriage returns";
  EXPECT_TRUE(contains(r.output, "mlarun: loading weights: layer ")) << r.output;
  EXPECT_TRUE(contains(r.output, "mlarun: 2/2 requests done")) << r.output;
  const std::string loaded = line_starting(r.output, "mlarun: loading weights: layer ");
  EXPECT_FALSE(loaded.empty());
}
