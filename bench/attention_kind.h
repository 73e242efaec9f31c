// AttentionKind: which attention a model of a DeepSeek config is built with. MLA is the model as trained; MHA,
// GQA (G key/value heads) and MQA (one) are the baselines of the DeepSeek-V2 paper's comparison, with K and V
// heads of v_head_dim (128), so a same-size model can be benchmarked against MLA on the same cache machinery.
// This file also says which key/value heads a tensor-parallel rank holds: heads split while there are at least
// as many as ranks, and otherwise each rank keeps the one group its query heads use (GQA groups no further than
// one per rank; MQA's single head is replicated).
// A kind may carry a sliding window of W tokens (`bench cache --window W`, over the heads of a baseline kind):
// its rows are those heads' rows, but a sequence caches only its last min(L, W) tokens. Only the cache accounting
// models it (BaselineAttention refuses a windowed kind).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/model_config.h"

namespace mlarun {

struct AttentionKind {
  enum class Type { MLA, MHA, GQA, MQA };
  Type type = Type::MLA;
  int64_t groups = 0;  // GQA: key/value heads G; 0 for the others
  int64_t window = 0;  // sliding window in tokens over these heads; 0: full attention (MLA: always 0)

  static AttentionKind mla() { return {Type::MLA, 0}; }
  static AttentionKind mha() { return {Type::MHA, 0}; }
  static AttentionKind gqa(int64_t g) { return {Type::GQA, g}; }
  static AttentionKind mqa() { return {Type::MQA, 0}; }
  // Sliding-window attention of `window` tokens over a baseline's heads; throws for MLA or window < 1.
  static AttentionKind sliding(const AttentionKind& heads, int64_t window);

  bool is_mla() const { return type == Type::MLA; }
  bool is_sliding() const { return window > 0; }
  // "mla", "mha", "gqa:8", "mqa" (what the command line takes); windowed: "swa:4096/gqa:8".
  std::string name() const;
  // Tokens a sequence of seq_len tokens keeps in the cache: min(seq_len, window) with a window, else seq_len.
  int64_t cached_tokens(int64_t seq_len) const { return window > 0 && window < seq_len ? window : seq_len; }
  // Key/value heads of the whole model: MHA n_heads, GQA G, MQA 1, MLA 0 (it caches a latent instead).
  int64_t kv_heads(const ModelConfig& c) const;
  bool operator==(const AttentionKind& o) const {
    return type == o.type && groups == o.groups && window == o.window;
  }
};

// Head dimension of the baseline K, Q and V heads: v_head_dim (the paper's d_h = 128).
int64_t baseline_head_dim(const ModelConfig& c);

// Parses "mla", "mha", "gqa:G" or "mqa" for a model with `n_heads` query heads; G must divide n_heads.
// Errors name `option` and the value.
AttentionKind parse_attention_kind(const std::string& text, int64_t n_heads, const std::string& option);
// A comma-separated list of the above, in order, without duplicates.
std::vector<AttentionKind> parse_attention_kinds(const std::string& list, int64_t n_heads, const std::string& option);

// The key/value heads rank `rank` of `tp` holds for a baseline kind (for MLA: kv_heads 0, nothing to split).
struct KvHeadLayout {
  int64_t kv_heads = 0;        // whole model
  int64_t local_q_heads = 0;   // n_heads / tp
  int64_t local_kv_heads = 0;  // kv_heads / tp when kv_heads >= tp, else 1 (replicated groups)
  int64_t first_kv_head = 0;   // global index of this rank's first kv head
  int64_t tp = 1;
  // Several ranks hold the same kv head (fewer kv heads than ranks): their cache is not split further.
  bool replicated() const { return kv_heads > 0 && kv_heads < tp; }
};
// Throws naming the kind and tp when the heads cannot be laid out (tp must divide n_heads; for GQA with fewer
// groups than ranks, G must divide tp so that every rank's query heads fall in one group).
KvHeadLayout kv_head_layout(const ModelConfig& c, const AttentionKind& kind, int64_t tp, int64_t rank);

}  // namespace mlarun
