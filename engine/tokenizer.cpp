// Tokenizer: reads tokenizer.json / tokenizer_config.json and runs HF's encode order: added tokens (the
// non-normalized ones first, then the normalized ones in what is left), the pre-tokenizer, then byte-level BPE
// per piece (tokenizer.h).
#include "engine/tokenizer.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <filesystem>
#include <unordered_map>

#include "engine/tokenizer_bpe.h"
#include "engine/tokenizer_pretokenizer.h"
#include "runtime/error.h"
#include "runtime/json.h"

namespace mlarun {

namespace {

// Leftmost-longest matching of the added tokens (HF uses an Aho-Corasick automaton with the same semantics).
class TokenTrie {
 public:
  void add(const std::string& s, int32_t id) {
    int32_t node = 0;
    for (char c : s) {
      auto& kids = nodes_[size_t(node)].kids;
      auto it = std::find_if(kids.begin(), kids.end(), [&](auto& k) { return k.first == uint8_t(c); });
      if (it != kids.end()) {
        node = it->second;
      } else {
        int32_t fresh = int32_t(nodes_.size());
        kids.emplace_back(uint8_t(c), fresh);  // `kids` may dangle after the push below: use it first
        nodes_.emplace_back();
        node = fresh;
      }
    }
    nodes_[size_t(node)].id = id;
    first_[uint8_t(s[0])] = true;
  }
  bool empty() const { return nodes_.size() == 1; }
  // The longest token starting at text[i], its length in *len; -1 when none.
  int32_t match(std::string_view text, size_t i, size_t* len) const {
    if (!first_[uint8_t(text[i])]) return -1;
    int32_t node = 0, best = -1;
    for (size_t k = i; k < text.size(); ++k) {
      const auto& kids = nodes_[size_t(node)].kids;
      auto it = std::find_if(kids.begin(), kids.end(), [&](auto& c) { return c.first == uint8_t(text[k]); });
      if (it == kids.end()) break;
      node = it->second;
      if (nodes_[size_t(node)].id >= 0) {
        best = nodes_[size_t(node)].id;
        *len = k + 1 - i;
      }
    }
    return best;
  }

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> kids;
    int32_t id = -1;
  };
  std::vector<Node> nodes_{Node{}};
  bool first_[256] = {};
};

struct Piece {
  tok::Span span;
  int32_t added_id;  // -1: text still to pre-tokenize
};

void split_added(const TokenTrie& trie, std::string_view text, const std::vector<Piece>& in, std::vector<Piece>* out) {
  for (const Piece& p : in) {
    if (p.added_id >= 0 || trie.empty()) {
      out->push_back(p);
      continue;
    }
    size_t start = p.span.begin;
    for (size_t i = p.span.begin; i < p.span.end;) {
      size_t len = 0;
      int32_t id = trie.match(text.substr(0, p.span.end), i, &len);
      if (id < 0) {
        ++i;
        continue;
      }
      if (start < i) out->push_back({{start, i}, -1});
      out->push_back({{i, i + len}, id});
      i += len;
      start = i;
    }
    if (start < p.span.end) out->push_back({{start, p.span.end}, -1});
  }
}

const json::Value& member(const json::Value& v, const char* key, const std::string& where) {
  const json::Value* m = json::find(v, key);
  if (!m) fail(where, ": missing '", key, "'");
  return *m;
}

bool flag(const json::Value& v, const char* key, const std::string& where) {
  const json::Value* m = json::find(v, key);
  if (!m || m->is_null()) return false;
  if (!m->is_boolean()) fail(where, ": '", key, "' must be true or false");
  return m->get<bool>();
}

// tokenizer_config.json spells a token as a string or as {"__type": "AddedToken", "content": ...}.
std::string config_token(const json::Value& cfg, const char* key, const std::string& where) {
  const json::Value* m = json::find(cfg, key);
  if (!m || m->is_null()) return "";
  if (m->is_string()) return m->get<std::string>();
  if (m->is_object() && json::find(*m, "content") && (*m)["content"].is_string()) return (*m)["content"].get<std::string>();
  fail(where, ": '", key, "' must be a string or an object with 'content'");
}

std::atomic<uint64_t> g_serial{0};

}  // namespace

struct Tokenizer::Impl {
  uint64_t serial = ++g_serial;  // tells the per-thread BPE caches apart
  std::unordered_map<std::string, int32_t> vocab;  // token (byte-level spelling) -> id, added tokens included
  std::vector<std::string> id_token;               // id -> token ("" where none)
  std::vector<std::string> id_bytes;               // id -> what decode writes for it
  std::vector<uint8_t> id_kind;                    // 0: none, 1: token, 2: special added token
  std::vector<AddedToken> added;
  TokenTrie plain_trie, normalized_trie;
  tok::PreTokenizer pre{json::Value(nullptr), ""};
  std::unique_ptr<tok::BytePairEncoder> bpe;
  bool ignore_merges = false;
  std::unordered_map<std::string, int32_t> bytes_vocab;  // raw bytes -> id, for ignore_merges
  std::string bos, eos, chat_template;
  std::optional<int32_t> bos_id, eos_id;
  bool add_bos = false, add_eos = false;
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::load(const std::string& path) {
  namespace fs = std::filesystem;
  fs::path file = path, dir;
  if (fs::is_directory(file)) {
    dir = file;
    file = dir / "tokenizer.json";
    if (!fs::exists(file)) fail(path, ": no tokenizer.json in this directory");
  } else {
    if (!fs::exists(file)) fail(path, ": no such file");
    dir = file.parent_path();
  }
  json::Value tok = json::parse_file(file.string());
  fs::path cfg_path = dir / "tokenizer_config.json";
  if (fs::exists(cfg_path)) {
    json::Value cfg = json::parse_file(cfg_path.string());
    return from_json(tok, &cfg, file.string());
  }
  return from_json(tok, nullptr, file.string());
}

Tokenizer Tokenizer::from_json(const json::Value& t, const json::Value* cfg, const std::string& src) {
  auto impl = std::make_unique<Impl>();
  if (!t.is_object()) fail(src, ": a tokenizer.json must hold an object");
  const json::Value* norm = json::find(t, "normalizer");
  if (norm && !norm->is_null()) {
    const json::Value* list = json::find(*norm, "normalizers");
    if (!(norm->is_object() && norm->value("type", "") == "Sequence" && list && list->is_array() && list->empty()))
      fail(src, ": normalizer ", json::show(*norm).substr(0, 80), " is not supported (DeepSeek's has none)");
  }
  const json::Value* dec = json::find(t, "decoder");
  if (!dec || !dec->is_object() || dec->value("type", "") != "ByteLevel")
    fail(src, ": decoder must be ByteLevel (a byte-level BPE tokenizer)");
  const json::Value& model = member(t, "model", src);
  std::string where = src + ": model";
  if (!model.is_object() || model.value("type", "BPE") != "BPE") fail(where, ": only BPE models are supported");
  for (const char* key : {"dropout", "continuing_subword_prefix", "end_of_word_suffix"})
    if (json::find(model, key) && !model[key].is_null()) fail(where, ": '", key, "' is not supported");
  if (flag(model, "byte_fallback", where)) fail(where, ": byte_fallback is not supported");
  impl->ignore_merges = flag(model, "ignore_merges", where);

  auto put = [&](int32_t id, const std::string& token, uint8_t kind) {
    if (id < 0) fail(where, ": negative id ", id, " for '", token, "'");
    if (size_t(id) >= impl->id_token.size()) {
      impl->id_token.resize(size_t(id) + 1);
      impl->id_kind.resize(size_t(id) + 1, 0);
    }
    impl->id_token[size_t(id)] = token;
    impl->id_kind[size_t(id)] = kind;
  };
  const json::Value& vocab = member(model, "vocab", where);
  if (!vocab.is_object()) fail(where, ".vocab must be an object");
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    auto id = json::to_int64(it.value());
    if (!id || *id > INT32_MAX) fail(where, ".vocab['", it.key(), "']: the id must be an integer");
    impl->vocab[it.key()] = int32_t(*id);
    put(int32_t(*id), it.key(), 1);
  }
  auto id_of = [&](const std::string& s, size_t r) {
    auto it = impl->vocab.find(s);
    if (it == impl->vocab.end()) fail(where, ".merges[", r, "]: '", s, "' is not in the vocabulary");
    return it->second;
  };
  std::vector<tok::BytePairEncoder::Merge> merges;
  const json::Value& ml = member(model, "merges", where);
  if (!ml.is_array()) fail(where, ".merges must be an array");
  for (size_t r = 0; r < ml.size(); ++r) {
    std::string a, b;
    if (ml[r].is_string()) {  // "a b"
      const std::string& s = ml[r].get_ref<const std::string&>();
      size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        fail(where, ".merges[", r, "]: '", s, "' is not two tokens separated by one space");
      a = s.substr(0, sp), b = s.substr(sp + 1);
    } else if (ml[r].is_array() && ml[r].size() == 2 && ml[r][0].is_string() && ml[r][1].is_string()) {
      a = ml[r][0].get<std::string>(), b = ml[r][1].get<std::string>();
    } else {
      fail(where, ".merges[", r, "]: must be \"a b\" or [\"a\", \"b\"]");
    }
    merges.push_back({id_of(a, r), id_of(b, r), id_of(a + b, r)});
  }
  std::array<int32_t, 256> byte_ids;
  for (int b = 0; b < 256; ++b) {
    auto it = impl->vocab.find(tok::byte_to_char()[size_t(b)]);
    byte_ids[size_t(b)] = it == impl->vocab.end() ? -1 : it->second;
  }
  const json::Value* unk = json::find(model, "unk_token");
  if (unk && !unk->is_null())
    for (int b = 0; b < 256; ++b)
      if (byte_ids[size_t(b)] < 0) fail(where, ": an unk_token with bytes missing from the vocabulary is not supported");
  impl->bpe = std::make_unique<tok::BytePairEncoder>(byte_ids, merges);
  impl->pre = tok::PreTokenizer(json::find(t, "pre_tokenizer") ? t["pre_tokenizer"] : json::Value(nullptr),
                                src + ": pre_tokenizer");

  const json::Value* added = json::find(t, "added_tokens");
  if (added && !added->is_null()) {
    if (!added->is_array()) fail(src, ": added_tokens must be an array");
    for (size_t i = 0; i < added->size(); ++i) {
      const json::Value& a = (*added)[i];
      std::string at = src + ": added_tokens[" + std::to_string(i) + "]";
      if (!a.is_object()) fail(at, ": must be an object");
      std::optional<int64_t> id = json::to_int64(member(a, "id", at));
      const json::Value& content = member(a, "content", at);
      if (!id || *id > INT32_MAX || !content.is_string() || content.get_ref<const std::string&>().empty())
        fail(at, ": needs an integer 'id' and a non-empty 'content'");
      for (const char* key : {"single_word", "lstrip", "rstrip"})
        if (flag(a, key, at)) fail(at, ": '", key, "' is not supported (DeepSeek's added tokens never set it)");
      AddedToken tk{int32_t(*id), content.get<std::string>(), flag(a, "special", at), flag(a, "normalized", at)};
      impl->vocab[tk.content] = tk.id;
      put(tk.id, tk.content, tk.special ? 2 : 1);
      (tk.normalized ? impl->normalized_trie : impl->plain_trie).add(tk.content, tk.id);
      impl->added.push_back(std::move(tk));
    }
  }
  impl->id_bytes.resize(impl->id_token.size());
  for (size_t id = 0; id < impl->id_token.size(); ++id) {
    if (!impl->id_kind[id]) continue;
    if (!tok::chars_to_bytes(impl->id_token[id], &impl->id_bytes[id])) impl->id_bytes[id] = impl->id_token[id];
    if (impl->ignore_merges) impl->bytes_vocab.emplace(impl->id_bytes[id], int32_t(id));
  }

  if (cfg) {
    std::string cw = src + " (tokenizer_config.json)";
    if (!cfg->is_object()) fail(cw, ": must hold an object");
    impl->bos = config_token(*cfg, "bos_token", cw);
    impl->eos = config_token(*cfg, "eos_token", cw);
    // transformers' LlamaTokenizerFast adds bos unless told otherwise
    impl->add_bos = json::find(*cfg, "add_bos_token") ? flag(*cfg, "add_bos_token", cw)
                                                      : cfg->value("tokenizer_class", "") == "LlamaTokenizerFast";
    impl->add_eos = flag(*cfg, "add_eos_token", cw);
    const json::Value* tpl = json::find(*cfg, "chat_template");
    if (tpl && tpl->is_string()) {
      impl->chat_template = tpl->get<std::string>();
    } else if (tpl && tpl->is_array()) {  // [{"name": "default", "template": ...}, ...]
      for (const auto& e : *tpl)
        if (e.is_object() && e.value("name", "") == "default" && json::find(e, "template") && e["template"].is_string())
          impl->chat_template = e["template"].get<std::string>();
    } else if (tpl && !tpl->is_null()) {
      fail(cw, ": chat_template must be a string or a list of {name, template}");
    }
    auto find_id = [&](const std::string& s) -> std::optional<int32_t> {
      if (s.empty()) return std::nullopt;
      auto it = impl->vocab.find(s);
      if (it == impl->vocab.end()) fail(cw, ": '", s, "' is not a token of ", src);
      return it->second;
    };
    impl->bos_id = find_id(impl->bos);
    impl->eos_id = find_id(impl->eos);
  }
  return Tokenizer(std::move(impl));
}

std::vector<int32_t> Tokenizer::encode(const std::string& text, bool add_special_tokens) const {
  if (!json::is_valid_utf8(text)) fail("tokenizer: the text to encode is not valid UTF-8");
  const Impl& m = *impl_;
  struct ThreadCache {
    uint64_t serial = 0;
    tok::BytePairEncoder::Cache cache;
  };
  thread_local ThreadCache tc;
  if (tc.serial != m.serial) {
    tc.cache.clear();
    tc.serial = m.serial;
  }
  std::vector<int32_t> ids;
  if (add_special_tokens && m.add_bos && m.bos_id) ids.push_back(*m.bos_id);
  std::vector<Piece> pieces{{{0, text.size()}, -1}}, tmp;
  split_added(m.plain_trie, text, pieces, &tmp);
  pieces.clear();
  split_added(m.normalized_trie, text, tmp, &pieces);
  std::vector<tok::Span> words;
  for (const Piece& p : pieces) {
    if (p.added_id >= 0) {
      ids.push_back(p.added_id);
      continue;
    }
    words.clear();
    m.pre.split(text, p.span, &words);
    for (const tok::Span& w : words) {
      std::string_view word(text.data() + w.begin, w.end - w.begin);
      if (m.ignore_merges) {
        auto it = m.bytes_vocab.find(std::string(word));
        if (it != m.bytes_vocab.end()) {
          ids.push_back(it->second);
          continue;
        }
      }
      m.bpe->encode(word, &ids, &tc.cache);
    }
  }
  if (add_special_tokens && m.add_eos && m.eos_id) ids.push_back(*m.eos_id);
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  const Impl& m = *impl_;
  std::string bytes;
  for (int32_t id : ids) {
    if (id < 0 || size_t(id) >= m.id_kind.size() || !m.id_kind[size_t(id)]) continue;
    if (skip_special_tokens && m.id_kind[size_t(id)] == 2) continue;
    bytes += m.id_bytes[size_t(id)];
  }
  return tok::utf8_lossy(bytes);
}

int64_t Tokenizer::vocab_size() const { return int64_t(impl_->id_token.size()); }

std::optional<int32_t> Tokenizer::token_to_id(const std::string& token) const {
  auto it = impl_->vocab.find(token);
  if (it == impl_->vocab.end()) return std::nullopt;
  return it->second;
}

std::optional<std::string> Tokenizer::id_to_token(int32_t id) const {
  if (id < 0 || size_t(id) >= impl_->id_kind.size() || !impl_->id_kind[size_t(id)]) return std::nullopt;
  return impl_->id_token[size_t(id)];
}

const std::vector<AddedToken>& Tokenizer::added_tokens() const { return impl_->added; }
std::optional<int32_t> Tokenizer::bos_id() const { return impl_->bos_id; }
std::optional<int32_t> Tokenizer::eos_id() const { return impl_->eos_id; }
const std::string& Tokenizer::bos_token() const { return impl_->bos; }
const std::string& Tokenizer::eos_token() const { return impl_->eos; }
bool Tokenizer::add_bos_token() const { return impl_->add_bos; }
bool Tokenizer::add_eos_token() const { return impl_->add_eos; }
const std::string& Tokenizer::chat_template() const { return impl_->chat_template; }

}  // namespace mlarun
