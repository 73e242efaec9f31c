// The HTTP routes of `mlarun serve` (cpp-httplib): the OpenAI API (/v1/models, /v1/completions,
// /v1/chat/completions, streamed as server-sent events), /health, /tokenize, /detokenize and /metrics. Its own
// file so the command (cli_serve.cpp) only parses options and loads the model.
#pragma once

#include <string>

#include "engine/tokenizer.h"
#include "launch/serve_engine.h"
#include "launch/serve_protocol.h"

namespace mlarun::cli {

struct ServeAddress {
  std::string host = "127.0.0.1";
  int port = 8000;
  int threads = 8;  // HTTP worker threads: each open request holds one
};

// Serves until SIGINT/SIGTERM; returns the exit code. Fails (mlarun::Error) when the address cannot be bound.
int run_http_server(ServeEngine& engine, const Tokenizer& tok, const ServeConfig& cfg, const ServeAddress& addr);

}  // namespace mlarun::cli
