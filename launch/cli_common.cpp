// Shared model options and session set-up (see cli_common.h).
#include "launch/cli_common.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "bench/text_table.h"
#include "kernels/ops.h"
#include "launch/distributed.h"
#include "runtime/device.h"
#include "runtime/error.h"

namespace mlarun::cli {

void add_model_options(CLI::App& cmd, ModelOptions& o) {
  RuntimeOptions& r = o.runtime;
  cmd.add_option("--model", o.model_dir, "Hugging Face checkpoint directory (config.json + safetensors)")->required();
  cmd.add_option("--device", o.device, "auto, cpu or cuda (auto: cuda when a GPU exists; cuda runs in bf16)");
  cmd.add_option("--tensor-parallel-size,--tp", r.tp, "Tensor-parallel ranks (run under mpirun -np N)");
  cmd.add_option("--decode-context-parallel-size,--dcp", r.decode_context_parallel_size,
                 "Ranks of one group (consecutive tp ranks) that share each sequence's latent cache by token, each "
                 "storing every N-th token: N times the tokens at the same memory; must divide --tp (1: off)");
  cmd.add_option("--comm", o.comm, "Communicator: auto, nccl, mpi or single");
  cmd.add_option("--collective-timeout", o.collective_timeout,
                 "Seconds a collective may wait for the other ranks before the job ends naming the ranks it waited "
                 "for; 0: wait forever")
      ->check(CLI::NonNegativeNumber);
  cmd.add_option("--block-size", r.block_size, "Tokens per cache block, 1 to 256");
  cmd.add_option("--num-gpu-blocks-override,--num-blocks", r.num_blocks,
                 "Cache blocks per layer; -1 sizes the cache from memory");
  cmd.add_option("--kv-cache-dtype", o.kv_cache_dtype,
                 "Cache dtype: auto (the model's: f32 on the CPU, bf16 on a GPU), bf16, fp8 or int8 (the latent "
                 "in tiles of 128 one-byte values with an f32 scale each, rope in bf16: 656 bytes a token a layer "
                 "for DeepSeek-V2/V3; read back dequantized)");
  o.max_model_len_option =
      cmd.add_option("--max-model-len,--max-seq-len", r.max_model_len,
                     "Longest prompt + generation; when not given: min(4096, the model's max_seq_len)");
  cmd.add_option("--max-num-seqs,--max-batch-size", r.max_num_seqs, "Sequences per step");
  cmd.add_option("--max-num-batched-tokens", r.max_num_batched_tokens, "Tokens per step (prefill chunks and decodes)");
  cmd.add_option("--prefill-context-piece-tokens", r.prefill_context_piece_tokens,
                 "Context tokens a step's prefill up-projects to K/V at once; longer contexts go in pieces");
  cmd.add_option("--mla-absorbed-max-tokens", r.mla_absorbed_max_tokens,
                 "Prefill chunks of at most this many new tokens over a cached prefix take MLA's absorbed path "
                 "when it does less work; 1: decode only; -1: the device's default (CPU 128, CUDA 4)");
  cmd.add_option("--moe-capacity-max-tokens", r.moe_capacity_max_tokens,
                 "Steps of at most this many tokens run the routed experts with T rows each (no host copy); "
                 "0: never; -1: the device's default (CPU 0, CUDA 128)");
  cmd.add_flag("--enforce-eager", r.enforce_eager,
               "Run every step op by op: no CUDA graphs for decode steps (on the GPU they replay one per batch size)");
  cmd.add_option("--gpu-memory-utilization", r.gpu_memory_utilization, "Fraction of GPU memory to use, (0, 1]");
  cmd.add_flag("--enable-prefix-caching,!--no-enable-prefix-caching,!--no-prefix-caching", r.enable_prefix_caching,
               "Share the cache of common prompt prefixes between requests (default: on)");
}

void ProgressLine::update(const std::string& text, bool final) {
  static const bool terminal = isatty(fileno(stderr)) != 0;
  const double now = std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  if (!final && now - last_ < (terminal ? 0.5 : 5.0)) return;
  last_ = now;
  if (terminal)
    std::fprintf(stderr, "\rmlarun: %s%s", text.c_str(), final ? "\n" : "");
  else
    std::fprintf(stderr, "mlarun: %s\n", text.c_str());
}

void add_bench_model_options(CLI::App& cmd, BenchModelSettings& s) {
  cmd.add_option("--config", s.config_path, "DeepSeek (JSON/YAML) or Hugging Face config")->required();
  cmd.add_option("--layers", s.layers, "Keep the first K layers");
  cmd.add_option("--iters,--num-iters", s.iters, "Timed steps (of each configuration)");
  cmd.add_option("--warmup,--num-iters-warmup", s.warmup, "Untimed steps first");
  cmd.add_option("--block-size", s.block_size, "Tokens per cache block, 1 to 256");
  cmd.add_option("--seed", s.seed, "Seed of the random weights and cache rows");
  cmd.add_option("--device", s.device_name, "cpu, cuda (bf16) or auto (cuda when a GPU exists)");
}

BenchModel load_bench_model(BenchModelSettings& s) {
  BenchModel m;
  m.full = load_model_config(s.config_path);
  if (s.layers < 1 || s.layers > m.full.n_layers)
    fail("option --layers: value ", s.layers, ": must lie in [1, ", m.full.n_layers, "] for ", s.config_path);
  if (s.iters < 1) fail("option --iters: value ", s.iters, ": must be at least 1");
  if (s.warmup < 0) fail("option --warmup: value ", s.warmup, ": must not be negative");
  s.device = resolve_device(s.device_name);
  m.cut = m.full;
  m.cut.n_layers = s.layers;
  m.cut.n_dense_layers = std::min(m.cut.n_dense_layers, m.cut.n_layers);
  return m;
}

json::Value bench_model_json(const std::string& benchmark, const BenchModelSettings& s, const ModelConfig& full) {
  json::Value out = json::Value::object();
  out["benchmark"] = benchmark;
  out["config"] = s.config_path;
  out["device"] = device_name(s.device);
  out["dtype"] = s.device == Device::CUDA ? "bf16" : "f32";
  out["cpu"] = cpu_name();
  if (s.device == Device::CUDA) out["gpu"] = gpu_name();
  out["num_layers"] = s.layers;
  out["model_num_layers"] = full.n_layers;
  out["block_size"] = s.block_size;
  out["num_iters_warmup"] = s.warmup;
  out["num_iters"] = s.iters;
  return out;
}

TimedStep run_timed_step(const DeepseekModel& model, const ForwardBatch& batch, std::vector<Tensor>& cache,
                         StepProfiler* profiler, const std::string& what) {
  return run_timed_step([&] { return model.forward(batch, cache); }, profiler, what);
}

TimedStep run_timed_step(const std::function<Tensor()>& run, StepProfiler* profiler, const std::string& what) {
  synchronize_stream();
  const auto start = std::chrono::steady_clock::now();
  if (profiler) profiler->begin_step();
  const Tensor device_logits = run();
  if (profiler) profiler->end_step();
  synchronize_stream();  // the step ends when its GPU work does
  TimedStep step;
  step.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  step.logits = ops::to_host_f32(device_logits);
  for (int64_t j = 0; j < step.logits.numel(); ++j)
    if (!std::isfinite(step.logits.data<float>()[j]))
      fail(what, ": a non-finite logit (", step.logits.data<float>()[j], ")");
  return step;
}

double max_abs_logit_diff(const Tensor& a, const Tensor& b) {
  MLARUN_CHECK(a.numel() == b.numel(), "logits of ", a.describe(), " and ", b.describe(), " do not compare");
  double diff = 0;
  for (int64_t i = 0; i < a.numel(); ++i)
    diff = std::max(diff, double(std::fabs(a.data<float>()[i] - b.data<float>()[i])));
  return diff;
}

std::string cpu_name() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

std::vector<int32_t> parse_id_list(const std::string& text, const std::string& option) {
  std::vector<int32_t> ids;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    std::string item = text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || errno != 0 || v < 0 || v > INT32_MAX)
      fail("option ", option, ": '", item, "' is not a token id (expected comma-separated non-negative integers)");
    ids.push_back(int32_t(v));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return ids;
}

Device resolve_device(const std::string& device) {
  if (device != "auto" && device != "cpu" && device != "cuda")
    fail("option --device: value '", device, "': expected auto, cpu or cuda");
  if (device == "cpu") return Device::CPU;
  if (device == "auto") return gpu_available() ? Device::CUDA : Device::CPU;
  MLARUN_CHECK(gpu_available(), "option --device: value cuda: no usable GPU (", gpu_info().reason,
               "); use --device cpu");
  return Device::CUDA;
}

namespace {

// The options every rank must share, as the fingerprint's "name=value" words (as given, before the model
// completes them; --device, --gpu-memory-utilization and the timeout may differ per rank).
std::string agreed_options(const ModelOptions& o) {
  const RuntimeOptions& r = o.runtime;
  return detail::concat("tp=", r.tp, " dcp=", r.decode_context_parallel_size, " block-size=", r.block_size, " num-blocks=", r.num_blocks, " max-model-len=",
                        o.max_model_len_option->count() ? std::to_string(r.max_model_len) : "auto",
                        " max-num-seqs=", r.max_num_seqs, " max-num-batched-tokens=", r.max_num_batched_tokens,
                        " prefix-caching=", r.enable_prefix_caching ? "on" : "off", " kv-cache-dtype=",
                        o.kv_cache_dtype);
}

}  // namespace

Session open_session(ModelOptions& o) {
  Session s;
  RuntimeOptions& r = s.options;
  r = o.runtime;
  r.device = resolve_device(o.device);
  r.kv_cache_dtype = parse_kv_cache_dtype(o.kv_cache_dtype);
  s.comm = make_session_communicator(o.comm, r.tp, o.collective_timeout);
  s.config = load_model_config_from_dir(o.model_dir);
  // Before anything sized by the model crosses ranks: a rank given another model fails here, by name.
  check_ranks_agree(o.model_dir, s.config, agreed_options(o), o.collective_timeout);
  if (o.max_model_len_option->count() == 0) r.max_model_len = std::min<int64_t>(4096, s.config.max_seq_len);
  r.eos_token_id = int32_t(s.config.eos_token_id);
  r.validate_for(s.config);
  const auto load_start = std::chrono::steady_clock::now();
  LoadProgress progress;
  if (s.is_driver())
    progress = [load_start, line = std::make_shared<ProgressLine>()](int64_t done, int64_t total) {
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();
      line->update(detail::concat("loading weights: layer ", done, "/", total, " (", bench::fixed(seconds, 1), " s)"),
                   done == total);
    };
  s.runner = std::make_unique<DeepseekRunner>(s.config, o.model_dir, r, *s.comm, progress);
  const CacheCapacity& cap = s.runner->capacity();
  r.num_blocks = cap.num_blocks;  // the scheduler uses the whole cache the runner sized
  if (s.is_driver()) {
    const std::string where = r.device == Device::CUDA ? "cuda (" + gpu_name() + ", bf16)" : "cpu (f32)";
    // Under DCP a block holds block_size tokens on each of the group's N ranks: the line counts the group's tokens
    // and one rank's bytes.
    const std::string dcp = r.decode_context_parallel_size > 1
                                ? detail::concat(", dcp ", r.decode_context_parallel_size, " (each rank stores 1/",
                                                 r.decode_context_parallel_size, " of every sequence's tokens)")
                                : std::string();
    std::fprintf(stderr,
                 "mlarun: %s on %s, tp %d (%s)%s; latent cache: %lld blocks x %lld tokens = %lld tokens (%.1f MiB per "
                 "rank)\n",
                 o.model_dir.c_str(), where.c_str(), s.comm->world_size(), s.comm->backend(), dcp.c_str(),
                 (long long)cap.num_blocks, (long long)cap.block_size, (long long)cap.tokens(),
                 double(cap.num_blocks * cap.bytes_per_block) / (1 << 20));
    std::fprintf(stderr, "mlarun: maximum concurrency for %lld tokens per request: %.2fx\n",
                 (long long)r.max_model_len, cap.max_concurrency(r.max_model_len));
    if (r.device == Device::CUDA)
      std::fprintf(stderr, "mlarun: decode CUDA graphs: %s\n", s.runner->decode_graphs().describe().c_str());
  }
  return s;
}

}  // namespace mlarun::cli
