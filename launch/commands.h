// The subcommands of `mlarun`. Each registers its options on the CLI11 app and returns the function that runs
// it, so main.cpp stays a list of commands.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace mlarun::cli {

using Runner = std::function<int()>;
struct Command {
  CLI::App* app;  // the subcommand, to ask whether it was chosen
  Runner run;
};

Command add_info_command(CLI::App& app);
Command add_score_command(CLI::App& app);
Command add_generate_command(CLI::App& app);
Command add_tokenize_command(CLI::App& app);   // text <-> token ids (engine/tokenizer.h)
Command add_serve_command(CLI::App& app);      // OpenAI-compatible HTTP server (launch/serve_http.h)
Command add_bench_cache_command(CLI::App& bench);   // `bench cache`, under the `bench` subcommand
Command add_bench_decode_command(CLI::App& bench);  // `bench decode`
Command add_bench_prefill_command(CLI::App& bench);  // `bench prefill`: MLA's naive vs absorbed path
Command add_bench_serve_command(CLI::App& bench);   // `bench serve`: load on an OpenAI-compatible server

}  // namespace mlarun::cli
