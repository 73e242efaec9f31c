// `mlarun serve`: an OpenAI-compatible HTTP server (vLLM's routes and extra sampling fields) over one Engine,
// continuously batching every open request. Takes every engine option of `generate` (add_model_options), the
// address, the served model name and the tokenizer (the model directory's tokenizer.json, else --tokenizer).
// Under mpirun (`mpirun -np N mlarun serve --tp N ...`) rank 0 serves HTTP and the other ranks follow its engine
// step by step (serve_mirror.h).
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <memory>

#include "engine/engine.h"
#include "engine/tokenizer.h"
#include "launch/cli_common.h"
#include "launch/commands.h"
#include "launch/serve_engine.h"
#include "launch/serve_http.h"
#include "launch/serve_mirror.h"
#include "runtime/error.h"

namespace mlarun::cli {

namespace {

bool is_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

Command add_serve_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("serve", "OpenAI-compatible HTTP server (/v1/completions, /v1/chat/completions, "
                                          "/v1/models, /tokenize, /detokenize, /health, /metrics)");
  auto o = std::make_shared<ModelOptions>();
  auto addr = std::make_shared<ServeAddress>();
  auto name = std::make_shared<std::string>();
  auto tokenizer = std::make_shared<std::string>();
  add_model_options(*cmd, *o);
  cmd->add_option("--host", addr->host, "Address to listen on");
  cmd->add_option("--port", addr->port, "Port to listen on")->check(CLI::Range(1, 65535));
  cmd->add_option("--served-model-name", *name, "The model's name in the API (default: the --model argument)");
  cmd->add_option("--tokenizer", *tokenizer,
                  "tokenizer.json, or a directory holding it (default: the model directory's tokenizer.json)");
  return {cmd, [=]() {
            std::string tok_path = *tokenizer;
            if (tok_path.empty()) {
              tok_path = o->model_dir + "/tokenizer.json";
              if (!is_file(tok_path))
                fail("serve: no tokenizer.json in '", o->model_dir, "'; give --tokenizer PATH");
            }
            // The tokenizer before the weights: a bad one costs a second, not a model load. Every rank loads it,
            // so a bad one fails the same way everywhere.
            Tokenizer tok = Tokenizer::load(tok_path);
            Session s = open_session(*o);
            PlanChannel plans = open_plan_channel(*s.comm, o->collective_timeout);
            Engine engine(s.options, *s.runner);
            if (!s.is_driver()) {
              const int code = follow_engine(engine, plans);
              if (code == 0) std::fprintf(stderr, "mlarun: rank %d: serve: stopped with rank 0\n", s.comm->rank());
              return code;
            }
            ServeConfig cfg;
            cfg.model_name = name->empty() ? o->model_dir : *name;
            cfg.max_model_len = s.options.max_model_len;
            cfg.vocab_size = s.config.vocab_size;
            // Every running sequence may hold an HTTP thread (a stream), plus room for the waiting and the quick
            // routes (/health, /metrics) so they answer under full load.
            addr->threads = int(std::min<int64_t>(4096, std::max<int64_t>(8, s.options.max_num_seqs * 2 + 8)));
            int code = 0;
            {
              ServeEngine serve(engine, &plans);
              code = run_http_server(serve, tok, cfg, *addr);
            }  // the engine thread has sent the followers the shutdown plan
            std::fprintf(stderr, "mlarun: serve: stopped\n");
            return code;
          }};
}

}  // namespace mlarun::cli
