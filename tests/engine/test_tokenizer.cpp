// The tokenizer's parts on cases small enough to reason about: lossy UTF-8 (Rust's rules), the byte map, the
// Oniguruma -> PCRE2 pattern translation, BPE merge order, added tokens in text, the config fields, and the
// errors for what the runtime does not implement (engine/tokenizer.h). The golden files test the whole.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/tokenizer.h"
#include "engine/tokenizer_bpe.h"
#include "engine/tokenizer_pretokenizer.h"
#include "runtime/error.h"
#include "runtime/json.h"

namespace mlarun {
namespace {

const std::string kDir = std::string(MLARUN_TEST_DATA_DIR) + "/tokenizers";

TEST(Tokenizer, Utf8LossyFollowsRust) {
  using tok::utf8_lossy;
  const std::string R = "\xEF\xBF\xBD";
  EXPECT_EQ(utf8_lossy("abc"), "abc");
  EXPECT_EQ(utf8_lossy("\xE4\xB8\xAD"), "\xE4\xB8\xAD");
  EXPECT_EQ(utf8_lossy("\xE4\xB8"), R);              // a cut sequence is one U+FFFD
  EXPECT_EQ(utf8_lossy("\xE4\xB8x"), R + "x");
  EXPECT_EQ(utf8_lossy("\x80\x80"), R + R);          // each stray continuation byte is one
  EXPECT_EQ(utf8_lossy("\xF0\x9F\x98"), R);
  EXPECT_EQ(utf8_lossy("\xED\xA0\x80"), R + R + R);  // a surrogate: the second byte is out of range
  EXPECT_EQ(utf8_lossy("\xC0\xAF"), R + R);          // overlong lead bytes are never valid
  EXPECT_EQ(utf8_lossy("\xF4\x90\x80\x80"), R + R + R + R);
}

TEST(Tokenizer, ByteMapIsGpt2s) {
  EXPECT_EQ(tok::byte_to_char()[' '], "\xC4\xA0");  // Ġ
  EXPECT_EQ(tok::byte_to_char()['a'], "a");
  EXPECT_EQ(tok::byte_to_char()['\n'], "\xC4\x8A");  // Ċ
  std::string bytes;
  ASSERT_TRUE(tok::chars_to_bytes("\xC4\xA0hi", &bytes));
  EXPECT_EQ(bytes, " hi");
  EXPECT_FALSE(tok::chars_to_bytes("\xEF\xBD\x9C", &bytes));  // ｜ is not a byte character
}

TEST(Tokenizer, PatternTranslationMatchesOniguruma) {
  EXPECT_EQ(tok::translate_onig_pattern("\\p{N}{1,3}"), "\\p{N}{1,3}");
  std::string t = tok::translate_onig_pattern("\\s+(?!\\S)|[^\\s\\p{L}]");
  EXPECT_NE(t.find("[\\t-\\r"), std::string::npos) << t;
  EXPECT_NE(t.find("(?![^\\t-\\r"), std::string::npos) << t;
  EXPECT_EQ(t.find("\\s"), std::string::npos) << t;
  EXPECT_EQ(tok::translate_onig_pattern("[\\]\\\\]+"), "[\\]\\\\]+");
}

// A hand-made BPE: merges apply lowest rank first, leftmost among equals; both merge spellings are read.
json::Value tiny_bpe(bool list_merges) {
  json::Value vocab = json::Value::object();
  for (int b = 0; b < 256; ++b) vocab[tok::byte_to_char()[size_t(b)]] = b;
  vocab["aa"] = 256;
  vocab["ab"] = 257;
  vocab["aab"] = 258;
  json::Value merges = json::Value::array();
  auto m = [&](const char* a, const char* b) {
    merges.push_back(list_merges ? json::Value::array({a, b}) : json::Value(std::string(a) + " " + b));
  };
  m("a", "b");
  m("a", "a");
  m("a", "ab");
  return {{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}},
          {"decoder", {{"type", "ByteLevel"}}},
          {"pre_tokenizer", nullptr},
          {"added_tokens", json::Value::array({{{"id", 300}, {"content", "<x>"}, {"special", true}}})}};
}

TEST(Tokenizer, MergesApplyByRankThenLeftmost) {
  for (bool list : {false, true}) {
    Tokenizer tok = Tokenizer::from_json(tiny_bpe(list), nullptr, "tiny");
    EXPECT_EQ(tok.encode("aab"), (std::vector<int32_t>{258}));       // ab first (rank 0), then a+ab
    EXPECT_EQ(tok.encode("aaaa"), (std::vector<int32_t>{256, 256}));  // leftmost pairs first
    EXPECT_EQ(tok.encode("aaa"), (std::vector<int32_t>{256, 'a'}));
    EXPECT_EQ(tok.encode("a<x>b<x"), (std::vector<int32_t>{'a', 300, 'b', '<', 'x'}));
    EXPECT_EQ(tok.decode({258, 300}), "aab<x>");
    EXPECT_EQ(tok.decode({258, 300}, /*skip_special_tokens=*/true), "aab");
    EXPECT_EQ(tok.decode({258, 99999, -1}), "aab");  // ids that name nothing are skipped, as in HF
    EXPECT_EQ(tok.vocab_size(), 301);
  }
}

TEST(Tokenizer, ReadsTheConfig) {
  Tokenizer v2 = Tokenizer::load(kDir + "/v2-tiny");
  EXPECT_EQ(v2.bos_token(), "<｜begin▁of▁sentence｜>");
  EXPECT_EQ(v2.eos_token(), "<｜end▁of▁sentence｜>");
  EXPECT_TRUE(v2.add_bos_token());
  std::vector<int32_t> plain = v2.encode("Hello"), with = v2.encode("Hello", /*add_special_tokens=*/true);
  ASSERT_EQ(with.size(), plain.size() + 1);
  EXPECT_EQ(with[0], 0);
  Tokenizer v3 = Tokenizer::load(kDir + "/v3-tiny");
  EXPECT_FALSE(v3.add_bos_token());
  EXPECT_EQ(v3.encode("Hello", true), v3.encode("Hello"));
  EXPECT_NE(v3.chat_template().find("<｜Assistant｜>"), std::string::npos);
  // special tokens inside text are single ids
  auto ids = v3.encode("a<｜User｜>b<｜end▁of▁sentence｜>");
  ASSERT_EQ(ids.size(), 4u);
  EXPECT_EQ(ids[1], *v3.token_to_id("<｜User｜>"));
  EXPECT_EQ(ids[3], 1);
  EXPECT_EQ(v3.id_to_token(1), "<｜end▁of▁sentence｜>");
}

void expect_error(const json::Value& t, const std::string& needle) {
  try {
    Tokenizer::from_json(t, nullptr, "bad.json");
    ADD_FAILURE() << "no error for " << needle;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("bad.json"), std::string::npos) << e.what();
  }
}

TEST(Tokenizer, RefusesWhatItDoesNotImplement) {
  json::Value t = tiny_bpe(false);
  t["normalizer"] = {{"type", "NFC"}};
  expect_error(t, "normalizer");
  t = tiny_bpe(false);
  t["model"]["merges"].push_back("a b c");
  expect_error(t, "merges[3]");
  t = tiny_bpe(false);
  t["model"]["merges"].push_back("a zz");
  expect_error(t, "'zz' is not in the vocabulary");
  t = tiny_bpe(false);
  t["pre_tokenizer"] = {{"type", "Metaspace"}};
  expect_error(t, "Metaspace");
  t = tiny_bpe(false);
  t["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  expect_error(t, "does not compile");
  t = tiny_bpe(false);
  t["added_tokens"][0]["lstrip"] = true;
  expect_error(t, "lstrip");
  t = tiny_bpe(false);
  t["decoder"] = {{"type", "Metaspace"}};
  expect_error(t, "ByteLevel");
  Tokenizer tok = Tokenizer::from_json(tiny_bpe(false), nullptr, "tiny");
  EXPECT_THROW(tok.encode("\xFF"), Error);
  EXPECT_THROW(Tokenizer::load(kDir + "/no-such"), Error);
}

// HF's five Split behaviours (and invert), on the pre-tokenizer's pieces directly.
TEST(Tokenizer, SplitBehaviors) {
  auto run = [](const char* behavior, bool invert) {
    json::Value spec = {{"type", "Split"}, {"pattern", {{"String", "-"}}}, {"behavior", behavior}, {"invert", invert}};
    tok::PreTokenizer pre(spec, "test");
    const std::string text = "ab-ab--a";
    std::vector<tok::Span> spans;
    pre.split(text, {0, text.size()}, &spans);
    std::string joined;
    for (auto& s : spans) joined += text.substr(s.begin, s.end - s.begin) + "|";
    return joined;
  };
  EXPECT_EQ(run("Isolated", false), "ab|-|ab|-|-|a|");
  EXPECT_EQ(run("Removed", false), "ab|ab|a|");
  EXPECT_EQ(run("Removed", true), "-|-|-|");
  EXPECT_EQ(run("MergedWithPrevious", false), "ab-|ab-|-|a|");
  EXPECT_EQ(run("MergedWithNext", false), "ab|-ab|-|-a|");
  EXPECT_EQ(run("Contiguous", false), "ab|-|ab|--|a|");
}

}  // namespace
}  // namespace mlarun
