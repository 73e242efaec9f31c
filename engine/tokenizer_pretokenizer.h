// The pre-tokenizer of a Hugging Face tokenizer.json (Sequence of Split, Digits, ByteLevel, ...), run on byte
// spans of the text so no piece is copied until BPE sees it. Split regexes go through PCRE2 (JIT when available):
// DeepSeek's patterns use Unicode classes and lookahead, which RE2 and std::regex lack. HF compiles them with
// Oniguruma (Ruby syntax), so each pattern is translated where the two engines differ: `\s`/`\S` become the
// Unicode White_Space set Oniguruma uses (PCRE2 10.42 also counts U+180E), `$`/`^` are line anchors.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/json_fwd.h"

namespace mlarun::tok {

struct Span {
  size_t begin, end;  // bytes of the text
};

class PreTokenizer {
 public:
  // `spec`: tokenizer.json's "pre_tokenizer" (null: the text is one piece). Throws mlarun::Error naming
  // `where` for a type or option this runtime does not implement, or a regex PCRE2 rejects.
  PreTokenizer(const json::Value& spec, const std::string& where);
  ~PreTokenizer();
  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;

  // Splits text[span] into pieces, appended to `out` in order (no empty pieces). Pieces that need a prefix
  // space (ByteLevel add_prefix_space) are not supported, so every piece is a span of the text.
  void split(std::string_view text, Span span, std::vector<Span>* out) const;

  // ByteLevel's own GPT-2 regex, translated (exposed for tests).
  static const char* gpt2_pattern();

 private:
  struct Step;
  std::vector<std::unique_ptr<Step>> steps_;
};

// Oniguruma (Ruby) regex text -> PCRE2 text with the same meaning on DeepSeek's patterns (see above).
std::string translate_onig_pattern(const std::string& pattern);

}  // namespace mlarun::tok
