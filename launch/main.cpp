// mlarun: entry point. Parses the command line, runs one subcommand, and turns mlarun::Error into a one-line
// message and exit code 1 (bad input never ends in a crash or a stack trace).
#include <iostream>
#include <vector>

#include "launch/commands.h"
#include "launch/distributed.h"
#include "runtime/error.h"

int main(int argc, char** argv) {
  mlarun::cli::join_job(&argc, &argv);  // under mpirun: MPI up and this rank's GPU bound before any CUDA call
  CLI::App app{"mlarun: DeepSeek-V2/V3 (MLA + DeepSeekMoE) inference runtime"};
  app.option_defaults()->always_capture_default();  // every --help shows each option's default
  app.set_version_flag("--version", std::string("mlarun ") + MLARUN_VERSION);
  app.require_subcommand(1);
  CLI::App* bench = app.add_subcommand(
      "bench",
      "Benchmarks: cache (MLA vs MHA/GQA/MQA capacity), decode (step time), prefill (MLA path crossing), serve (load "
      "on a server)");
  bench->require_subcommand(1);
  std::vector<mlarun::cli::Command> commands = {
      mlarun::cli::add_info_command(app),
      mlarun::cli::add_score_command(app),
      mlarun::cli::add_generate_command(app),
      mlarun::cli::add_tokenize_command(app),
      mlarun::cli::add_serve_command(app),
      mlarun::cli::add_bench_cache_command(*bench),
      mlarun::cli::add_bench_decode_command(*bench),
      mlarun::cli::add_bench_prefill_command(*bench),
      mlarun::cli::add_bench_serve_command(*bench),
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto& cmd : commands)
      if (cmd.app->parsed()) return cmd.run();
  } catch (const mlarun::Error& e) {
    mlarun::cli::fail_job(e.what());
  } catch (const std::exception& e) {
    mlarun::cli::fail_job(std::string("internal error: ") + e.what());
  }
  return 0;
}
