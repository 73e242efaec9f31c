// `mlarun bench prefill`: where MLA's absorbed path beats the naive one for a prefill chunk over a cached prefix
// (docs/model.md §2.6). A config's model cut to K layers, random weights; B sequences each hold P cached tokens
// (random latent rows written straight into the pool) and run one step of C new tokens, once with every sequence
// forced onto the naive path (up-project the whole context, attend per head) and once onto the absorbed path
// (attend over the latents), for every (P, C) asked. Reported per path: the median step time and the median time
// of its attention (the MLA backend with the cache write: runtime/step_profiler.h), the attention's
// multiply-adds by the cost model of runtime/mla_path_rule.h and the rate they ran at; then per prefix the chunk
// lengths where the absorbed path measured faster, next to where the cost model and --mla-absorbed-max-tokens
// put the crossing (what Auto does), and how far the two paths' logits differ (the same function: rounding only).
// CPU: f32 reference ops, one thread; --device cuda: bf16, GPU time.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>

#include "bench/baseline_attention.h"
#include "bench/bench_common.h"
#include "bench/random_weights.h"
#include "bench/text_table.h"
#include "launch/cli_common.h"
#include "launch/commands.h"
#include "kernels/ops.h"
#include "launch/output_path.h"
#include "model/deepseek_model.h"
#include "runtime/cache_pool.h"
#include "runtime/device.h"
#include "runtime/error.h"
#include "runtime/json.h"
#include "runtime/mla_path_rule.h"
#include "runtime/runtime_options.h"
#include "runtime/step_profiler.h"

namespace mlarun::cli {

using namespace mlarun::bench;

namespace {

struct PrefillSettings : BenchModelSettings {
  int64_t batch = 1;
  int64_t absorbed_max_tokens = -1;  // --mla-absorbed-max-tokens, as the runtime takes it
  std::vector<int64_t> prefixes, chunks;
};

struct PathTiming {
  std::vector<double> step_s, attention_ms;
  Tensor logits;  // the last step's, f32 on the host
  double step_median() const { return median(step_s); }
  double attention_median() const { return median(attention_ms); }
};

struct PrefillResult {
  int64_t prefix = 0, chunk = 0;
  PathTiming naive, absorbed;
  double naive_macs = 0, absorbed_macs = 0;  // attention multiply-adds of the step, all layers and sequences
  bool model_prefers_absorbed = false;       // the cost model alone
  bool auto_absorbed = false;                // what Auto does with the device's --mla-absorbed-max-tokens
  double logit_diff = 0;                     // the largest |naive - absorbed| over the step's logits
  bool absorbed_faster() const { return absorbed.attention_median() < naive.attention_median(); }
};

// The cost model's multiply-adds (runtime/mla_path_rule.h) of one step: every head of every layer and sequence.
double attention_macs(const ModelConfig& c, bool absorbed, int64_t n, int64_t p, int64_t seqs) {
  return mla_attention_macs_per_head(c, absorbed, n, p) * double(c.n_heads) * double(c.n_layers) * double(seqs);
}

class PrefillBench {
 public:
  PrefillBench(const ModelConfig& c, const PrefillSettings& s)
      : c_(c),
        s_(s),
        placement_(Placement::for_device(s.device)),
        weights_(c, AttentionKind::mla(), s.seed),
        model_(c, weights_, comm_, placement_, {}, attention_factory(AttentionKind::mla())) {
    const int64_t longest = *std::max_element(s.prefixes.begin(), s.prefixes.end()) +
                            *std::max_element(s.chunks.begin(), s.chunks.end());
    blocks_per_seq_ = (longest + s.block_size - 1) / s.block_size;
    pool_ = CachePool::allocate(c.n_layers, s.batch * blocks_per_seq_, s.block_size, model_.cache_width(),
                                placement_.dtype, placement_.device);
    fill_prefixes(*std::max_element(s.prefixes.begin(), s.prefixes.end()));
  }

  PathTiming time(int64_t prefix, int64_t chunk, MlaPath path) {
    ForwardBatch batch;
    batch.mla_path = path;
    for (int64_t b = 0; b < s_.batch; ++b) {
      std::vector<int32_t> tokens(static_cast<size_t>(chunk));
      for (int64_t i = 0; i < chunk; ++i)
        tokens[size_t(i)] = int32_t((b * 7919 + (prefix + i) * 104729) % c_.vocab_size);
      batch.logit_rows.push_back(batch.add_sequence(tokens, prefix, table(b), s_.block_size) + chunk - 1);
    }
    PathTiming t;
    StepProfiler profiler(s_.device);
    for (int64_t i = 0; i < s_.warmup + s_.iters; ++i) {
      TimedStep step = run_timed_step(model_, batch, pool_.layers, &profiler,
                                      "bench prefill: prefix " + std::to_string(prefix) + ", chunk " +
                                          std::to_string(chunk));
      t.logits = std::move(step.logits);
      if (i < s_.warmup) continue;
      t.step_s.push_back(step.seconds);
      t.attention_ms.push_back(profiler.split()[ProfileCategory::Attention]);
    }
    return t;
  }

 private:
  std::vector<int32_t> table(int64_t b) const {
    std::vector<int32_t> t(static_cast<size_t>(blocks_per_seq_));
    for (int64_t i = 0; i < blocks_per_seq_; ++i) t[size_t(i)] = int32_t(b * blocks_per_seq_ + i);
    return t;
  }

  // Every sequence's positions [0, len) of every layer as random latent rows, as if prefilled. A step writes its
  // own rows after its prefix; the prefixes of later steps read those as they are (model-made latents).
  void fill_prefixes(int64_t len) {
    if (len == 0) return;
    const KvCacheFormat format = kv_cache_format(placement_.dtype, placement_.dtype, c_.kv_lora_rank,
                                                 c_.qk_rope_head_dim);  // the pool holds the model's own dtype
    for (int64_t b = 0; b < s_.batch; ++b) {
      std::vector<int64_t> slots(static_cast<size_t>(len));
      for (int64_t p = 0; p < len; ++p) slots[size_t(p)] = cache_slot(table(b), p, s_.block_size);
      write_random_cache_rows(pool_.layers, format, slots, s_.seed, b, s_.batch, placement_);
    }
  }

  ModelConfig c_;
  PrefillSettings s_;
  Placement placement_;
  SingleCommunicator comm_;
  RandomWeights weights_;
  DeepseekModel model_;
  int64_t blocks_per_seq_ = 0;
  CachePool pool_;
};

// Per prefix: the longest chunk up to which every measured chunk ran faster absorbed (0: not even the shortest).
int64_t measured_crossing(const std::vector<PrefillResult>& results, int64_t prefix) {
  int64_t crossing = 0;
  for (const PrefillResult& r : results) {
    if (r.prefix != prefix) continue;
    if (!r.absorbed_faster()) break;
    crossing = r.chunk;
  }
  return crossing;
}

std::string path_name(bool absorbed) { return absorbed ? "absorbed" : "naive"; }

std::string scientific(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1e", v);
  return text;
}

std::string results_table(const std::vector<PrefillResult>& results) {
  TextTable t({"prefix", "chunk", "naive attn ms", "absorbed attn ms", "absorbed / naive", "naive step ms",
               "absorbed step ms", "naive GMAC/s", "absorbed GMAC/s", "faster", "cost model", "auto",
               "max |logit diff|"});
  for (const PrefillResult& r : results) {
    const double na = r.naive.attention_median(), ab = r.absorbed.attention_median();
    t.add_row({with_commas(r.prefix), with_commas(r.chunk), fixed(na, 3), fixed(ab, 3), fixed(ab / na, 2),
               fixed(1e3 * r.naive.step_median(), 3), fixed(1e3 * r.absorbed.step_median(), 3),
               fixed(r.naive_macs / na * 1e-6, 1), fixed(r.absorbed_macs / ab * 1e-6, 1),
               path_name(r.absorbed_faster()), path_name(r.model_prefers_absorbed), path_name(r.auto_absorbed),
               scientific(r.logit_diff)});
  }
  return t.render();
}

std::string crossings_table(const std::vector<PrefillResult>& results, const PrefillSettings& s, const ModelConfig& c,
                            int64_t max_tokens) {
  TextTable t({"prefix", "measured: absorbed faster up to", "cost model crossing",
               "auto absorbs up to (--mla-absorbed-max-tokens " + std::to_string(max_tokens) + ")"});
  for (int64_t p : s.prefixes) {
    const int64_t model = mla_absorbed_crossing(c, p);
    t.add_row({with_commas(p), with_commas(measured_crossing(results, p)), with_commas(model),
               with_commas(std::max<int64_t>(1, std::min(model, max_tokens)))});
  }
  return t.render();
}

json::Value path_json(const PathTiming& t, double macs) {
  json::Value j = json::Value::object();
  json::Value steps = json::Value::array(), attn = json::Value::array();
  for (double x : t.step_s) steps.push_back(x);
  for (double x : t.attention_ms) attn.push_back(x);
  j["step_median_s"] = t.step_median();
  j["attention_median_ms"] = t.attention_median();
  j["attention_macs"] = macs;
  j["attention_gmacs_per_s"] = macs / t.attention_median() * 1e-6;
  j["step_latencies_s"] = steps;
  j["attention_ms"] = attn;
  return j;
}

json::Value results_json(const std::vector<PrefillResult>& results, const PrefillSettings& s, const ModelConfig& c,
                         const ModelConfig& full, int64_t max_tokens) {
  json::Value records = json::Value::array(), crossings = json::Value::array();
  for (const PrefillResult& r : results) {
    json::Value j = json::Value::object();
    j["prefix_len"] = r.prefix;
    j["chunk_len"] = r.chunk;
    j["naive"] = path_json(r.naive, r.naive_macs);
    j["absorbed"] = path_json(r.absorbed, r.absorbed_macs);
    j["faster"] = path_name(r.absorbed_faster());
    j["cost_model"] = path_name(r.model_prefers_absorbed);
    j["auto"] = path_name(r.auto_absorbed);
    j["max_abs_logit_diff"] = r.logit_diff;
    records.push_back(j);
  }
  for (int64_t p : s.prefixes) {
    json::Value j = json::Value::object();
    j["prefix_len"] = p;
    j["measured_absorbed_faster_up_to"] = measured_crossing(results, p);
    j["cost_model_crossing"] = mla_absorbed_crossing(c, p);
    crossings.push_back(j);
  }
  json::Value out = bench_model_json("prefill_mla_paths", s, full);
  out["num_heads"] = c.n_heads;
  out["batch_size"] = s.batch;
  out["mla_absorbed_max_tokens"] = max_tokens;
  out["records"] = records;
  out["crossings"] = crossings;
  return out;
}

}  // namespace

Command add_bench_prefill_command(CLI::App& bench) {
  auto* cmd = bench.add_subcommand(
      "prefill", "Time a prefill chunk over a cached prefix on MLA's naive and absorbed paths: where each wins");
  auto s = std::make_shared<PrefillSettings>();
  auto prefixes = std::make_shared<std::string>("0,512,2048");
  auto chunks = std::make_shared<std::string>("2,4,8,16,32,64,128,256");
  auto json_out = std::make_shared<std::string>();
  add_bench_model_options(*cmd, *s);
  cmd->add_option("--prefix-lens", *prefixes, "Cached tokens per sequence before the chunk, comma-separated");
  cmd->add_option("--chunk-lens", *chunks, "New tokens per sequence in the step, comma-separated");
  cmd->add_option("--batch,--batch-size", s->batch, "Sequences in the step, each with the same prefix and chunk");
  cmd->add_option("--mla-absorbed-max-tokens", s->absorbed_max_tokens,
                  "The runtime option whose rule the auto column shows; -1: the device's default");
  cmd->add_option("--json", *json_out, "Write the results as JSON here");
  return {cmd, [=]() {
            check_output_path("--json", *json_out);
            const auto [full, c] = load_bench_model(*s);
            if (s->batch < 1) fail("option --batch: value ", s->batch, ": must be at least 1");
            s->prefixes = parse_int_list(*prefixes, "--prefix-lens", 0);
            s->chunks = parse_int_list(*chunks, "--chunk-lens", 1);
            for (auto [list, option] :
                 {std::pair{&s->prefixes, "--prefix-lens"}, std::pair{&s->chunks, "--chunk-lens"}}) {
              std::sort(list->begin(), list->end());
              const auto repeated = std::adjacent_find(list->begin(), list->end());
              if (repeated != list->end()) fail("option ", option, ": ", *repeated, " is given twice");
            }
            RuntimeOptions runtime;  // the options a real run would take, checked by the same rules
            runtime.device = s->device;
            runtime.block_size = s->block_size;
            runtime.max_num_seqs = s->batch;
            runtime.max_model_len = s->prefixes.back() + s->chunks.back();
            runtime.mla_absorbed_max_tokens = s->absorbed_max_tokens;
            runtime.validate_for(full);
            const int64_t max_tokens = runtime.mla_absorbed_max_tokens_on_device();
            const MlaPathRule rule = mla_path_rule(c, max_tokens);
            std::printf("== bench prefill: %s cut to %lld of %lld layers, random weights, %lld heads; batch %lld, "
                        "block size %lld; MLA naive vs absorbed path per (prefix, chunk)\n",
                        s->config_path.c_str(), (long long)c.n_layers, (long long)full.n_layers,
                        (long long)c.n_heads, (long long)s->batch, (long long)s->block_size);
            const std::string device =
                s->device == Device::CUDA ? "cuda (" + gpu_name() + "), bf16"
                                          : "this machine's CPU (" + cpu_name() + "), f32, one thread";
            std::printf("device: %s; median of %lld steps after %lld warm-up; attn = the MLA backend with the cache "
                        "write (GPU time on cuda); GMAC/s = the cost model's attention multiply-adds (runtime/"
                        "mla_path_rule.h) over attn\n",
                        device.c_str(), (long long)s->iters, (long long)s->warmup);
            std::fflush(stdout);
            std::fprintf(stderr, "mlarun: building the model and filling the cache...\n");
            PrefillBench bench_model(c, *s);
            std::vector<PrefillResult> results;
            for (int64_t p : s->prefixes)
              for (int64_t n : s->chunks) {
                std::fprintf(stderr, "mlarun: prefix %lld, chunk %lld\n", (long long)p, (long long)n);
                PrefillResult r;
                r.prefix = p;
                r.chunk = n;
                r.naive = bench_model.time(p, n, MlaPath::Naive);
                r.absorbed = bench_model.time(p, n, MlaPath::Absorbed);
                r.naive_macs = attention_macs(c, false, n, p, s->batch);
                r.absorbed_macs = attention_macs(c, true, n, p, s->batch);
                r.model_prefers_absorbed = rule.absorbed_is_cheaper(n, p);
                r.auto_absorbed = rule.absorbed(n, p);
                r.logit_diff = max_abs_logit_diff(r.naive.logits, r.absorbed.logits);
                results.push_back(r);
              }
            std::cout << results_table(results) << "\n" << crossings_table(results, *s, c, max_tokens);
            if (!json_out->empty()) {
              write_text_file(*json_out, json::dump(results_json(results, *s, c, full, max_tokens), 2) + "\n",
                              "--json");
              std::cout << "JSON: " << *json_out << "\n";
            }
            return 0;
          }};
}

}  // namespace mlarun::cli
