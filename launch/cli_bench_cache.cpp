// `mlarun bench cache`: what MLA's latent cache buys against MHA, GQA, MQA and sliding-window attention (--window)
// for a real config. Per token (per layer and for the model) in each --kv-cache-dtype (bf16, fp8, int8; scales
// counted); per rank under each TP degree, and for MLA under each decode context
// parallel size (--decode-context-parallel-size, the latent split by token over N ranks); tokens and sequences
// that fit in a memory budget; the same pools allocated and filled for real through the BlockManager, whose
// measured capacity must match the computed one; and the DCP merge traffic beside the o_proj all-reduce. Prints
// tables, and writes JSON (--json) and an SVG chart (--chart).
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <map>
#include <tuple>
#include <unistd.h>

#include "bench/bench_common.h"
#include "bench/cache_report.h"
#include "bench/text_table.h"
#include "launch/commands.h"
#include "launch/output_path.h"
#include "runtime/device.h"
#include "runtime/error.h"
#include "runtime/json.h"
#include "runtime/runtime_options.h"

namespace mlarun::cli {

using namespace mlarun::bench;  // the report writers and table helpers

namespace {

constexpr double kGiB = double(int64_t(1) << 30);

std::vector<AttentionKind> kinds_to_compare(const ModelConfig& c, const std::string& gqa_groups,
                                           const std::string& windows, const std::string& window_heads) {
  std::vector<AttentionKind> kinds = {AttentionKind::mla(), AttentionKind::mha()};
  for (int64_t g : parse_int_list(gqa_groups, "--gqa-groups")) {
    AttentionKind k = parse_attention_kind("gqa:" + std::to_string(g), c.n_heads, "--gqa-groups");
    if (std::find(kinds.begin(), kinds.end(), k) != kinds.end())
      fail("option --gqa-groups: value '", gqa_groups, "': ", g, " is listed twice");
    kinds.push_back(k);
  }
  kinds.push_back(AttentionKind::mqa());
  if (windows.empty()) return kinds;
  // Sliding window over the heads of --window-heads (default: the first GQA group count, as Mistral-style models).
  AttentionKind heads = window_heads.empty() ? kinds[2]
                                             : parse_attention_kind(window_heads, c.n_heads, "--window-heads");
  if (heads.is_mla())
    fail("option --window-heads: value '", window_heads, "': a sliding window is modelled over mha, gqa:G or mqa "
         "heads, not MLA's latent");
  for (int64_t w : parse_int_list(windows, "--window")) {
    AttentionKind k = AttentionKind::sliding(heads, w);
    if (std::find(kinds.begin(), kinds.end(), k) != kinds.end())
      fail("option --window: value '", windows, "': ", w, " is listed twice");
    kinds.push_back(k);
  }
  return kinds;
}

std::vector<CacheRecord> build_records(const ModelConfig& c, const CacheBenchSettings& s,
                                       const std::vector<AttentionKind>& kinds) {
  std::vector<CacheRecord> records;
  // Same pool geometry and DCP size, same result.
  // Keyed by the row's bytes and pool dtype (fp8 and int8 rows are the same size, in their own element types), dcp,
  // budget and tokens filled per sequence.
  std::map<std::tuple<int64_t, DType, int64_t, int64_t, int64_t>, CacheMeasurement> measured;
  for (int64_t tp : s.tp_degrees)
    for (const AttentionKind& kind : kinds)
      for (int64_t dcp : kind.is_mla() ? mla_dcp_sizes(s, tp) : std::vector<int64_t>{1})  // DCP: MLA only
        for (CacheDtype dtype : s.kv_dtypes) {
          CacheRecord r;
          try {
            r.footprint = cache_footprint(c, kind, dtype, tp, dcp);
          } catch (const Error& e) {
            fail("option --tp: value ", tp, ": ", e.what());
          }
          r.capacity = capacity_in_budget(r.footprint, s.memory_bytes, weight_bytes_per_rank(c, tp), s.block_size);
          int64_t budget = s.measure_bytes > 0 ? s.measure_bytes : r.capacity.cache_budget_bytes;
          if (s.measure_enabled && budget > 0) {
            const int64_t row_bytes = kv_row_bytes(c, kind, cache_row_width(c, kind, tp), dtype);
            auto key = std::make_tuple(row_bytes, cache_pool_dtype(dtype), dcp, budget,
                                       kind.cached_tokens(s.seq_lens.front()));
            auto it = measured.find(key);
            if (it == measured.end())
              it = measured.emplace(key, measure_cache_capacity(c, r.footprint, budget, s.block_size,
                                                                s.seq_lens.front(), s.measure_device)).first;
            r.measurement = it->second;
            r.measured = true;
          }
          records.push_back(r);
        }
  return records;
}

}  // namespace

Command add_bench_cache_command(CLI::App& bench) {
  auto* cmd = bench.add_subcommand("cache", "Cache bytes and capacity of MLA against MHA, GQA and MQA for a config");
  auto config_path = std::make_shared<std::string>();
  auto tp = std::make_shared<std::string>("1,2,4,8");
  auto dcp = std::make_shared<std::string>("1");
  auto kv_dtypes = std::make_shared<std::string>("bf16,fp8,int8");
  auto windows = std::make_shared<std::string>();
  auto window_heads = std::make_shared<std::string>();
  auto gqa_groups = std::make_shared<std::string>("8");
  auto json_out = std::make_shared<std::string>();
  auto chart_out = std::make_shared<std::string>();
  auto memory_gib = std::make_shared<double>(80.0);
  auto measure_gib = std::make_shared<double>(-1.0);
  auto seq_len = std::make_shared<std::string>("4096");
  auto block_size = std::make_shared<int64_t>(64);
  cmd->add_option("--config", *config_path, "DeepSeek (JSON/YAML) or Hugging Face config")->required();
  cmd->add_option("--tp", *tp, "Tensor-parallel degrees, comma-separated");
  cmd->add_option("--decode-context-parallel-size,--dcp", *dcp,
                  "Decode context parallel sizes N for MLA (its latent split by token over N ranks), comma-separated; "
                  "each divides some --tp value (MLA is also shown at 1; pairs that do not divide are skipped)");
  cmd->add_option("--memory-gib", *memory_gib, "Memory per GPU in GiB, before this rank's bf16 weights");
  cmd->add_option("--seq-len,--max-model-len", *seq_len,
                  "Tokens per sequence for the sequences that fit, comma-separated (e.g. 4096,32768)");
  cmd->add_option("--kv-cache-dtype,--kv-dtype", *kv_dtypes,
                  "Cache dtypes, comma-separated: bf16, fp8, int8 (fp8/int8: 1 B per value + an fp32 scale per 128)");
  cmd->add_option("--window", *windows,
                  "Sliding-window sizes W in tokens, comma-separated: adds swa:W rows (min(L, W) tokens cached per "
                  "sequence)");
  cmd->add_option("--window-heads", *window_heads,
                  "The heads the sliding window runs over: mha, gqa:G or mqa (default gqa:<first --gqa-groups>)");
  cmd->add_option("--gqa-groups", *gqa_groups, "GQA key/value group counts to compare, comma-separated");
  cmd->add_option("--block-size", *block_size, "Tokens per cache block of one rank, 1 to 256 (DCP N: N x per group)");
  auto* measure_option = cmd->add_option("--measure-gib", *measure_gib,
                  "Budget of the real allocation in GiB (default: 1 on the host, the real budget on a GPU; 0: skip)");
  cmd->add_option("--json", *json_out, "Write the records as JSON here");
  cmd->add_option("--chart", *chart_out, "Write a chart here (.svg; .png through rsvg-convert when installed)");
  return {cmd, [=]() {
            // Before any work: the output files writable (a .png chart writes its SVG beside it first).
            check_output_path("--json", *json_out);
            check_output_path("--chart", *chart_out);
            if (chart_out->size() > 4 && chart_out->compare(chart_out->size() - 4, 4, ".png") == 0)
              check_output_path("--chart", chart_out->substr(0, chart_out->size() - 4) + ".svg");
            ModelConfig c = load_model_config(*config_path);
            CacheBenchSettings s;
            s.config_path = *config_path;
            s.tp_degrees = parse_int_list(*tp, "--tp");
            for (int64_t t : s.tp_degrees) {
              try {
                c.validate_for_tp(t);
              } catch (const Error& e) {
                fail("option --tp: value ", t, ": ", e.what());
              }
            }
            s.dcp_sizes = parse_int_list(*dcp, "--decode-context-parallel-size");
            for (int64_t n : s.dcp_sizes)
              if (std::none_of(s.tp_degrees.begin(), s.tp_degrees.end(), [n](int64_t t) { return t % n == 0; }))
                fail("option --decode-context-parallel-size: value ", n, ": divides none of the --tp values (", *tp,
                     "); the ranks of a DCP group are ranks of one TP group");
            s.kv_dtypes = parse_kv_dtypes(*kv_dtypes, "--kv-cache-dtype");
            if (!(*memory_gib > 0)) fail("option --memory-gib: value ", *memory_gib, ": must be positive");
            s.seq_lens = parse_int_list(*seq_len, "--seq-len");
            RuntimeOptions runtime;  // the block size a real run would take, checked by the same rules
            runtime.block_size = *block_size;
            runtime.validate();
            s.memory_bytes = int64_t(*memory_gib * kGiB);
            s.block_size = *block_size;
            s.measure_device = gpu_available() ? Device::CUDA : Device::CPU;
            // Without a GPU the 80 GiB budget cannot be allocated here: measure at a scaled budget instead.
            double measure = *measure_gib >= 0 ? *measure_gib : (s.measure_device == Device::CPU ? 1.0 : 0.0);
            if (measure_option->count() > 0 && *measure_gib < 0)
              fail("option --measure-gib: value ", *measure_gib, ": must be 0 (skip) or positive");
            const double host_bytes = double(sysconf(_SC_PHYS_PAGES)) * double(sysconf(_SC_PAGESIZE));
            if (s.measure_device == Device::CPU && host_bytes > 0 && measure * kGiB > 0.5 * host_bytes)
              fail("option --measure-gib: value ", measure, ": more than half of this machine's ",
                   fixed(host_bytes / kGiB, 1), " GiB of memory");
            s.measure_enabled = *measure_gib != 0;
            s.measure_bytes = int64_t(measure * kGiB);  // 0 on a GPU: each record's real budget
            std::vector<AttentionKind> kinds = kinds_to_compare(c, *gqa_groups, *windows, *window_heads);
            if (s.measure_enabled)
              std::fprintf(stderr, "mlarun: allocating and filling the cache pools for real (%s, %s)...\n",
                           s.measure_device == Device::CPU ? "host memory" : "GPU memory",
                           s.measure_bytes > 0 ? (fixed(measure, 2) + " GiB per pool set").c_str()
                                               : "the real budget per rank");
            std::vector<CacheRecord> records = build_records(c, s, kinds);
            std::cout << per_token_table(c, s, kinds) << "\n" << per_rank_table(c, s, records) << "\n"
                      << decode_comm_table(c, s, records) << "\n" << cache_notes(c, s, records);
            if (!json_out->empty()) {
              write_text_file(*json_out, json::dump(cache_records_json(c, s, records), 2) + "\n", "--json");
              std::cout << "JSON:  " << *json_out << "\n";
            }
            if (!chart_out->empty())
              std::cout << "chart: " << write_chart(*chart_out, cache_chart_svg(c, s, kinds, records), "--chart") << "\n";
            return 0;
          }};
}

}  // namespace mlarun::cli
