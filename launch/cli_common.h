// Options every model-running command shares (model directory, device, parallelism, cache and batching limits,
// with vLLM's spellings), their registration on a CLI11 subcommand, building the runner they describe, and the
// progress line long work prints on stderr.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/deepseek_runner.h"
#include "parallel/collective_watchdog.h"
#include "parallel/communicator.h"
#include "runtime/json.h"
#include "runtime/model_config.h"
#include "runtime/runtime_options.h"
#include "runtime/step_profiler.h"

namespace mlarun::cli {

struct ModelOptions {
  std::string model_dir;
  std::string device = "auto";          // auto | cpu | cuda
  std::string comm = "auto";            // auto | nccl | mpi | single
  std::string kv_cache_dtype = "auto";  // --kv-cache-dtype
  double collective_timeout = kDefaultCollectiveTimeoutSeconds;  // --collective-timeout (0: off)
  RuntimeOptions runtime;
  CLI::Option* max_model_len_option = nullptr;  // to tell whether the user set it
};

void add_model_options(CLI::App& cmd, ModelOptions& o);

// "cpu", "cuda" or "auto" (cuda when a GPU is usable, else cpu) -> the device; "cuda" without a GPU is an error
// naming the option and why there is none.
Device resolve_device(const std::string& device);

// What the model benchmarks (`bench decode`, `bench prefill`) share: a config cut to its first layers with random
// weights, run on one device, timed over warm-up and measured steps.
struct BenchModelSettings {
  std::string config_path;
  std::string device_name = "cpu";  // explicit: a benchmark's numbers must not change meaning with the machine
  Device device = Device::CPU;      // resolved from device_name by load_bench_model
  int64_t layers = 1, iters = 3, warmup = 1, block_size = 64;
  uint64_t seed = 0;
};
// Registers --config, --layers, --iters, --warmup, --block-size, --seed and --device.
void add_bench_model_options(CLI::App& cmd, BenchModelSettings& s);
// The config's model whole and cut to --layers (its dense layers kept first); checks --layers, --iters and
// --warmup against it, naming the option, and resolves --device.
struct BenchModel {
  ModelConfig full, cut;
};
BenchModel load_bench_model(BenchModelSettings& s);
// The JSON fields every model benchmark's report starts with (config, device, dtype, CPU/GPU names, layers,
// block size, iterations), `benchmark` naming it.
json::Value bench_model_json(const std::string& benchmark, const BenchModelSettings& s, const ModelConfig& full);

// One model step as the model benchmarks time it: from an idle stream to the end of the step's GPU work
// (`profiler`, when given, marks the step for its time split), its logits copied to the host and checked finite:
// a benchmark of a step gone wrong would time nonsense. `what` names the step in the error.
struct TimedStep {
  double seconds = 0;
  Tensor logits;  // f32 on the host
};
TimedStep run_timed_step(const DeepseekModel& model, const ForwardBatch& batch, std::vector<Tensor>& cache,
                         StepProfiler* profiler, const std::string& what);
// The same for a step `step` runs (a decode graph's replay) and whose device logits it returns.
TimedStep run_timed_step(const std::function<Tensor()>& step, StepProfiler* profiler, const std::string& what);
// The largest |a - b| over two f32 host tensors of one size: how far two runs of a step's logits differ.
double max_abs_logit_diff(const Tensor& a, const Tensor& b);

// This machine's CPU model name (/proc/cpuinfo), for benchmark reports; "unknown CPU" when it says none.
std::string cpu_name();

// Parses "5,17,42" into token ids; an error names the option and the bad item.
std::vector<int32_t> parse_id_list(const std::string& text, const std::string& option);

// The distributed context and runner of one command: communicator first, then the model on this rank.
struct Session {
  std::unique_ptr<Communicator> comm;
  ModelConfig config;      // read once, here
  RuntimeOptions options;  // the command line's, completed from the model (max_model_len, EOS) and validated
  std::unique_ptr<DeepseekRunner> runner;
  bool is_driver() const { return comm->rank() == 0; }
};
// Sets up the communicator (--tp/--comm, --collective-timeout), reads the model config, checks that every rank
// was given the same model and options (the start-up fingerprint), loads the model, sizes the cache, and prints
// the capacity line.
Session open_session(ModelOptions& o);

// A progress line on stderr ("mlarun: " + text): rewritten in place on a terminal (at most twice a second, the
// final one always), one line each time otherwise (at most every 5 seconds), so logs stay readable.
class ProgressLine {
 public:
  void update(const std::string& text, bool final);

 private:
  double last_ = -1e9;
};

}  // namespace mlarun::cli
