// `mlarun bench decode`: the time of one decode step of a config's model cut to K layers, with random weights,
// for MLA and the MHA/GQA/MQA baselines, in each --kv-cache-dtype (auto, bf16, fp8, int8: the runtime's own pools,
// written quantized and read back dequantized). Caches are pre-filled with random rows written straight into the
// pools through the sequences' block tables (no prefill through the model), then B sequences decode one token
// each: warm-up, then the median of N steps. Runs on the CPU (the f32 reference ops, one thread) or, with --device
// cuda, on the GPU with bf16 weights (random weights and cache rows made on the GPU, the host's values bit for bit:
// bench/random_weights.h; steps timed to the end of their GPU work); reports tokens/s, the cache bytes per token
// per layer as allocated, the tokens that fit in --memory-gib beside the whole model's bf16 weights, and the cache
// bytes each step reads.
// Each timed step is also split by where its time goes (runtime/step_profiler.h: attention, MoE, dense GEMMs,
// norms/RoPE/other, communication), marked in the model, the baselines and the communicators.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <unistd.h>

#include "bench/baseline_attention.h"
#include "bench/bench_common.h"
#include "bench/cache_footprint.h"
#include "bench/decode_floor.h"
#include "bench/random_weights.h"
#include "bench/text_table.h"
#include "engine/decode_graphs.h"
#include "engine/block_manager.h"
#include "kernels/kv_quant.h"
#include "launch/cli_common.h"
#include "launch/commands.h"
#include "launch/output_path.h"
#include "model/deepseek_model.h"
#include "runtime/cache_pool.h"
#include "runtime/device.h"
#include "runtime/error.h"
#include "runtime/json.h"
#include "runtime/runtime_options.h"
#include "runtime/step_profiler.h"

namespace mlarun::cli {

using namespace mlarun::bench;  // the report writers and table helpers

namespace {

struct DecodeSettings : BenchModelSettings {
  DecodeSettings() { layers = 2, iters = 5; }
  int64_t batch = 8, seq_len = 1024;
  double memory_gib = 80;  // the device the capacity column speaks of (bench cache's --memory-gib)
  bool time_split = true;  // --no-time-split: the steps run without the profiler's markers
  int64_t moe_capacity_max_tokens = -1;  // --moe-capacity-max-tokens, as the runtime takes it (-1: the device's)
  bool graphs = true;                    // !--enforce-eager: on CUDA, MLA rows also time the step as a CUDA graph
  double copy_gbps = 0;                  // CUDA: the device's measured copy bandwidth, the floor's denominator
  int64_t moe_capacity_resolved() const {
    return RuntimeOptions::moe_capacity_max_tokens_for(device, moe_capacity_max_tokens);
  }
  // The layout the step's MoE layers run in (the model's rule, DeepseekModel::moe_layout, for --batch tokens).
  const char* moe_layout_name() const { return batch <= moe_capacity_resolved() ? "capacity" : "compact"; }
};

struct DecodeResult {
  AttentionKind kind;
  KvCacheDtype kv = KvCacheDtype::Auto;
  DType pool_dtype = DType::F32;  // the pool's elements as allocated (F8_E4M3 / I8: bytes of quantized rows)
  int64_t kv_heads = 0;
  int64_t cache_width = 0;        // values a row holds (read back dequantized when quantized)
  int64_t row_bytes = 0;          // bytes per token per layer, measured on the allocated pool
  int64_t weight_values = 0;
  int64_t cache_rows_read = 0;    // per step, all layers and sequences
  int64_t element_bytes = 4;      // of the weights and activations as run: 4 (CPU f32) or 2 (GPU bf16)
  BudgetCapacity capacity;        // the whole model's cache at row_bytes in --memory-gib
  std::vector<double> latencies;  // seconds, timed steps only
  TimeSplit split_sum;            // summed over the timed steps (empty with --no-time-split)
  // The same step replayed from a CUDA graph (engine/decode_graphs.h), timed after the eager ones; or why not.
  std::vector<double> graph_latencies;
  std::string graph_absent;
  double graph_logit_diff = 0;    // max |logit| difference between a replayed step and an eager one
  DecodeStepBytes step_bytes;     // what the step cannot avoid reading (bench/decode_floor.h)
  // The floor: step_bytes at the measured copy bandwidth (CUDA only; 0 on the CPU, which is compute-bound).
  double floor_ms(const DecodeSettings& s) const {
    return s.copy_gbps > 0 ? step_bytes.total() / s.copy_gbps / 1e6 : 0;
  }
  double median() const;
  TimeSplit mean_split() const;
};

double DecodeResult::median() const { return bench::median(latencies); }

TimeSplit DecodeResult::mean_split() const {
  TimeSplit mean = split_sum;
  for (double& ms : mean.ms) ms /= double(latencies.size());
  return mean;
}

// The GPU must hold the bf16 weights and cache with some room for activations.
void check_fits_in_gpu_memory(const ModelConfig& c, const AttentionKind& kind, const DecodeSettings& s,
                              int64_t cache_bytes) {
  const double need = double(RandomWeights(c, kind).total_values()) * 2 + double(cache_bytes);
  const double have = double(device_memory_info().free_bytes);
  if (need > 0.9 * have)
    fail("option --layers: value ", s.layers, ": ", s.config_path, " cut to ", s.layers, " layers (", kind.name(),
         ") needs ", fixed(need / double(int64_t(1) << 30), 1), " GiB of bf16 weights and cache at batch ", s.batch,
         " x ", s.seq_len, " tokens; the GPU has ", fixed(have / double(int64_t(1) << 30), 1),
         " GiB free; use fewer layers, a smaller batch or shorter sequences");
}

void check_fits_in_host_memory(const ModelConfig& c, const AttentionKind& kind, const DecodeSettings& s) {
  const double need = double(RandomWeights(c, kind).total_values()) * 4;
  const double have = double(sysconf(_SC_PHYS_PAGES)) * double(sysconf(_SC_PAGESIZE));
  if (have > 0 && need > 0.7 * have)
    fail("option --layers: value ", s.layers, ": ", s.config_path, " cut to ", s.layers, " layers needs ",
         fixed(need / double(int64_t(1) << 30), 1), " GiB of f32 weights (", kind.name(), "), this machine has ",
         fixed(have / double(int64_t(1) << 30), 1), " GiB; use fewer layers or a smaller config (configs/config_small.json)");
}

// The capacity of `full`'s cache (all its layers) at the row bytes measured on the allocated pool, in --memory-gib
// beside its bf16 weights: bench cache's arithmetic (capacity_in_budget) on this allocation's rows.
BudgetCapacity capacity_of_rows(const ModelConfig& full, const AttentionKind& kind, int64_t row_bytes,
                                const DecodeSettings& s) {
  CacheFootprint rows;
  rows.kind = kind;
  rows.n_layers = full.n_layers;
  rows.row_bytes_per_rank = rows.token_layer_bytes = row_bytes;
  return capacity_in_budget(rows, int64_t(s.memory_gib * double(int64_t(1) << 30)), weight_bytes_per_rank(full, 1),
                            s.block_size);
}

// The step replayed from a CUDA graph (the runtime's decode path on a GPU): captured on its first run, checked
// against the eager step's logits, then warm-up and timed replays like the eager steps (no time split: a graph
// holds no region markers). MLA only: a baseline's shapes may follow the context lengths, which a graph freezes.
void time_decode_graph(const DeepseekModel& model, const Communicator& comm, const ForwardBatch& batch,
                       std::vector<Tensor>& cache, int64_t num_blocks, const AttentionKind& kind,
                       const DecodeSettings& s, const Tensor& eager_logits, DecodeResult& r) {
  if (s.device != Device::CUDA || !s.graphs || !kind.is_mla()) {
    r.graph_absent = s.device != Device::CUDA ? "not on the GPU" : !s.graphs ? "--enforce-eager" : "a baseline";
    return;
  }
  const int64_t bs = s.block_size;
  DecodeGraphs graphs(model, cache, comm, {s.batch, bs, num_blocks, (s.seq_len + 1 + bs - 1) / bs});
  HostStaging staging;
  const Tensor first = graphs.run(batch, staging);
  if (!first.defined()) {
    r.graph_absent = graphs.unfit(batch);
    return;
  }
  r.graph_logit_diff = max_abs_logit_diff(ops::to_host_f32(first), eager_logits);
  for (int64_t i = 0; i < s.warmup + s.iters; ++i) {
    const TimedStep step = run_timed_step([&] { return graphs.run(batch, staging); }, nullptr,
                                          "bench decode: " + kind.name() + ", graph step " + std::to_string(i));
    if (i >= s.warmup) r.graph_latencies.push_back(step.seconds);
  }
}

DecodeResult run_one(const ModelConfig& c, const ModelConfig& full, const AttentionKind& kind, KvCacheDtype kv,
                     const DecodeSettings& s) {
  const Placement placement = Placement::for_device(s.device);
  const int64_t bs = s.block_size, L = s.seq_len;
  const int64_t num_blocks = s.batch * ((L + 1 + bs - 1) / bs);
  SingleCommunicator comm;
  RandomWeights weights(c, kind, s.seed);
  // The pool as a runner would size it: the layer's row shape in this dtype (runtime_options.h, kv_quant.h).
  const KvCacheFormat shape = attention_cache_format(c, kind);
  const KvCacheStorage storage = kv_cache_storage(kv, placement.dtype, shape.latent, shape.rope, shape.head);
  const KvCacheFormat format = kv_cache_format(storage.dtype, placement.dtype, shape.latent, shape.rope, shape.head);
  if (s.device == Device::CUDA)
    check_fits_in_gpu_memory(c, kind, s, c.n_layers * num_blocks * bs * storage.row_bytes());
  else
    check_fits_in_host_memory(c, kind, s);
  DeepseekModel model(c, weights, comm, placement, {}, attention_factory(kind));
  model.set_moe_capacity_max_tokens(s.moe_capacity_resolved());
  MLARUN_CHECK(model.cache_format().latent == shape.latent && model.cache_format().head == shape.head,
               "bench decode: ", kind.name(), "'s layers cache rows of another shape than sized");
  DecodeResult r;
  r.kind = kind;
  r.kv = kv;
  r.pool_dtype = storage.dtype;
  r.kv_heads = kind.kv_heads(c);
  r.cache_width = format.width();
  r.weight_values = weights.total_values();
  r.element_bytes = int64_t(dtype_size(placement.dtype));

  CachePool pool = CachePool::allocate(c.n_layers, num_blocks, bs, storage.width, storage.dtype, placement.device);
  r.row_bytes = pool.bytes() / (c.n_layers * num_blocks * bs);
  r.capacity = capacity_of_rows(full, kind, r.row_bytes, s);
  BlockManager blocks(num_blocks, bs, /*enable_prefix_caching=*/false);
  ForwardBatch batch;
  for (int64_t b = 0; b < s.batch; ++b) {
    std::vector<int32_t> prompt(static_cast<size_t>(L));
    for (int64_t i = 0; i < L; ++i) prompt[size_t(i)] = int32_t((b * 7919 + i * 104729) % c.vocab_size);
    Sequence seq(b, prompt);
    blocks.allocate(seq);
    // The cache as if the prompt had been prefilled: random rows at positions [0, L) of every layer.
    std::vector<int64_t> slots(static_cast<size_t>(L));
    for (int64_t p = 0; p < L; ++p) slots[size_t(p)] = seq.slot(p, bs);
    write_random_cache_rows(pool.layers, format, slots, s.seed, b, s.batch, placement);
    seq.append_token(int32_t((b * 31 + 1) % c.vocab_size));
    blocks.may_append(seq);
    batch.logit_rows.push_back(batch.add_sequence({seq.last_token()}, L, seq.block_table, bs));
  }
  r.cache_rows_read = s.batch * c.n_layers * (L + 1);
  r.step_bytes = decode_step_bytes(c, r.weight_values, r.element_bytes, s.batch,
                                   double(r.cache_rows_read) * double(r.row_bytes));

  StepProfiler profiler(s.device);  // warm-up steps too: on CUDA its event pool is grown before the timed steps
  Tensor last_eager;
  for (int64_t i = 0; i < s.warmup + s.iters; ++i) {
    const TimedStep step = run_timed_step(model, batch, pool.layers, s.time_split ? &profiler : nullptr,
                                          "bench decode: " + kind.name() + ", step " + std::to_string(i));
    if (i < s.warmup) continue;
    r.latencies.push_back(step.seconds);
    if (s.time_split) r.split_sum += profiler.split();
    last_eager = step.logits;
  }
  time_decode_graph(model, comm, batch, pool.layers, num_blocks, kind, s, last_eager, r);
  return r;
}

std::string kv_name(KvCacheDtype kv, const DecodeSettings& s) {
  if (kv != KvCacheDtype::Auto) return kv_cache_dtype_name(kv);
  return s.device == Device::CUDA ? "auto (bf16)" : "auto (f32)";
}

// The time split's columns, in kProfileCategories order: each category's share of the timed steps.
constexpr std::array<const char*, kProfileCategoryCount> kSplitColumns = {"attn %", "MoE %", "GEMM %", "other %",
                                                                          "comm %"};

std::string results_table(const std::vector<DecodeResult>& results, const DecodeSettings& s) {
  std::vector<std::string> header = {"attention", "kv cache dtype", "kv heads", "cache B/token/layer",
                                     "tokens in " + fixed(s.memory_gib, 0) + " GiB", "cache read/step", "median ms",
                                     "min ms", "floor ms", "tokens/s", "x MLA tokens/s", "graph ms", "graph tokens/s"};
  if (s.time_split) header.insert(header.end(), kSplitColumns.begin(), kSplitColumns.end());
  TextTable t(header);
  for (const DecodeResult& r : results) {
    double mla_rate = 0;  // MLA with the same cache dtype
    for (const DecodeResult& m : results)
      if (m.kind.is_mla() && m.kv == r.kv) mla_rate = double(s.batch) / m.median();
    const double rate = double(s.batch) / r.median();
    std::vector<std::string> row = {
        r.kind.name(), kv_name(r.kv, s), r.kind.is_mla() ? "latent" : std::to_string(r.kv_heads),
        with_commas(r.row_bytes), with_commas(r.capacity.tokens()),
        fixed(double(r.cache_rows_read * r.row_bytes) / (1 << 20), 1) + " MiB", fixed(1e3 * r.median(), 2),
        fixed(1e3 * *std::min_element(r.latencies.begin(), r.latencies.end()), 2),
        r.floor_ms(s) > 0 ? fixed(r.floor_ms(s), 2) : "-", fixed(rate, 1),
        mla_rate > 0 ? fixed(rate / mla_rate, 2) : "-",
        r.graph_latencies.empty() ? "-" : fixed(1e3 * median(r.graph_latencies), 2),
        r.graph_latencies.empty() ? "-" : fixed(double(s.batch) / median(r.graph_latencies), 1)};
    if (s.time_split) {
      const TimeSplit split = r.mean_split();
      for (ProfileCategory c : kProfileCategories) row.push_back(fixed(100 * split.share(c), 1));
    }
    t.add_row(row);
  }
  return t.render();
}

json::Value results_json(const std::vector<DecodeResult>& results, const DecodeSettings& s, const ModelConfig& full) {
  json::Value list = json::Value::array();
  for (const DecodeResult& r : results) {
    json::Value lat = json::Value::array();
    double sum = 0;
    for (double x : r.latencies) lat.push_back(x), sum += x;
    json::Value j = json::Value::object();
    j["attention"] = r.kind.name();
    j["kv_cache_dtype"] = kv_cache_dtype_name(r.kv);
    j["kv_cache_pool_dtype"] = dtype_name(r.pool_dtype);
    j["kv_cache_quantized"] = r.kv == KvCacheDtype::Fp8 || r.kv == KvCacheDtype::Int8;
    j["num_kv_heads"] = r.kv_heads;
    j["kv_cache_width"] = r.cache_width;
    j["kv_bytes_per_token_per_layer"] = r.row_bytes;
    j["kv_bytes_per_token"] = r.row_bytes * full.n_layers;
    j["model_weights_bytes_bf16"] = r.capacity.weight_bytes;
    j["kv_cache_memory_bytes"] = std::max<int64_t>(0, r.capacity.cache_budget_bytes);
    j["num_gpu_blocks"] = r.capacity.num_blocks;
    j["kv_cache_tokens"] = r.capacity.tokens();
    j["weights_bytes_f32"] = r.weight_values * 4;
    j["weights_bytes_as_run"] = r.weight_values * r.element_bytes;
    j["cache_bytes_read_per_step"] = r.cache_rows_read * r.row_bytes;
    j["cache_bytes_read_per_step_bf16"] = r.cache_rows_read * r.cache_width * 2;
    j["avg_latency"] = sum / double(r.latencies.size());
    j["median_latency"] = r.median();
    j["min_latency"] = *std::min_element(r.latencies.begin(), r.latencies.end());
    j["latencies"] = lat;
    j["tokens_per_second"] = double(s.batch) / r.median();
    j["step_weight_bytes"] = r.step_bytes.weights;
    j["step_cache_bytes"] = r.step_bytes.cache;
    j["experts_hit_per_moe_layer"] = r.step_bytes.experts_hit;
    if (r.floor_ms(s) > 0) {
      j["floor_ms"] = r.floor_ms(s);
      j["median_over_floor"] = 1e3 * r.median() / r.floor_ms(s);
    }
    if (r.graph_latencies.empty()) {
      j["graph_absent"] = r.graph_absent;
    } else {
      json::Value glat = json::Value::array();
      for (double x : r.graph_latencies) glat.push_back(x);
      j["graph_latencies"] = glat;
      j["graph_median_latency"] = median(r.graph_latencies);
      j["graph_tokens_per_second"] = double(s.batch) / median(r.graph_latencies);
      j["graph_vs_eager_max_abs_logit_diff"] = r.graph_logit_diff;
    }
    if (s.time_split) {  // the mean of the timed steps, per category; the total against avg_latency
      const TimeSplit split = r.mean_split();
      json::Value ms = json::Value::object(), share = json::Value::object();
      for (ProfileCategory c : kProfileCategories) {
        ms[profile_category_name(c)] = split[c];
        share[profile_category_name(c)] = split.share(c);
      }
      j["time_split_ms"] = ms;
      j["time_split_total_ms"] = split.total_ms();
      j["time_split_share"] = share;
    }
    list.push_back(j);
  }
  json::Value out = bench_model_json("decode", s, full);
  out["batch_size"] = s.batch;
  out["input_len"] = s.seq_len;
  out["output_len"] = int64_t(1);
  out["memory_bytes"] = int64_t(s.memory_gib * double(int64_t(1) << 30));
  out["moe_capacity_max_tokens"] = s.moe_capacity_resolved();
  if (s.copy_gbps > 0) out["device_copy_GBps"] = s.copy_gbps;
  out["moe_layout"] = s.moe_layout_name();
  out["time_split_clock"] = !s.time_split              ? "off"
                            : s.device == Device::CUDA ? "cuda events on the current stream"
                                                       : "steady_clock";
  out["records"] = list;
  return out;
}

}  // namespace

Command add_bench_decode_command(CLI::App& bench) {
  auto* cmd = bench.add_subcommand(
      "decode", "Time one decode step, MLA against MHA/GQA/MQA, with random weights (one rank: no --tp, --dcp 1)");
  auto s = std::make_shared<DecodeSettings>();
  auto attention = std::make_shared<std::string>("mla,mha,gqa:8,mqa");
  auto kv_dtypes = std::make_shared<std::string>("auto");
  auto json_out = std::make_shared<std::string>();
  add_bench_model_options(*cmd, *s);
  cmd->add_option("--batch,--batch-size", s->batch, "Sequences decoding together");
  cmd->add_option("--seq-len,--input-len", s->seq_len, "Tokens already cached per sequence");
  cmd->add_option("--attention", *attention, "Kinds to compare: mla, mha, gqa:G, mqa, comma-separated");
  cmd->add_option("--kv-cache-dtype,--kv-dtype", *kv_dtypes,
                  "Cache dtypes, comma-separated: auto (f32 on the CPU, bf16 on a GPU), bf16, fp8, int8 (1 B per "
                  "value + an fp32 scale per 128-value tile, read back dequantized); one row per kind and dtype");
  cmd->add_option("--memory-gib", s->memory_gib,
                  "Memory in GiB for the tokens-that-fit column, before the whole model's bf16 weights");
  cmd->add_option("--moe-capacity-max-tokens", s->moe_capacity_max_tokens,
                  "Steps of at most this many tokens run the routed experts in the capacity layout (T rows each, no "
                  "host copy); 0: never; -1: the device's default (CPU 0, CUDA 128)");
  cmd->add_option("--json", *json_out, "Write the results as JSON here");
  cmd->add_flag("!--enforce-eager", s->graphs,
                "On CUDA, time the MLA steps eagerly only (without it they are also replayed from a CUDA graph)");
  cmd->add_flag("!--no-time-split", s->time_split,
                "Run the steps without the time split's region markers (its columns and JSON fields go too)");
  return {cmd, [=]() {
            check_output_path("--json", *json_out);  // before any work: the results must have somewhere to go
            const auto [full, c] = load_bench_model(*s);
            if (s->batch < 1) fail("option --batch: value ", s->batch, ": must be at least 1");
            if (s->seq_len < 1) fail("option --seq-len: value ", s->seq_len, ": must be at least 1");
            if (!(s->memory_gib > 0)) fail("option --memory-gib: value ", s->memory_gib, ": must be positive");
            const std::vector<KvCacheDtype> dtypes = parse_kv_cache_dtypes(*kv_dtypes, "--kv-cache-dtype");
            RuntimeOptions runtime;  // the options a real run would take, checked by the same rules
            runtime.block_size = s->block_size;
            runtime.max_num_seqs = s->batch;
            runtime.max_model_len = s->seq_len + 1;
            runtime.moe_capacity_max_tokens = s->moe_capacity_max_tokens;
            runtime.validate_for(full);
            std::vector<AttentionKind> kinds = parse_attention_kinds(*attention, full.n_heads, "--attention");
            std::printf("== bench decode: %s cut to %lld of %lld layers (%lld dense, %lld MoE), random weights; "
                        "batch %lld, %lld cached tokens per sequence, block size %lld\n",
                        s->config_path.c_str(), (long long)c.n_layers, (long long)full.n_layers,
                        (long long)(c.n_layers - c.num_moe_layers()), (long long)c.num_moe_layers(),
                        (long long)s->batch, (long long)s->seq_len, (long long)s->block_size);
            if (c.num_moe_layers() > 0)
              std::printf("MoE: routed experts in the %s layout (--moe-capacity-max-tokens %lld)\n",
                          s->moe_layout_name(),
                          (long long)s->moe_capacity_resolved());
            if (s->device == Device::CUDA) {
              s->copy_gbps = measure_device_copy_gbps();
              std::printf("device: cuda (%s), bf16 weights and cache, f32 accumulation; median of %lld steps after "
                          "%lld warm-up, each timed to the end of its GPU work\n",
                          gpu_name().c_str(), (long long)s->iters, (long long)s->warmup);
              std::printf("floor ms: the weights the step reads (routed experts: those a uniform routing of the "
                          "batch hits, expected) and its cache reads at this GPU's copy bandwidth, %.0f GB/s "
                          "(measured)\n",
                          s->copy_gbps);
            } else
              std::printf("device: this machine's CPU (%s), f32 reference ops, one thread; median of %lld steps after "
                          "%lld warm-up\n",
                          cpu_name().c_str(), (long long)s->iters, (long long)s->warmup);
            std::printf("cache B/token/layer: as allocated (fp8/int8: 1 B a value, an fp32 scale per 128-value tile); "
                        "tokens in %s GiB: the whole model's %lld layers of cache beside its %s GiB of bf16 weights\n",
                        fixed(s->memory_gib, 0).c_str(), (long long)full.n_layers,
                        fixed(double(weight_bytes_per_rank(full, 1)) / double(int64_t(1) << 30), 1).c_str());
            if (s->time_split)
              std::printf("time split (%% of the timed steps): attn = the MLA backend or baseline attention with the "
                          "cache write; MoE = routing, permutation, experts, combine, shared experts; GEMM = q/kv/o "
                          "projections, dense MLPs, LM head; other = embedding, norms, RoPE, the rest; comm = "
                          "collectives (0 on one rank)\n");
            std::fflush(stdout);
            std::vector<DecodeResult> results;
            for (const AttentionKind& k : kinds)
              for (KvCacheDtype kv : dtypes) {
                std::fprintf(stderr, "mlarun: %s, kv cache %s: building the model and filling the cache...\n",
                             k.name().c_str(), kv_cache_dtype_name(kv));
                results.push_back(run_one(c, full, k, kv, *s));
              }
            std::cout << results_table(results, *s);
            if (!json_out->empty()) {
              write_text_file(*json_out, json::dump(results_json(results, *s, full), 2) + "\n", "--json");
              std::cout << "JSON: " << *json_out << "\n";
            }
            return 0;
          }};
}

}  // namespace mlarun::cli
