// How `bench cache` presents its results: the per-token table, the per-rank table with the budget and the
// measured capacity, the decode communication table (the DCP merge beside the o_proj all-reduce), the notes under
// them, the JSON records (vLLM's field names where they exist) and the SVG chart (cache bytes per token per rank,
// and tokens that fit, against the TP degree; one line per attention kind, DCP size and dtype).
//
// kv dtypes are bf16, fp8 and int8 with their scales counted (cache_dtype.h). A sliding-window family
// (--window W) is a kind of its own, "swa:W/<heads>", with per-sequence columns at each --seq-len.
//
// DCP rows are MLA only: MLA is reported at dcp 1 (no DCP, the reference) and at each listed size N > 1 that
// divides the TP degree; the baselines, whose K/V caches already split by head, only at dcp 1.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bench/cache_footprint.h"
#include "bench/cache_measurement.h"
#include "runtime/json_fwd.h"

namespace mlarun::bench {

struct CacheBenchSettings {
  std::string config_path;
  std::vector<int64_t> tp_degrees;
  std::vector<CacheDtype> kv_dtypes;
  std::vector<int64_t> dcp_sizes = {1};  // --decode-context-parallel-size
  int64_t memory_bytes = 0;  // per GPU, before weights
  std::vector<int64_t> seq_lens = {4096};  // --seq-len: sequences (and the window's payoff) at each length
  int64_t block_size = 64;
  bool measure_enabled = true;
  int64_t measure_bytes = 0;  // budget of the real allocation; 0: each record's real budget
  Device measure_device = Device::CPU;
};

// The DCP sizes MLA is reported at under `tp`: 1, then each listed size > 1 that divides tp, in order.
std::vector<int64_t> mla_dcp_sizes(const CacheBenchSettings& s, int64_t tp);
// The (tp, dcp) combinations skipped because dcp does not divide tp, as "dcp 8 at tp 1, 2, 4" ("" when none).
std::string skipped_dcp_note(const CacheBenchSettings& s);

// One (attention kind, DCP size, kv dtype, TP degree).
struct CacheRecord {
  CacheFootprint footprint;
  BudgetCapacity capacity;
  bool measured = false;
  CacheMeasurement measurement;
};

std::string per_token_table(const ModelConfig& c, const CacheBenchSettings& s, const std::vector<AttentionKind>& kinds);
std::string per_rank_table(const ModelConfig& c, const CacheBenchSettings& s, const std::vector<CacheRecord>& records);
std::string decode_comm_table(const ModelConfig& c, const CacheBenchSettings& s,
                              const std::vector<CacheRecord>& records);
std::string cache_notes(const ModelConfig& c, const CacheBenchSettings& s, const std::vector<CacheRecord>& records);
json::Value cache_records_json(const ModelConfig& c, const CacheBenchSettings& s,
                               const std::vector<CacheRecord>& records);
std::string cache_chart_svg(const ModelConfig& c, const CacheBenchSettings& s, const std::vector<AttentionKind>& kinds,
                            const std::vector<CacheRecord>& records);

}  // namespace mlarun::bench
