// Tables, notes and JSON of `bench cache` (see cache_report.h; the chart is cache_chart.cpp).
#include "bench/cache_report.h"

#include <algorithm>
#include <cmath>

#include "bench/bench_common.h"
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
  for (CacheDtype t : s.kv_dtypes) {
    header.push_back(kv_dtype_name(t) + " B/token/layer");
    header.push_back(kv_dtype_name(t) + " B/token");
  }
  header.push_back("x MLA");
  TextTable table(header);
  const int64_t mla = cache_footprint(c, AttentionKind::mla(), CacheDtype::BF16, 1).elements_per_token_layer;
  for (const AttentionKind& k : kinds) {
    CacheFootprint f = cache_footprint(c, k, CacheDtype::BF16, 1);
    std::vector<std::string> row = {k.name(), k.is_mla() ? "latent" : std::to_string(f.kv_heads),
                                    with_commas(f.elements_per_token_layer)};
    for (CacheDtype t : s.kv_dtypes) {
      CacheFootprint ft = cache_footprint(c, k, t, 1);
      row.push_back(with_commas(ft.bytes_per_token_layer()));
      row.push_back(with_commas(ft.bytes_per_token()));
    }
    row.push_back(fixed(double(f.elements_per_token_layer) / double(mla), 2));
    table.add_row(row);
  }
  return "== Cache per token: " + s.config_path + " (" + std::to_string(c.n_layers) + " layers; MLA latent " +
         std::to_string(c.kv_lora_rank) + " + rope " + std::to_string(c.qk_rope_head_dim) + "; baselines " +
         std::to_string(c.n_heads) + " query heads of d_h = " + std::to_string(baseline_head_dim(c)) + "; " +
         cache_byte_rule() + ")\n" + table.render();
}

std::string per_rank_table(const ModelConfig& c, const CacheBenchSettings& s, const std::vector<CacheRecord>& records) {
  const std::string m = measure_label(s);
  std::vector<std::string> header = {"tp", "attention", "dcp", "dtype", "kv heads/rank", "B/token/layer", "B/token",
                                     "weights GiB", "cache GiB", "tokens"};
  for (int64_t L : s.seq_lens) header.push_back("seqs@" + std::to_string(L));
  for (std::string h : {"measured" + m, "computed" + m, std::string("dev"), std::string("note")}) header.push_back(h);
  TextTable table(header);
  int64_t last_tp = -1;
  for (const CacheRecord& r : records) {
    const CacheFootprint& f = r.footprint;
    const BudgetCapacity& cap = r.capacity;
    if (last_tp >= 0 && f.tp != last_tp) table.add_separator();
    last_tp = f.tp;
    std::string note = footprint_note(f);
    if (!cap.fits()) note = "weights exceed " + gib(s.memory_bytes, 0) + " GiB" + (note.empty() ? "" : "; " + note);
    const CacheMeasurement& me = r.measurement;
    std::vector<std::string> row = {std::to_string(f.tp), f.kind.name(), std::to_string(f.dcp),
                                    kv_dtype_name(f.dtype), kv_heads_cell(f),
                                    bytes_cell(f.bytes_per_token_layer_per_rank()),
                                    bytes_cell(f.bytes_per_token_per_rank()), gib(cap.weight_bytes),
                                    cap.fits() ? gib(cap.cache_budget_bytes) : "none",
                                    cap.fits() ? with_commas(cap.tokens()) : "-"};
    for (int64_t L : s.seq_lens) row.push_back(cap.fits() ? with_commas(cap.max_full_sequences(L)) : "-");
    for (std::string cell :
         {r.measured ? with_commas(me.tokens) : "-", r.measured ? with_commas(me.tokens_computed) : "-",
          r.measured ? (me.deviation() >= 0 ? "+" : "") + fixed(100 * me.deviation(), 2) + "%" : "-", note})
      row.push_back(cell);
    table.add_row(row);
  }
  return "== Per rank: " + gib(s.memory_bytes, 0) + " GiB minus this rank's bf16 weights (" +
         fixed(double(c.num_params()) / 1e9, 2) + "B params x 2 / tp); blocks of " + std::to_string(s.block_size) +
         " tokens; seqs@L: sequences of L tokens (a window W caches min(L, W) of them); MLA under DCP N: bytes per token of the "
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
  CacheFootprint mla = cache_footprint(c, AttentionKind::mla(), CacheDtype::BF16, 1);
  CacheFootprint mla8 = cache_footprint(c, AttentionKind::mla(), CacheDtype::FP8, 1);
  const int64_t d = baseline_head_dim(c);
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
  out += "- fp8 and int8 store 1 byte per value in tiles of " + std::to_string(kCacheQuantTile) + " values, each tile "
         "with an fp32 scale (4 B), scales counted: MLA " + std::to_string(c.kv_lora_rank) + " + 4 x " +
         std::to_string((c.kv_lora_rank + kCacheQuantTile - 1) / kCacheQuantTile) + " + 2 x " +
         std::to_string(c.qk_rope_head_dim) + " (RoPE kept in bf16) = " + with_commas(mla8.bytes_per_token_layer()) +
         " B per token per layer (" + with_commas(mla8.bytes_per_token()) + " over " + std::to_string(c.n_layers) +
         " layers); the baselines by the same 128-value tile rule, each K and V head " + std::to_string(d) +
         " + 4 x " + std::to_string((d + kCacheQuantTile - 1) / kCacheQuantTile) + " = " +
         std::to_string(cache_values_bytes(d, CacheDtype::FP8)) + " B.\n";
  for (const CacheRecord& r : records)
    if (r.footprint.kind.is_sliding() && r.footprint.tp == records.front().footprint.tp &&
        r.footprint.dtype == s.kv_dtypes.front())
      out += "- " + r.footprint.kind.name() + ": sliding-window attention over the heads of " +
             r.footprint.kind.name().substr(r.footprint.kind.name().find('/') + 1) + " with a window of " +
             with_commas(r.footprint.kind.window) + " tokens: the same bytes per cached token, but a sequence of L "
             "tokens caches min(L, W) of them (ceil(min(L, W) / block) blocks), so seqs@L equals the full-attention "
             "heads' while L <= W and grows by L / W beyond.\n";
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
    j["kv_cache_quantized"] = cache_dtype_quantized(f.dtype);
    j["sliding_window"] = f.kind.window > 0 ? json::Value(f.kind.window) : json::Value();
    j["max_model_len"] = s.seq_lens.front();
    j["max_concurrency"] = cap.max_concurrency(s.seq_lens.front());
    j["max_num_seqs"] = cap.max_full_sequences(s.seq_lens.front());
    json::Value per_len = json::Value::array();
    for (int64_t L : s.seq_lens) {
      json::Value pl = json::Value::object();
      pl["max_model_len"] = L;
      pl["cached_tokens_per_seq"] = cap.cached_tokens_per_sequence(L);
      pl["max_num_seqs"] = cap.max_full_sequences(L);
      pl["max_concurrency"] = cap.max_concurrency(L);
      pl["context_tokens"] = cap.context_tokens(L);
      per_len.push_back(pl);
    }
    j["per_max_model_len"] = per_len;
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
      mj["cache_row_bytes"] = m.row_bytes;
      mj["pool_element_dtype"] = dtype_name(m.pool_dtype);
      mj["tokens_per_seq_filled"] = m.fill_len;
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
  out["kv_cache_byte_rule"] = cache_byte_rule();
  out["decode_comm_model"] = decode_comm_model();
  out["records"] = list;
  return out;
}

}  // namespace mlarun::bench
