// The SVG chart of `bench cache` (declared in cache_report.h): three panels against the TP degree, cache bytes per
// token per rank, tokens that fit, and sequences of the longest --seq-len that fit (where a sliding window pays);
// one line per attention kind (MLA also per DCP size, sliding windows per W) and kv dtype (fp8/int8 dashed).
#include <algorithm>
#include <limits>

#include "bench/bench_common.h"
#include "bench/cache_report.h"
#include "bench/svg_chart.h"
#include "bench/text_table.h"

namespace mlarun::bench {

namespace {

std::string dcp_color(int64_t dcp) {
  static const char* colors[] = {"#e377c2", "#ad494a", "#7b4173", "#ff9896", "#843c39"};
  int i = 0;
  while (dcp > 2 && i < 4) dcp /= 2, ++i;
  return colors[i];
}

std::string kind_color(const AttentionKind& k, size_t index) {
  static const char* gqa_colors[] = {"#2ca02c", "#ff7f0e", "#8c564b", "#17becf", "#bcbd22"};
  static const char* swa_colors[] = {"#7f7f7f", "#393b79", "#637939", "#8c6d31"};
  if (k.is_sliding()) return swa_colors[index % 4];
  switch (k.type) {
    case AttentionKind::Type::MLA: return "#d62728";
    case AttentionKind::Type::MHA: return "#1f77b4";
    case AttentionKind::Type::MQA: return "#9467bd";
    case AttentionKind::Type::GQA: return gqa_colors[index % 5];
  }
  return "#000000";
}

}  // namespace

std::string cache_chart_svg(const ModelConfig& c, const CacheBenchSettings& s, const std::vector<AttentionKind>& kinds,
                            const std::vector<CacheRecord>& records) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  ChartPanel bytes, tokens, seqs;
  const int64_t L = *std::max_element(s.seq_lens.begin(), s.seq_lens.end());
  bytes.title = "Cache per token on one rank (all " + std::to_string(c.n_layers) + " layers)";
  bytes.y_label = "bytes per token per rank (log)";
  bytes.value_format = [](double v) { return short_number(v) + "B"; };
  tokens.title = "Tokens that fit (the TP group's context)";
  tokens.y_label = "cache capacity in tokens (log)";
  seqs.title = "Sequences of " + with_commas(L) + " tokens that fit";
  seqs.y_label = "sequences (log; a window caches min(L, W))";
  for (ChartPanel* p : {&bytes, &tokens, &seqs}) {
    p->x_label = "tensor-parallel degree (GPUs)";
    for (int64_t tp : s.tp_degrees) p->x_ticks.push_back(std::to_string(tp));
  }
  for (size_t i = 0; i < s.tp_degrees.size(); ++i) {
    bool fits = weight_bytes_per_rank(c, s.tp_degrees[i]) < s.memory_bytes;
    tokens.column_notes.push_back(fits ? "" : "weights\nalone\n> " + gib(s.memory_bytes, 0) + " GiB");
    seqs.column_notes.push_back(tokens.column_notes.back());
  }
  // One line per (kind, dcp, dtype): MLA at dcp 1 and at each DCP size that divides some TP degree (no point where
  // it does not divide), right after plain MLA; the baselines at dcp 1.
  std::vector<std::pair<AttentionKind, int64_t>> lines;
  for (const AttentionKind& k : kinds) {
    lines.push_back({k, 1});
    if (!k.is_mla()) continue;
    std::vector<int64_t> sizes;
    for (int64_t tp : s.tp_degrees)
      for (int64_t n : mla_dcp_sizes(s, tp))
        if (n > 1 && std::find(sizes.begin(), sizes.end(), n) == sizes.end()) sizes.push_back(n);
    std::sort(sizes.begin(), sizes.end());
    for (int64_t n : sizes) lines.push_back({k, n});
  }
  std::vector<ChartLegendEntry> legend;
  size_t gqa_index = 0, swa_index = 0;
  for (const auto& [k, dcp] : lines) {
    std::string color = dcp > 1 ? dcp_color(dcp) : kind_color(k, k.is_sliding() ? swa_index++ : k.type == AttentionKind::Type::GQA ? gqa_index++ : 0);
    for (CacheDtype t : s.kv_dtypes) {
      std::string name = k.name() + (dcp > 1 ? " dcp" + std::to_string(dcp) : "");
      ChartSeries b{name + " " + kv_dtype_name(t), color, t != s.kv_dtypes.front(), {}};
      ChartSeries n = b, q = b;
      for (int64_t tp : s.tp_degrees) {
        const CacheRecord* found = nullptr;
        for (const CacheRecord& r : records)
          if (r.footprint.kind == k && r.footprint.dcp == dcp && r.footprint.dtype == t && r.footprint.tp == tp)
            found = &r;
        b.values.push_back(found ? found->footprint.bytes_per_token_per_rank() : nan);
        n.values.push_back(found && found->capacity.fits() && found->capacity.tokens() > 0
                               ? double(found->capacity.tokens())
                               : nan);
        q.values.push_back(found && found->capacity.fits() && found->capacity.max_full_sequences(L) > 0
                               ? double(found->capacity.max_full_sequences(L))
                               : nan);
      }
      bytes.series.push_back(b);
      tokens.series.push_back(n);
      seqs.series.push_back(q);
      legend.push_back({b.label, color, b.dashed});
    }
  }
  bool any_dcp = false, any_swa = false;
  for (const auto& [k, dcp] : lines) any_dcp = any_dcp || dcp > 1, any_swa = any_swa || k.is_sliding();
  std::string file = s.config_path.substr(s.config_path.find_last_of('/') + 1);
  return render_line_chart_svg(
      std::string("KV cache: MLA") + (any_dcp ? " (and MLA + DCP)" : "") + " vs MHA / GQA / MQA" +
          (any_swa ? " / sliding window" : "") + ", " + file,
      gib(s.memory_bytes, 0) + " GiB per GPU minus its share of the bf16 weights (" +
          fixed(double(c.num_params()) / 1e9, 1) + "B params / tp), blocks of " + std::to_string(s.block_size) +
          " tokens; MLA's latent is whole on every rank" + (any_dcp ? ", dcpN: 1/N of the tokens" : "") +
          "; fp8/int8 with scales",
      {bytes, tokens, seqs}, legend);
}

}  // namespace mlarun::bench
