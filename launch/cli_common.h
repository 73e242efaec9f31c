// Options every model-running command shares (model directory, device, parallelism, cache and batching limits,
// with vLLM's spellings), their registration on a CLI11 subcommand, building the runner they describe, and the
// progress line long work prints on stderr.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "engine/deepseek_runner.h"
#include "parallel/collective_watchdog.h"
#include "parallel/communicator.h"
#include "runtime/model_config.h"
#include "runtime/runtime_options.h"

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
