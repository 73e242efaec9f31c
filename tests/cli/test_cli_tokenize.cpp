// `mlarun tokenize` end to end: --text, a JSONL file in both directions in order (checked against the golden
// ids HF wrote), bad lines named by FILE:LINE while the others still convert, and the errors before any work.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "cli/cli_runner.h"
#include "runtime/json.h"

namespace mlarun {
namespace {

using testing::run_mlarun;
const std::string kTok = std::string(MLARUN_TEST_DATA_DIR) + "/tokenizers";

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("mlarun_tokenize_" + std::to_string(::getpid()) + name)).string();
}

std::vector<std::string> lines_of(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

TEST(CliTokenize, TextPrintsIds) {
  auto r = run_mlarun("tokenize --tokenizer " + kTok + "/v3-tiny --text 'a<｜User｜>b'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  json::Value v = json::parse(r.output, "stdout");
  ASSERT_EQ(v["ids"].size(), 3u) << r.output;
  EXPECT_EQ(v["ids"][1], 628) << "the added token <｜User｜> is one id";
  r = run_mlarun("tokenize --tokenizer " + kTok + "/v2-tiny --text '' --add-special-tokens");
  EXPECT_EQ(json::parse(r.output, "stdout")["ids"], json::Value::array({0})) << r.output;  // v2 adds bos
}

// The first 300 golden texts, then their HF ids: the output equals the goldens line for line.
TEST(CliTokenize, JsonlBothWaysInOrder) {
  auto texts = lines_of(kTok + "/golden/texts.jsonl");
  auto ids = lines_of(kTok + "/golden/v2-tiny.ids.jsonl");
  ASSERT_GE(texts.size(), 300u);
  std::string in = temp_path("in.jsonl"), out = temp_path("out.jsonl");
  {
    std::ofstream f(in);
    for (size_t i = 0; i < 300; ++i) f << texts[i] << "\n";
    for (size_t i = 0; i < 300; ++i) f << "{\"ids\": " << ids[i] << "}\n";
  }
  auto r = run_mlarun("tokenize --tokenizer " + kTok + "/v2-tiny/tokenizer.json --input " + in + " --out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto got = lines_of(out);
  ASSERT_EQ(got.size(), 600u);
  for (size_t i = 0; i < 300; ++i) {
    EXPECT_EQ(json::parse(got[i], "out")["ids"], json::parse(ids[i], "golden")) << "line " << i + 1;
    EXPECT_EQ(json::parse(got[300 + i], "out")["text"], json::parse(texts[i], "golden")["text"]) << "line " << 301 + i;
  }
  std::filesystem::remove(in);
  std::filesystem::remove(out);
}

TEST(CliTokenize, BadLinesAreNamedAndTheRestConverts) {
  std::string in = temp_path("bad.jsonl");
  {
    std::ofstream f(in);
    f << "{\"text\": \"ok\"}\n{\"ids\": [1, 99999]}\n{\"text\": 5}\nnot json\n\n{\"ids\": []}\n";
  }
  auto r = run_mlarun("tokenize --tokenizer " + kTok + "/v3-tiny --input " + in);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find(in + ":2: ids[1] = 99999 is not a token id (0..639)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(in + ":3: \"text\" must be a string"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(in + ":4"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("{\"text\":\"\"}"), std::string::npos) << "the last line still converts: " << r.output;
  EXPECT_NE(r.output.find("5 lines, 3 failed"), std::string::npos) << r.output;
  std::filesystem::remove(in);
}

TEST(CliTokenize, ErrorsBeforeWork) {
  auto r = run_mlarun("tokenize --tokenizer " + kTok + "/no-such --text a");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("no-such: no such file"), std::string::npos) << r.output;
  r = run_mlarun("tokenize --tokenizer " + kTok + "/v3-tiny");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("needs --text"), std::string::npos) << r.output;
  r = run_mlarun("tokenize --tokenizer " + kTok + "/v3-tiny --input " + kTok + "/golden/texts.jsonl --out /no/dir/x");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("option --out: cannot write '/no/dir/x'"), std::string::npos) << r.output;
  r = run_mlarun("tokenize --tokenizer " + kTok + "/v3-tiny --text \"$(printf '\\377')\"");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("not valid UTF-8"), std::string::npos) << r.output;
}

TEST(CliTokenize, MessagesRenderTheChatTemplate) {
  std::string in = temp_path("chat.jsonl");
  {
    std::ofstream f(in);
    f << R"({"messages": [{"role": "user", "content": "Hi"}], "add_generation_prompt": true})" << "\n";
  }
  auto r = run_mlarun("tokenize --tokenizer " + kTok + "/v2-tiny --input " + in);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  json::Value v = json::parse(r.output.substr(0, r.output.find('\n')), "stdout");
  EXPECT_EQ(v["text"], "<｜begin▁of▁sentence｜>User: Hi\n\nAssistant:");
  EXPECT_EQ(v["ids"][0], 0);
  std::filesystem::remove(in);
}

TEST(CliTokenize, BenchReportsTokensPerSecond) {
  auto r = run_mlarun("tokenize --tokenizer " + kTok + "/v3-tiny --bench --iters 1 --input " + kTok + "/golden/texts.jsonl");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("M tokens/s"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace mlarun
