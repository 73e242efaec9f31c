// PreTokenizer: HF's Split / Digits / ByteLevel steps over byte spans, regexes in PCRE2 (tokenizer_pretokenizer.h).
#include "engine/tokenizer_pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cctype>

#include "runtime/error.h"
#include "runtime/json.h"

namespace mlarun::tok {

namespace {

// Oniguruma's \s in UTF-8 mode: the White_Space property.
constexpr const char* kSpaceSet =
    "\\t-\\r\\x{20}\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}";

enum class Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

Behavior parse_behavior(const std::string& b, const std::string& where) {
  if (b == "Removed") return Behavior::Removed;
  if (b == "Isolated") return Behavior::Isolated;
  if (b == "MergedWithPrevious") return Behavior::MergedWithPrevious;
  if (b == "MergedWithNext") return Behavior::MergedWithNext;
  if (b == "Contiguous") return Behavior::Contiguous;
  fail(where, ": unknown Split behavior '", b, "'");
}

std::string escape_literal(const std::string& s) {
  std::string out;
  for (char c : s) {
    auto u = uint8_t(c);
    if (u < 0x80 && !std::isalnum(u)) out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

const std::string& str_member(const json::Value& v, const char* key, const std::string& where) {
  const json::Value* m = json::find(v, key);
  if (!m || !m->is_string()) fail(where, ": '", key, "' must be a string");
  return m->get_ref<const std::string&>();
}

bool bool_member(const json::Value& v, const char* key, bool dflt, const std::string& where) {
  const json::Value* m = json::find(v, key);
  if (!m || m->is_null()) return dflt;
  if (!m->is_boolean()) fail(where, ": '", key, "' must be true or false");
  return m->get<bool>();
}

}  // namespace

std::string translate_onig_pattern(const std::string& p) {
  std::string out;
  int depth = 0;  // inside a character class (Oniguruma allows nesting)
  for (size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      char e = p[i + 1];
      ++i;
      if (e == 's') {
        out += depth ? std::string(kSpaceSet) : "[" + std::string(kSpaceSet) + "]";
      } else if (e == 'S') {
        if (depth) fail("regex '", p, "': \\S inside a character class is not supported");
        out += "[^" + std::string(kSpaceSet) + "]";
      } else {
        out.push_back('\\');
        out.push_back(e);
      }
      continue;
    }
    if (c == '[') {
      ++depth;
      out.push_back(c);
      if (i + 1 < p.size() && p[i + 1] == '^') out.push_back(p[++i]);
      if (i + 1 < p.size() && p[i + 1] == ']') out.push_back(p[++i]);  // a leading ']' is literal
      continue;
    }
    if (c == ']' && depth) --depth;
    out.push_back(c);
  }
  return out;
}

const char* PreTokenizer::gpt2_pattern() {
  return "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
}

struct PreTokenizer::Step {
  pcre2_code* re = nullptr;
  Behavior behavior = Behavior::Isolated;
  bool invert = false;

  Step(const std::string& onig, Behavior b, bool inv, const std::string& where) : behavior(b), invert(inv) {
    std::string pattern = translate_onig_pattern(onig);
    int err = 0;
    PCRE2_SIZE off = 0;
    pcre2_compile_context* ctx = pcre2_compile_context_create(nullptr);
    pcre2_set_newline(ctx, PCRE2_NEWLINE_LF);
    re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                       PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE | PCRE2_NO_UTF_CHECK, &err, &off, ctx);
    pcre2_compile_context_free(ctx);
    if (!re) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      fail(where, ": regex '", onig, "' does not compile (PCRE2 at offset ", off, ": ", reinterpret_cast<char*>(msg),
           ")");
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);  // falls back to the interpreter when JIT is unavailable
  }
  ~Step() { pcre2_code_free(re); }

  // HF's Split: the matches and the gaps between them, then `behavior` decides what becomes a piece.
  void apply(std::string_view text, Span s, pcre2_match_data* md, std::vector<Span>* out) const {
    struct Part {
      Span span;
      bool match;
    };
    std::vector<Part> parts;
    auto subject = reinterpret_cast<PCRE2_SPTR>(text.data() + s.begin);
    size_t len = s.end - s.begin, prev = 0, pos = 0;
    while (pos <= len) {
      int rc = pcre2_match(re, subject, len, pos, PCRE2_NO_UTF_CHECK, md, nullptr);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof msg);
        fail("tokenizer: regex match failed: ", reinterpret_cast<char*>(msg));
      }
      PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      size_t mb = ov[0], me = ov[1];
      if (me == mb) {  // an empty match splits nothing; step one character on
        pos = mb + 1;
        while (pos < len && (uint8_t(text[s.begin + pos]) & 0xC0) == 0x80) ++pos;
        continue;
      }
      if (prev != mb) parts.push_back({{s.begin + prev, s.begin + mb}, invert});
      parts.push_back({{s.begin + mb, s.begin + me}, !invert});
      prev = pos = me;
    }
    if (prev != len) parts.push_back({{s.begin + prev, s.end}, invert});
    size_t first = out->size();
    bool previous_match = false;
    switch (behavior) {
      case Behavior::Isolated:
        for (auto& p : parts) out->push_back(p.span);
        break;
      case Behavior::Removed:
        for (auto& p : parts)
          if (!p.match) out->push_back(p.span);
        break;
      case Behavior::MergedWithPrevious:
        for (auto& p : parts) {
          if (p.match && !previous_match && out->size() > first) out->back().end = p.span.end;
          else out->push_back(p.span);
          previous_match = p.match;
        }
        break;
      case Behavior::Contiguous:
        for (auto& p : parts) {
          if (p.match == previous_match && out->size() > first) out->back().end = p.span.end;
          else out->push_back(p.span);
          previous_match = p.match;
        }
        break;
      case Behavior::MergedWithNext: {
        std::vector<Span> rev;
        for (size_t k = parts.size(); k-- > 0;) {
          if (parts[k].match && !previous_match && !rev.empty()) rev.back().begin = parts[k].span.begin;
          else rev.push_back(parts[k].span);
          previous_match = parts[k].match;
        }
        out->insert(out->end(), rev.rbegin(), rev.rend());
        break;
      }
    }
  }
};

PreTokenizer::PreTokenizer(const json::Value& spec, const std::string& where) {
  if (spec.is_null()) return;
  std::vector<const json::Value*> list;
  if (!spec.is_object()) fail(where, ": pre_tokenizer must be an object or null");
  if (str_member(spec, "type", where) == "Sequence") {
    const json::Value* items = json::find(spec, "pretokenizers");
    if (!items || !items->is_array()) fail(where, ": a Sequence pre_tokenizer needs a 'pretokenizers' array");
    for (const auto& item : *items) list.push_back(&item);
  } else {
    list.push_back(&spec);
  }
  for (size_t i = 0; i < list.size(); ++i) {
    const json::Value& step = *list[i];
    std::string at = where + ".pretokenizers[" + std::to_string(i) + "]";
    if (!step.is_object()) fail(at, ": must be an object");
    const std::string& type = str_member(step, "type", at);
    if (type == "Split") {
      const json::Value* pat = json::find(step, "pattern");
      std::string onig;
      if (pat && json::find(*pat, "Regex") && (*pat)["Regex"].is_string()) onig = (*pat)["Regex"].get<std::string>();
      else if (pat && json::find(*pat, "String") && (*pat)["String"].is_string())
        onig = escape_literal((*pat)["String"].get<std::string>());
      else fail(at, ": Split needs pattern {\"Regex\": ...} or {\"String\": ...}");
      steps_.push_back(std::make_unique<Step>(onig, parse_behavior(str_member(step, "behavior", at), at),
                                              bool_member(step, "invert", false, at), at));
    } else if (type == "Digits") {
      bool individual = bool_member(step, "individual_digits", false, at);
      steps_.push_back(std::make_unique<Step>("\\p{N}", individual ? Behavior::Isolated : Behavior::Contiguous,
                                              false, at));
    } else if (type == "ByteLevel") {
      // The byte mapping itself is implicit: BPE works on bytes (tokenizer_bpe.h).
      if (bool_member(step, "add_prefix_space", true, at))
        fail(at, ": ByteLevel with add_prefix_space is not supported (DeepSeek's tokenizers set it false)");
      if (bool_member(step, "use_regex", true, at))
        steps_.push_back(std::make_unique<Step>(gpt2_pattern(), Behavior::Isolated, false, at));
    } else {
      fail(at, ": pre-tokenizer type '", type, "' is not supported (Sequence, Split, Digits and ByteLevel are)");
    }
  }
}

PreTokenizer::~PreTokenizer() = default;
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;

void PreTokenizer::split(std::string_view text, Span span, std::vector<Span>* out) const {
  if (span.end == span.begin) return;
  std::vector<Span> cur{span}, next;
  pcre2_match_data* md = steps_.empty() ? nullptr : pcre2_match_data_create(1, nullptr);
  try {
    for (const auto& step : steps_) {
      next.clear();
      for (const Span& s : cur) step->apply(text, s, md, &next);
      cur.swap(next);
    }
  } catch (...) {
    pcre2_match_data_free(md);
    throw;
  }
  pcre2_match_data_free(md);
  for (const Span& s : cur)
    if (s.end > s.begin) out->push_back(s);
}

}  // namespace mlarun::tok
