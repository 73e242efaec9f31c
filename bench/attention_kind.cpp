// Parsing attention kinds and laying their key/value heads out over tensor-parallel ranks (see attention_kind.h).
#include "bench/attention_kind.h"

#include <cerrno>
#include <cstdlib>

#include "runtime/error.h"

namespace mlarun {

AttentionKind AttentionKind::sliding(const AttentionKind& heads, int64_t window) {
  MLARUN_CHECK(!heads.is_mla(), "sliding-window attention is modelled over MHA/GQA/MQA heads, not MLA's latent");
  MLARUN_CHECK(window >= 1, "sliding-window attention: window ", window, " must be at least 1 token");
  AttentionKind k = heads;
  k.window = window;
  return k;
}

std::string AttentionKind::name() const {
  if (window > 0) {
    AttentionKind heads = *this;
    heads.window = 0;
    return "swa:" + std::to_string(window) + "/" + heads.name();
  }
  switch (type) {
    case Type::MLA: return "mla";
    case Type::MHA: return "mha";
    case Type::GQA: return "gqa:" + std::to_string(groups);
    case Type::MQA: return "mqa";
  }
  return "?";
}

int64_t AttentionKind::kv_heads(const ModelConfig& c) const {
  switch (type) {
    case Type::MLA: return 0;
    case Type::MHA: return c.n_heads;
    case Type::GQA: return groups;
    case Type::MQA: return 1;
  }
  return 0;
}

int64_t baseline_head_dim(const ModelConfig& c) { return c.v_head_dim; }

AttentionKind parse_attention_kind(const std::string& text, int64_t n_heads, const std::string& option) {
  if (text == "mla") return AttentionKind::mla();
  if (text == "mha") return AttentionKind::mha();
  if (text == "mqa") return AttentionKind::mqa();
  if (text.rfind("gqa:", 0) == 0) {
    std::string number = text.substr(4);
    char* end = nullptr;
    errno = 0;
    long long g = std::strtoll(number.c_str(), &end, 10);
    if (number.empty() || *end != '\0' || errno != 0 || g < 1)
      fail("option ", option, ": value '", text, "': the group count after 'gqa:' must be a positive integer");
    if (n_heads % g != 0)
      fail("option ", option, ": value '", text, "': ", g, " key/value groups do not divide the model's ", n_heads,
           " attention heads");
    return AttentionKind::gqa(g);
  }
  fail("option ", option, ": value '", text, "': unknown attention kind (expected mla, mha, gqa:G or mqa)");
}

std::vector<AttentionKind> parse_attention_kinds(const std::string& list, int64_t n_heads, const std::string& option) {
  std::vector<AttentionKind> kinds;
  size_t pos = 0;
  while (true) {
    size_t comma = list.find(',', pos);
    std::string item = list.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    AttentionKind k = parse_attention_kind(item, n_heads, option);
    for (const AttentionKind& seen : kinds)
      if (seen == k) fail("option ", option, ": value '", list, "': '", item, "' is listed twice");
    kinds.push_back(k);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return kinds;
}

KvHeadLayout kv_head_layout(const ModelConfig& c, const AttentionKind& kind, int64_t tp, int64_t rank) {
  MLARUN_CHECK(tp >= 1 && rank >= 0 && rank < tp, "kv_head_layout: rank ", rank, " of ", tp);
  if (c.n_heads % tp != 0)
    fail(kind.name(), " attention: cannot split ", c.n_heads, " attention heads over ", tp,
         " ranks: not divisible");
  KvHeadLayout l;
  l.tp = tp;
  l.local_q_heads = c.n_heads / tp;
  l.kv_heads = kind.kv_heads(c);
  if (kind.is_mla()) return l;
  if (l.kv_heads >= tp) {
    if (l.kv_heads % tp != 0)
      fail(kind.name(), " attention: cannot split ", l.kv_heads, " key/value heads over ", tp, " ranks: not divisible");
    l.local_kv_heads = l.kv_heads / tp;
    l.first_kv_head = rank * l.local_kv_heads;
  } else {
    // Fewer kv heads than ranks: a rank's query heads [rank * Hl, (rank + 1) * Hl) must all read one kv head.
    if (tp % l.kv_heads != 0)
      fail(kind.name(), " attention: ", l.kv_heads, " key/value heads over ", tp,
           " ranks: a rank's query heads would straddle two groups (the group count must divide the rank count)");
    l.local_kv_heads = 1;
    l.first_kv_head = rank * l.local_q_heads / (c.n_heads / l.kv_heads);
  }
  return l;
}

}  // namespace mlarun
