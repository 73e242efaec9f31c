// mlarun: entry point. Parses the command line, runs one subcommand, and turns mlarun::Error into a one-line
// message and exit code 1 (bad input never ends in a crash or a stack trace).
#include <iostream>
#include <vector>

#include "launch/commands.h"
#include "runtime/error.h"

int main(int argc, char** argv) {
  CLI::App app{"mlarun: DeepSeek-V2/V3 (MLA + DeepSeekMoE) inference runtime"};
  app.require_subcommand(1);
  std::vector<mlarun::cli::Command> commands = {
      mlarun::cli::add_info_command(app),
      mlarun::cli::add_score_command(app),
      mlarun::cli::add_generate_command(app),
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
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "internal error: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
