// Bad input fails early, alone and by name (issue 13, items 5-7): a weight stored in a dtype its layer does not
// take is an error naming file, tensor and dtype; a bad request line fails alone with FILE:LINE while the others
// run; an output path that cannot be written stops the command before any work. Each case writes its bad file
// here, and the early ones must end in seconds, before any weight loads.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "checkpoint_edit.h"
#include "cli_runner.h"
#include "runtime/json.h"
#include "test_util.h"

using namespace mlarun;
using mlarun::testing::RunResult;
using mlarun::testing::ScratchDir;

namespace {

const std::string kV2 = mlarun::testing::data_dir() + "/deepseek-v2-tiny";  // vocabulary 512
const std::string kConfigs = mlarun::testing::source_dir() + "/configs";
constexpr double kEarlySeconds = 5.0;  // a check that runs before any work ends well within this

struct Timed {
  RunResult r;
  double seconds;
};
Timed run_timed(const std::string& args) {
  const auto t0 = std::chrono::steady_clock::now();
  RunResult r = mlarun::testing::run_mlarun(args);
  return {r, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()};
}

bool mentions(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

#define EXPECT_OUTPUT_HAS(run, ...)                                                           \
  for (const char* _part : {__VA_ARGS__}) EXPECT_TRUE(mentions((run).r.output, _part)) << "missing '" << _part \
                                                                                      << "' in:\n" << (run).r.output

// Failed before the weights: no loading line, in seconds.
void expect_early_failure(const Timed& t) {
  EXPECT_EQ(t.r.exit_code, 1) << t.r.output;
  EXPECT_FALSE(mentions(t.r.output, "loading weights")) << t.r.output;
  EXPECT_LT(t.seconds, kEarlySeconds) << t.r.output;
}

std::vector<json::Value> read_jsonl(const std::string& path) {
  std::ifstream in(path);
  std::vector<json::Value> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(json::parse(line, path));
  return lines;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

// Item 5: lm_head.weight relabelled I32 (same byte size) used to generate garbage with exit 0.
TEST(CliBadInput, IntegerWeightIsRefusedNamingTensorFileAndDtype) {
  ScratchDir tmp;
  mlarun::testing::copy_checkpoint(kV2, tmp.path().string());
  const std::string file = mlarun::testing::relabel_dtype(tmp.path().string(), "lm_head.weight", "I32");
  ASSERT_FALSE(file.empty());
  Timed t = run_timed("generate --model " + tmp.path().string() + " --prompt-ids 5,17,42 --max-new-tokens 4 --device cpu");
  EXPECT_EQ(t.r.exit_code, 1) << t.r.output;
  EXPECT_OUTPUT_HAS(t, file.c_str(), "'lm_head.weight'", "dtype I32", "F32, F16 or BF16");
  EXPECT_LT(t.seconds, kEarlySeconds);
}

// Item 6: each request line is checked as it is read and against the vocabulary before the weights load; a bad one
// fails alone with FILE:LINE in its result line and on stderr, the others complete, and the exit code is 0.
TEST(CliBadInput, BadRequestLinesFailAloneWithFileAndLine) {
  ScratchDir tmp;
  const std::string reqs = tmp.write("reqs.jsonl",
                                     "{\"prompt_ids\": [5, 17], \"max_tokens\": 2}\n"
                                     "{\"prompt_ids\": [5, 512], \"max_tokens\": 2}\n"  // one past the vocabulary
                                     "\n"
                                     "{\"prompt_ids\": [5, 17],\n"                       // malformed JSON
                                     "{\"prompt_ids\": [5], \"top_p\": 1.5}\n"          // sampling range
                                     "{\"prompt_ids\": [7], \"stop_token_ids\": [9999]}\n"
                                     "{\"prompt_ids\": [9, 9, 9], \"max_tokens\": 3}\n");
  const std::string out = tmp.file("out.jsonl");
  Timed t = run_timed("generate --model " + kV2 + " --device cpu --requests " + reqs + " --out " + out);
  ASSERT_EQ(t.r.exit_code, 0) << t.r.output;
  EXPECT_OUTPUT_HAS(t, "reqs.jsonl:2: key 'prompt_ids': token id 512 is outside the vocabulary [0, 512)",
                    "reqs.jsonl:4: invalid JSON", "reqs.jsonl:5:", "top_p", "reqs.jsonl:6: key 'stop_token_ids'",
                    "2/2 requests done", "\"num_failed\":4");
  // The bad lines are reported before the weights load.
  EXPECT_LT(t.r.output.find("reqs.jsonl:2"), t.r.output.find("loading weights")) << t.r.output;
  std::vector<json::Value> results = read_jsonl(out);
  ASSERT_EQ(results.size(), 6u);
  const char* where[] = {nullptr, "reqs.jsonl:2", "reqs.jsonl:4", "reqs.jsonl:5", "reqs.jsonl:6", nullptr};
  for (size_t i = 0; i < results.size(); ++i) {
    EXPECT_EQ(results[i].at("id").get<int64_t>(), int64_t(i));
    if (!where[i]) {
      EXPECT_EQ(results[i].at("finish_reason").get<std::string>(), "length") << json::dump(results[i]);
      continue;
    }
    EXPECT_EQ(results[i].at("finish_reason").get<std::string>(), "abort");
    EXPECT_TRUE(mentions(results[i].at("error").get<std::string>(), where[i])) << json::dump(results[i]);
    EXPECT_TRUE(results[i].at("tokens").empty());
  }
  EXPECT_EQ(results[5].at("tokens").size(), 3u);

  // A request the engine refuses (more cache than the pool holds) names its line too, numbered as the file counts.
  const std::string big = tmp.write("big.jsonl", "[1]\n{\"prompt_ids\": [1, 2, 3, 4, 5, 6, 7, 8, 9], \"max_tokens\": 8}\n"
                                                 "{\"prompt_ids\": [1], \"max_tokens\": 2}\n");
  t = run_timed("generate --model " + kV2 + " --device cpu --requests " + big + " --num-blocks 2 --block-size 4");
  EXPECT_EQ(t.r.exit_code, 0) << t.r.output;
  EXPECT_OUTPUT_HAS(t, "big.jsonl:1: expected a JSON object", "request 1 failed: ", "big.jsonl:2: request 1 needs up to");
}

// Every request bad: nothing to run, so nothing loads; exit 1 (the one case that is non-zero).
TEST(CliBadInput, EveryRequestBadFailsBeforeTheWeights) {
  ScratchDir tmp;
  const std::string reqs = tmp.write("all_bad.jsonl", "{\"prompt_ids\": [100000]}\nnot json\n");
  Timed t = run_timed("generate --model " + kV2 + " --device cpu --requests " + reqs + " --out " + tmp.file("o.jsonl"));
  expect_early_failure(t);
  EXPECT_OUTPUT_HAS(t, "all_bad.jsonl:1: key 'prompt_ids': token id 100000", "all_bad.jsonl:2: invalid JSON",
                    "\"num_failed\":2");
  std::vector<json::Value> results = read_jsonl(tmp.file("o.jsonl"));
  ASSERT_EQ(results.size(), 2u);
  for (const json::Value& res : results) EXPECT_EQ(res.at("finish_reason").get<std::string>(), "abort");
  // A file that cannot be read at all still stops the command.
  t = run_timed("generate --model " + kV2 + " --device cpu --requests " + tmp.path().string());
  expect_early_failure(t);
  EXPECT_OUTPUT_HAS(t, "requests file", "is a directory");
}

// --prompt-ids outside the vocabulary fails before the weights load, naming the option and the id.
TEST(CliBadInput, PromptIdsOutsideTheVocabularyFailBeforeTheWeights) {
  ScratchDir tmp;
  Timed t = run_timed("generate --model " + kV2 + " --device cpu --prompt-ids 5,512,7");
  expect_early_failure(t);
  EXPECT_OUTPUT_HAS(t, "option --prompt-ids", "token id 512", "vocabulary [0, 512)");
  t = run_timed("score --model " + kV2 + " --device cpu --tokens 5,100000 --out " + tmp.file("s.safetensors"));
  expect_early_failure(t);
  EXPECT_OUTPUT_HAS(t, "option --prompt-ids", "token id 100000");
  EXPECT_FALSE(std::filesystem::exists(tmp.file("s.safetensors"))) << "the early check leaves no file behind";
}

// Item 7: every output path is checked before any work, with the option, the path and why.
TEST(CliBadInput, UnwritableOutputPathsFailBeforeAnyWork) {
  ScratchDir tmp;
  const std::string reqs = tmp.write("reqs.jsonl", "{\"prompt_ids\": [5, 17], \"max_tokens\": 2}\n");
  const std::string file = tmp.write("a_file", "x");
  Timed t = run_timed("generate --model " + kV2 + " --device cpu --requests " + reqs + " --out /nonexistent/dir/o.jsonl");
  expect_early_failure(t);
  EXPECT_OUTPUT_HAS(t, "option --out", "'/nonexistent/dir/o.jsonl'", "no such directory '/nonexistent/dir'");
  t = run_timed("generate --model " + kV2 + " --device cpu --prompt-ids 5 --logits-out " + tmp.path().string());
  expect_early_failure(t);
  EXPECT_OUTPUT_HAS(t, "option --logits-out", "is a directory");
  t = run_timed("score --model " + kV2 + " --device cpu --prompt-ids 5 --out " + file + "/s.safetensors");
  expect_early_failure(t);
  EXPECT_OUTPUT_HAS(t, "option --out", "not a directory");
  EXPECT_EQ(read_file(file), "x");

  t = run_timed("bench cache --config " + kConfigs + "/config_236B.json --json /nonexistent/dir/c.json");
  EXPECT_EQ(t.r.exit_code, 1);
  EXPECT_OUTPUT_HAS(t, "option --json", "/nonexistent/dir/c.json", "no such directory");
  EXPECT_FALSE(mentions(t.r.output, "allocating")) << t.r.output;
  EXPECT_LT(t.seconds, kEarlySeconds);
  t = run_timed("bench cache --config " + kConfigs + "/config_236B.json --chart " + file + "/c.png");
  EXPECT_EQ(t.r.exit_code, 1);
  EXPECT_OUTPUT_HAS(t, "option --chart", "not a directory");
  EXPECT_LT(t.seconds, kEarlySeconds);
  t = run_timed("bench decode --config " + kConfigs + "/config_small.json --json /nonexistent/dir/d.json");
  EXPECT_EQ(t.r.exit_code, 1);
  EXPECT_OUTPUT_HAS(t, "option --json", "/nonexistent/dir/d.json", "no such directory");
  EXPECT_FALSE(mentions(t.r.output, "bench decode:")) << t.r.output;
  EXPECT_LT(t.seconds, kEarlySeconds);

  // A writable path passes the check without being touched: an existing file keeps its content when the command
  // fails later, and a new one is not left behind.
  t = run_timed("generate --model " + kV2 + " --device cpu --prompt-ids 5,600 --out " + file + " --logits-out " +
                tmp.file("new.safetensors"));
  EXPECT_EQ(t.r.exit_code, 1);
  EXPECT_OUTPUT_HAS(t, "token id 600");
  EXPECT_EQ(read_file(file), "x");
  EXPECT_FALSE(std::filesystem::exists(tmp.file("new.safetensors")));
}
