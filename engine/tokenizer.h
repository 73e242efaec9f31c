// The text side of serving: a Hugging Face tokenizer.json byte-level BPE tokenizer as DeepSeek ships it (V2 and
// V3 families), with its tokenizer_config.json (bos/eos, add_bos_token, chat_template). encode() equals HF
// tokenizers' encode(text, add_special_tokens=False).ids and decode() equals decode(ids) on DeepSeek's files,
// held to golden files written by HF (tests/tools/make_tokenizer_goldens.py, docs/tokenizer.md). What it reads:
// added tokens (special or not, matched in the text before pre-tokenization, leftmost-longest), the
// pre-tokenizer (tokenizer_pretokenizer.h), the BPE model (merges as "a b" or ["a", "b"]) and the ByteLevel
// decoder; anything else a tokenizer.json may hold (normalizers, other models) is refused by name.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/json_fwd.h"

namespace mlarun {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false;     // skipped by decode(skip_special_tokens = true)
  bool normalized = false;  // matched after the normalizer (DeepSeek has none, so only the order changes)
};

class Tokenizer {
 public:
  // `path`: a tokenizer.json, or a directory holding tokenizer.json and optionally tokenizer_config.json.
  // Throws mlarun::Error naming the file and the field for anything malformed or unsupported.
  static Tokenizer load(const std::string& path);
  // From parsed files; `config` may be null. `source` names them in errors.
  static Tokenizer from_json(const json::Value& tokenizer, const json::Value* config, const std::string& source);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // HF encode(text, add_special_tokens).ids; with add_special_tokens, bos/eos are added as the config's
  // add_bos_token/add_eos_token say. `text` must be valid UTF-8 (mlarun::Error otherwise). Thread-safe.
  std::vector<int32_t> encode(const std::string& text, bool add_special_tokens = false) const;
  // HF decode(ids, skip_special_tokens): byte-level decoding, invalid UTF-8 becoming U+FFFD; ids that name no
  // token are skipped, as HF skips them.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;

  // Largest id + 1 over the vocabulary and the added tokens (HF get_vocab_size(with_added_tokens=True) when
  // ids are dense).
  int64_t vocab_size() const;
  std::optional<int32_t> token_to_id(const std::string& token) const;
  std::optional<std::string> id_to_token(int32_t id) const;  // the token as the vocabulary spells it
  const std::vector<AddedToken>& added_tokens() const;

  // tokenizer_config.json (empty / nullopt / false when absent).
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;
  const std::string& bos_token() const;
  const std::string& eos_token() const;
  bool add_bos_token() const;
  bool add_eos_token() const;
  const std::string& chat_template() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mlarun
