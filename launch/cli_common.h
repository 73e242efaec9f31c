// Options every model-running command shares (model directory, parallelism, cache and batching limits), their
// registration on a CLI11 subcommand, and building the runner they describe.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "model/deepseek_runner.h"
#include "parallel/communicator.h"
#include "runtime/runtime_options.h"
#include "runtime/scheduler.h"

namespace mlarun::cli {

struct ModelOptions {
  std::string model_dir;
  std::string device = "auto";  // auto | cpu | cuda
  std::string comm = "auto";    // auto | nccl | mpi | single
  bool no_prefix_caching = false;
  RuntimeOptions runtime;
  CLI::Option* max_seq_len_option = nullptr;  // to tell whether the user set it
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
  std::unique_ptr<DeepseekRunner> runner;
  SchedulerConfig scheduler;
  bool is_driver() const { return comm->rank() == 0; }
};
// Sets up the communicator (--tp/--comm), loads the model, sizes the cache, and prints the capacity line.
Session open_session(ModelOptions& o, bool prefix_caching);

}  // namespace mlarun::cli
