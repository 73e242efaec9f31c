// Tables, notes, JSON and chart of `bench cache` (see cache_report.h).
#include "bench/cache_report.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "bench/bench_common.h"
#include "bench/svg_chart.h"
#include "bench/text_table.h"
#include "runtime/device.h"
#include "runtime/json.h"

namespace mlarun::bench {

namespace {

std::string kv_heads_cell(const CacheFootprint& f) {
  if (f.kind.is_mla() && f.dcp > 1) return "latent, 1/" + std::to_string(f.dcp) + " of tokens";
  if (f.kind.is_mla()) return f.tp > 1 ? "latent (whole)" : "latent";
  return std::to_string(f.kv_heads_per_rank) + (f.replicated ? " (replica)" : "");
}

std::string measure_label(const CacheBenchSettings& s) {
  return s.measure_bytes > 0 ? "@" + fixed(double(s.measure_bytes) / double(int64_t(1) << 30), 2) + "GiB" : "";
}

// Bytes that may be fractional (per token per rank under DCP, ring traffic): whole numbers with commas.
std::string bytes_cell(double v) {
  return v == std::floor(v) ? with_commas(int64_t(v)) : fixed(v, 1);
}
json::Value json_number(double v) {
  return v == std::floor(v) && std::fabs(v) < 9e15 ? json::Value(int64_t(v)) : json::Value(v);
}

std::string dcp_color(int64_t dcp) {
  static const char* colors[] = {"#e377c2", "#ad494a", "#7b4173", "#ff9896", "#843c39"};
  int i = 0;
  while (dcp > 2 && i < 4) dcp /= 2, ++i;
  return colors[i];
}

std::string kind_color(const AttentionKind& k, size_t index) {
  static const char* gqa_colors[] = {"#2ca02c", "#ff7f0e", "#8c564b", "#17becf", "#bcbd22"};
  switch (k.type) {
    case AttentionKind::Type::MLA: return "#d62728";
    case AttentionKind::Type::MHA: return "#1f77b4";
    case AttentionKind::Type::MQA: return "#9467bd";
    case AttentionKind::Type::GQA: return gqa_colors[index % 5];
  }
  return "#000000";
}

}  // namespace

std::vector<int64_t> mla_dcp_sizes(const CacheBenchSettings& s, int64_t tp) {
  std::vector<int64_t> sizes = {1};
  for (int64_t n : s.dcp_sizes)
    if (n > 1 && tp % n == 0 && std::find(sizes.begin(), sizes.end(), n) == sizes.end()) sizes.push_back(n);
  return sizes;
}

std::string skipped_dcp_note(const CacheBenchSettings& s) {
  std::string out;
  for (int64_t n : s.dcp_sizes) {
    std::string tps;
    for (int64_t tp : s.tp_degrees)
      if (n > 1 && tp % n != 0) tps += (tps.empty() ? "" : ", ") + std::to_string(tp);
    if (!tps.empty()) out += (out.empty() ? "" : "; ") + std::string("dcp ") + std::to_string(n) + " at tp " + tps;
  }
  return out;
}

std::string per_token_table(const ModelConfig& c, const CacheBenchSettings& s, const std::vector<AttentionKind>& kinds) {
  std::vector<std::string> header = {"attention", "kv heads", "values/token/layer"};
  for (DType t : s.kv_dtypes) {
    header.push_back(kv_dtype_name(t) + " B/token/layer");
    header.push_back(kv_dtype_name(t) + " B/token");
  }
  header.push_back("x MLA");
  TextTable table(header);
  const int64_t mla = cache_footprint(c, AttentionKind::mla(), DType::BF16, 1).elements_per_token_layer;
  for (const AttentionKind& k : kinds) {
    CacheFootprint f = cache_footprint(c, k, DType::BF16, 1);
    std::vector<std::string> row = {k.name(), k.is_mla() ? "latent" : std::to_string(f.kv_heads),
                                    with_commas(f.elements_per_token_layer)};
    for (DType t : s.kv_dtypes) {
      CacheFootprint ft = cache_footprint(c, k, t, 1);
      row.push_back(with_commas(ft.bytes_per_token_layer()));
      row.push_back(with_commas(ft.bytes_per_token()));
    }
    row.push_back(fixed(double(f.elements_per_token_layer) / double(mla), 2));
    table.add_row(row);
  }
  return "== Cache per token: " + s.config_path + " (" + std::to_string(c.n_layers) + " layers; MLA latent " +
         std::to_string(c.kv_lora_rank) + " + rope " + std::to_string(c.qk_rope_head_dim) + "; baselines " +
         std::to_string(c.n_heads) + " query heads of d_h = " + std::to_string(baseline_head_dim(c)) + ")\n" +
         table.render();
}

std::string per_rank_table(const ModelConfig& c, const CacheBenchSettings& s, const std::vector<CacheRecord>& records) {
  const std::string m = measure_label(s);
  TextTable table({"tp", "attention", "dcp", "dtype", "kv heads/rank", "B/token/layer", "B/token", "weights GiB",
                   "cache GiB", "tokens", "seqs@" + std::to_string(s.seq_len), "measured" + m, "computed" + m, "dev",
                   "note"});
  int64_t last_tp = -1;
  for (const CacheRecord& r : records) {
    const CacheFootprint& f = r.footprint;
    const BudgetCapacity& cap = r.capacity;
    if (last_tp >= 0 && f.tp != last_tp) table.add_separator();
    last_tp = f.tp;
    std::string note = footprint_note(f);
    if (!cap.fits()) note = "weights exceed " + gib(s.memory_bytes, 0) + " GiB" + (note.empty() ? "" : "; " + note);
    const CacheMeasurement& me = r.measurement;
    table.add_row({std::to_string(f.tp), f.kind.name(), std::to_string(f.dcp), kv_dtype_name(f.dtype),
                   kv_heads_cell(f), bytes_cell(f.bytes_per_token_layer_per_rank()),
                   bytes_cell(f.bytes_per_token_per_rank()),
                   gib(cap.weight_bytes), cap.fits() ? gib(cap.cache_budget_bytes) : "none",
                   cap.fits() ? with_commas(cap.tokens()) : "-",
                   cap.fits() ? with_commas(cap.max_full_sequences(s.seq_len)) : "-",
                   r.measured ? with_commas(me.tokens) : "-", r.measured ? with_commas(me.tokens_computed) : "-",
                   r.measured ? (me.deviation() >= 0 ? "+" : "") + fixed(100 * me.deviation(), 2) + "%" : "-", note});
  }
  return "== Per rank: " + gib(s.memory_bytes, 0) + " GiB minus this rank's bf16 weights (" +
         fixed(double(c.num_params()) / 1e9, 2) + "B params x 2 / tp); blocks of " + std::to_string(s.block_size) +
         " tokens; sequences of " + std::to_string(s.seq_len) + " tokens; MLA under DCP N: bytes per token of the "
         "group's context, tokens the group holds\n" + table.render();
}

std::string decode_comm_table(const ModelConfig& c, const CacheBenchSettings& s,
                              const std::vector<CacheRecord>& records) {
  TextTable table({"tp", "dcp", "heads/rank", "LSE all-gather B", "partial all-reduce B", "DCP merge B",
                   "o_proj all-reduce B", "merge / o_proj"});
  int64_t last_tp = -1;
  for (const CacheRecord& r : records) {
    const CacheFootprint& f = r.footprint;
    if (!f.kind.is_mla() || f.dtype != s.kv_dtypes.front()) continue;  // one row per (tp, dcp)
    if (last_tp >= 0 && f.tp != last_tp) table.add_separator();
    last_tp = f.tp;
    DecodeComm d = decode_comm(c, f.tp, f.dcp);
    table.add_row({std::to_string(f.tp), std::to_string(f.dcp), std::to_string(d.heads_per_rank),
                   bytes_cell(d.lse_all_gather), bytes_cell(d.partial_all_reduce), bytes_cell(d.merge()),
                   bytes_cell(d.o_proj_all_reduce),
                   d.o_proj_all_reduce > 0 && d.merge() > 0 ? fixed(d.merge() / d.o_proj_all_reduce, 2) + "x" : "-"});
  }
  return "== Decode communication per rank per token per layer, MLA (" + decode_comm_model() + "; LSE: " +
         std::to_string(c.n_heads) + " x dcp / tp heads' log-sum-exps; partial outputs: heads x kv_lora_rank " +
         std::to_string(c.kv_lora_rank) + "; o_proj: dim " + std::to_string(c.dim) + ", every attention kind)\n" +
         table.render();
}

std::string cache_notes(const ModelConfig& c, const CacheBenchSettings& s, const std::vector<CacheRecord>& records) {
  CacheFootprint mla = cache_footprint(c, AttentionKind::mla(), DType::BF16, 1);
  std::string out = "Notes\n";
  out += "- MLA caches " + std::to_string(mla.elements_per_token_layer) + " values per token per layer (" +
         with_commas(mla.bytes_per_token_layer()) + " B in bf16) at every TP degree: the latent has no head axis, so "
         "every rank holds all of it, while MHA/GQA split their kv heads (GQA no further than one group per rank; "
         "MQA's one head is replicated). The remedy, decode context parallelism (--decode-context-parallel-size): "
         "shard the latent cache by token across ranks, each attending over its slice, partial results merged by "
         "log-sum-exp.\n";
  bool any_dcp = false;
  for (const CacheRecord& r : records) any_dcp = any_dcp || r.footprint.dcp > 1;
  if (any_dcp)
    out += "- MLA with DCP N (rows with dcp > 1): the N ranks of a group each store every N-th token of every "
           "sequence (token p on rank p mod N), so a rank's row stays " + std::to_string(mla.elements_per_token_layer) +
           " values but covers 1/N of the context: " + with_commas(mla.bytes_per_token_layer()) + " / N B per token "
           "per layer in bf16. A rank's blocks hold " + std::to_string(s.block_size) + " of its tokens; the scheduler "
           "sees virtual blocks of " + std::to_string(s.block_size) + " x N tokens, so the group holds N times a "
           "rank's tokens and wastes at most one virtual block per sequence. The N ranks compute the same " +
           std::to_string(c.n_heads) + " x N / tp heads. DCP is reported for MLA only: the baselines' K/V caches "
           "already split by head, so they appear at dcp 1.\n";
  std::string skipped = skipped_dcp_note(s);
  if (!skipped.empty()) out += "- skipped (dcp must divide tp): " + skipped + ".\n";
  out += "- fp8 counts 1 byte per value. Real FP8 MLA caches also keep scales, not counted here.\n";
  out += "- Every attention kind gets the same budget: the MLA model's weights (num_params x 2 / tp) are subtracted "
         "for all, so the rows differ only by their cache.\n";
  if (!s.measure_enabled) return out + "- measurement skipped (--measure-gib 0).\n";
  int64_t n = 0, tokens = 0, verified = 0, pool = 0, resident = 0;
  double worst = 0;
  for (const CacheRecord& r : records) {
    if (!r.measured) continue;
    const CacheMeasurement& m = r.measurement;
    ++n, tokens += m.tokens, verified += m.tokens_verified;
    worst = std::max(worst, std::fabs(m.deviation()));
    if (m.resident_bytes >= 0) pool += m.pool_bytes, resident += m.resident_bytes;
  }
  std::string where = s.measure_device == Device::CPU
                          ? "host memory (no GPU here: " + gpu_info().reason + ")"
                          : "GPU memory";
  out += "- measured: CachePool + BlockManager in " + where + ", " +
         (s.measure_bytes > 0 ? "at a scaled budget of " + fixed(double(s.measure_bytes) / double(int64_t(1) << 30), 2) +
                                    " GiB per pool set (the full budget does not fit this machine)"
                              : std::string("at each rank's real budget")) +
         ". Pools sized from the attention layer's own cache row, every byte touched" +
         (pool > 0 ? " (resident memory grew by " + fixed(100.0 * double(resident) / double(pool), 1) +
                         "% of the bytes allocated)"
                   : std::string()) +
         ", filled with sequences until the BlockManager refused, every slot's mark read back (" +
         with_commas(verified) + " of " + with_commas(tokens) + " token slots). " + std::to_string(n) +
         " records; largest deviation from the computed capacity " + fixed(100 * worst, 2) + "%.\n";
  return out;
}

json::Value cache_records_json(const ModelConfig& c, const CacheBenchSettings& s,
                               const std::vector<CacheRecord>& records) {
  json::Value model = json::Value::object();
  model["n_layers"] = c.n_layers;
  model["n_heads"] = c.n_heads;
  model["kv_lora_rank"] = c.kv_lora_rank;
  model["qk_rope_head_dim"] = c.qk_rope_head_dim;
  model["baseline_head_dim"] = baseline_head_dim(c);
  model["num_params"] = c.num_params();
  json::Value list = json::Value::array();
  for (const CacheRecord& r : records) {
    const CacheFootprint& f = r.footprint;
    const BudgetCapacity& cap = r.capacity;
    json::Value j = json::Value::object();
    j["attention"] = f.kind.name();
    j["kv_cache_dtype"] = kv_dtype_name(f.dtype);
    j["tensor_parallel_size"] = f.tp;
    j["decode_context_parallel_size"] = f.dcp;
    j["num_kv_heads"] = f.kv_heads;
    j["num_kv_heads_per_rank"] = f.kv_heads_per_rank;
    j["kv_cache_replicated_across_ranks"] = f.replicated;
    j["kv_elements_per_token_per_layer"] = f.elements_per_token_layer;
    j["kv_bytes_per_token_per_layer"] = f.bytes_per_token_layer();
    j["kv_bytes_per_token"] = f.bytes_per_token();
    j["kv_row_elements_per_rank"] = f.row_elements_per_rank;
    j["kv_bytes_per_token_per_layer_per_rank"] = json_number(f.bytes_per_token_layer_per_rank());
    j["kv_bytes_per_token_per_rank"] = json_number(f.bytes_per_token_per_rank());
    j["weights_bytes_per_rank"] = cap.weight_bytes;
    j["weights_fit"] = cap.fits();
    j["kv_cache_memory_bytes"] = std::max<int64_t>(0, cap.cache_budget_bytes);
    j["block_size"] = cap.block_size;
    j["virtual_block_size"] = cap.virtual_block_size();
    j["num_gpu_blocks"] = cap.num_blocks;
    j["kv_cache_tokens"] = cap.tokens();
    j["max_model_len"] = s.seq_len;
    j["max_concurrency"] = cap.max_concurrency(s.seq_len);
    j["max_num_seqs"] = cap.max_full_sequences(s.seq_len);
    DecodeComm d = decode_comm(c, f.tp, f.dcp);
    json::Value comm = json::Value::object();
    comm["heads_per_rank"] = d.heads_per_rank;
    comm["dcp_lse_all_gather"] = json_number(d.lse_all_gather);
    comm["dcp_partial_output_all_reduce"] = json_number(d.partial_all_reduce);
    comm["dcp_merge"] = json_number(d.merge());
    comm["o_proj_all_reduce"] = json_number(d.o_proj_all_reduce);
    j["decode_comm_bytes_per_token_per_layer_per_rank"] = comm;
    std::string note = footprint_note(f);
    if (!note.empty()) j["note"] = note;
    if (r.measured) {
      const CacheMeasurement& m = r.measurement;
      json::Value mj = json::Value::object();
      mj["device"] = device_name(m.device);
      mj["budget_bytes"] = m.budget_bytes;
      mj["cache_row_width"] = m.row_width;
      mj["virtual_block_size"] = m.block_size * m.dcp;
      mj["num_blocks_computed"] = m.num_blocks_computed;
      mj["num_blocks"] = m.num_blocks;
      mj["pool_bytes"] = m.pool_bytes;
      if (m.resident_bytes >= 0) mj["resident_bytes"] = m.resident_bytes;
      mj["num_seqs"] = m.sequences;
      mj["tokens"] = m.tokens;
      mj["tokens_computed"] = m.tokens_computed;
      mj["tokens_verified"] = m.tokens_verified;
      mj["deviation"] = m.deviation();
      mj["elapsed_time"] = m.seconds;
      j["measured"] = mj;
    }
    list.push_back(j);
  }
  json::Value out = json::Value::object();
  out["benchmark"] = "cache";
  out["config"] = s.config_path;
  out["model"] = model;
  out["memory_bytes"] = s.memory_bytes;
  out["weights_dtype"] = "bf16";
  out["decode_comm_model"] = decode_comm_model();
  out["records"] = list;
  return out;
}

std::string cache_chart_svg(const ModelConfig& c, const CacheBenchSettings& s, const std::vector<AttentionKind>& kinds,
                            const std::vector<CacheRecord>& records) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  ChartPanel bytes, tokens;
  bytes.title = "Cache per token on one rank (all " + std::to_string(c.n_layers) + " layers)";
  bytes.y_label = "bytes per token per rank (log)";
  bytes.value_format = [](double v) { return short_number(v) + "B"; };
  tokens.title = "Tokens that fit (the TP group's context)";
  tokens.y_label = "cache capacity in tokens (log)";
  for (ChartPanel* p : {&bytes, &tokens}) {
    p->x_label = "tensor-parallel degree (GPUs)";
    for (int64_t tp : s.tp_degrees) p->x_ticks.push_back(std::to_string(tp));
  }
  for (size_t i = 0; i < s.tp_degrees.size(); ++i) {
    bool fits = weight_bytes_per_rank(c, s.tp_degrees[i]) < s.memory_bytes;
    tokens.column_notes.push_back(fits ? "" : "weights\nalone\n> " + gib(s.memory_bytes, 0) + " GiB");
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
  size_t gqa_index = 0;
  for (const auto& [k, dcp] : lines) {
    std::string color = dcp > 1 ? dcp_color(dcp) : kind_color(k, k.type == AttentionKind::Type::GQA ? gqa_index++ : 0);
    for (DType t : s.kv_dtypes) {
      std::string name = k.name() + (dcp > 1 ? " dcp" + std::to_string(dcp) : "");
      ChartSeries b{name + " " + kv_dtype_name(t), color, t != s.kv_dtypes.front(), {}};
      ChartSeries n = b;
      for (int64_t tp : s.tp_degrees) {
        const CacheRecord* found = nullptr;
        for (const CacheRecord& r : records)
          if (r.footprint.kind == k && r.footprint.dcp == dcp && r.footprint.dtype == t && r.footprint.tp == tp)
            found = &r;
        b.values.push_back(found ? found->footprint.bytes_per_token_per_rank() : nan);
        n.values.push_back(found && found->capacity.fits() && found->capacity.tokens() > 0
                               ? double(found->capacity.tokens())
                               : nan);
      }
      bytes.series.push_back(b);
      tokens.series.push_back(n);
      legend.push_back({b.label, color, b.dashed});
    }
  }
  bool any_dcp = lines.size() > kinds.size();
  std::string file = s.config_path.substr(s.config_path.find_last_of('/') + 1);
  return render_line_chart_svg(
      std::string("KV cache: MLA") + (any_dcp ? " (and MLA + DCP)" : "") + " vs MHA / GQA / MQA, " + file,
      gib(s.memory_bytes, 0) + " GiB per GPU minus its share of the bf16 weights (" +
          fixed(double(c.num_params()) / 1e9, 1) + "B params / tp), blocks of " + std::to_string(s.block_size) +
          " tokens; MLA's latent is whole on every rank" + (any_dcp ? ", dcpN: 1/N of the tokens" : ""),
      {bytes, tokens}, legend);
}

}  // namespace mlarun::bench
