// HTTP routes of `mlarun serve` (see serve_http.h). Each generation handler submits its prompts to the
// ServeEngine and waits on their channels; a streamed one writes server-sent events from cpp-httplib's chunked
// content provider, and a write that fails (the client went away) aborts its requests, freeing their blocks; a
// non-streamed one watches its socket while it waits (serve_connection.h) for the same reason.
#include "launch/serve_http.h"

#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <optional>

#include "launch/serve_connection.h"
#include "runtime/error.h"

namespace mlarun::cli {

namespace {

// cpp-httplib 0.11.4 listens with a backlog of 5: a burst of clients connecting at once (a benchmark's
// concurrency, 32 streams) overflows it, and the kernel resets some of them after they have sent their request.
// Listening again on the bound socket (Linux takes a new backlog) lets the burst queue until a thread accepts it.
class Server : public httplib::Server {
 public:
  bool widen_backlog() { return ::listen(svr_sock_, SOMAXCONN) == 0; }
};

std::atomic<httplib::Server*> g_server{nullptr};
void on_signal(int) {
  if (httplib::Server* s = g_server.load()) s->stop();
}

void send_json(httplib::Response& res, int status, const json::Value& body) {
  res.status = status;
  res.set_content(json::dump(body), "application/json");
}

void send_error(httplib::Response& res, const ApiError& e) { send_json(res, e.status, e.body()); }

json::Value parse_body(const httplib::Request& req) {
  try {
    return json::parse(req.body, "request body");
  } catch (const Error& e) {
    throw ApiError(400, e.what());
  }
}

const char* finish_name(FinishReason r, bool stopped) {
  return stopped || r == FinishReason::Stop ? "stop" : r == FinishReason::Length ? "length" : "abort";
}

json::Value usage_json(int64_t prompt, int64_t completion) {
  return {{"prompt_tokens", prompt}, {"completion_tokens", completion}, {"total_tokens", prompt + completion}};
}

// One generation request in flight: its channels (one per prompt) and their text streams.
struct Generation {
  ServeEngine& engine;
  bool chat;
  std::string id, model;
  int64_t created;
  std::vector<std::shared_ptr<Channel>> channels;
  std::vector<TextStream> texts;
  std::vector<std::vector<int32_t>> tokens;
  std::vector<bool> done;
  std::vector<const char*> reasons;
  size_t current = 0;  // the choice being streamed (choices stream one after another; all generate at once)
  bool role_sent = false, finished = false;
  std::string error;

  // Waits up to `timeout` for choice i; returns its new text. Aborts the request once a stop string matched.
  std::string advance(size_t i, std::chrono::milliseconds timeout) {
    const bool fin = channels[i]->wait(tokens[i].size(), timeout, tokens[i]);
    const bool was_stopped = texts[i].stopped();
    std::string piece = texts[i].update(tokens[i], fin);
    if (texts[i].stopped() && !was_stopped && !fin) engine.abort(channels[i], "stop string", /*stop=*/true);
    if (fin) {
      done[i] = true;
      std::lock_guard<std::mutex> lk(channels[i]->mu);
      reasons[i] = finish_name(channels[i]->reason, texts[i].stopped());
      if (channels[i]->reason == FinishReason::Abort && !texts[i].stopped()) error = channels[i]->error;
    }
    return piece;
  }
  void abort_all(const std::string& why) {
    for (auto& c : channels) engine.abort(c, why);
  }
  int64_t prompt_tokens() const {
    int64_t n = 0;
    for (auto& c : channels) n += c->num_prompt_tokens;
    return n;
  }
  int64_t completion_tokens() const {
    int64_t n = 0;
    for (auto& t : tokens) n += int64_t(t.size());
    return n;
  }
  json::Value chunk(json::Value choices) const {
    return {{"id", id}, {"object", chat ? "chat.completion.chunk" : "text_completion"}, {"created", created},
            {"model", model}, {"choices", std::move(choices)}};
  }
  json::Value choice_chunk(size_t i, const std::string& piece, const char* reason) const {
    json::Value c = {{"index", int64_t(i)}, {"logprobs", nullptr}};
    c["finish_reason"] = reason ? json::Value(reason) : json::Value(nullptr);
    if (chat)
      c["delta"] = reason && piece.empty() ? json::Value::object() : json::Value{{"content", piece}};
    else
      c["text"] = piece;
    return c;
  }
};

bool write_event(httplib::DataSink& sink, const json::Value& v) {
  const std::string line = "data: " + json::dump(v) + "\n\n";
  return sink.write(line.data(), line.size());
}

void handle_generate(ServeEngine& engine, const Tokenizer& tok, const ServeConfig& cfg, bool chat,
                     const httplib::Request& req, httplib::Response& res) {
  static std::atomic<int64_t> counter{0};
  GenerateRequest g;
  try {
    const json::Value body = parse_body(req);
    g = chat ? parse_chat_request(body, tok, cfg) : parse_completion_request(body, tok, cfg);
  } catch (const ApiError& e) {
    return send_error(res, e);
  } catch (const Error& e) {
    return send_error(res, ApiError(400, e.what()));
  }
  auto gen = std::make_shared<Generation>(Generation{engine, chat, "", cfg.model_name, int64_t(std::time(nullptr)),
                                                     {}, {}, {}, {}, {}, 0, false, false, ""});
  gen->id = (chat ? "chatcmpl-" : "cmpl-") + std::to_string(counter++);
  for (size_t i = 0; i < g.prompts.size(); ++i) {
    gen->channels.push_back(engine.submit(g.prompts[i], g.params[i]));
    gen->texts.emplace_back(tok, g.stop);
    gen->tokens.emplace_back();
    gen->done.push_back(false);
    gen->reasons.push_back(nullptr);
  }
  if (!g.stream) {
    // Nothing is written until the end, so only a look at the socket tells that the client left (found on the
    // first wait: a request done within it never looks).
    std::optional<ClientConnection> client;
    bool abandoned = false;
    json::Value choices = json::Value::array();
    for (size_t i = 0; i < gen->channels.size(); ++i) {
      while (!gen->done[i]) {
        gen->advance(i, std::chrono::milliseconds(200));
        if (gen->done[i] || abandoned) continue;
        if (!client) client.emplace(req.local_addr, req.local_port, req.remote_addr, req.remote_port);
        if (client->gone()) {
          abandoned = true;
          gen->abort_all("client disconnected");
        }
      }
      if (!gen->error.empty()) return send_error(res, ApiError(400, gen->error));
      json::Value c = {{"index", int64_t(i)}, {"logprobs", nullptr}, {"finish_reason", gen->reasons[i]}};
      if (chat)
        c["message"] = {{"role", "assistant"}, {"content", gen->texts[i].text()}};
      else
        c["text"] = gen->texts[i].text();
      if (g.return_token_ids) {
        if (!chat) c["prompt_token_ids"] = g.prompts[i];
        c["token_ids"] = gen->tokens[i];
      }
      choices.push_back(c);
    }
    json::Value body = {{"id", gen->id}, {"object", chat ? "chat.completion" : "text_completion"},
                        {"created", gen->created}, {"model", gen->model}, {"choices", choices},
                        {"usage", usage_json(gen->prompt_tokens(), gen->completion_tokens())}};
    if (g.return_token_ids && chat) body["prompt_token_ids"] = g.prompts[0];  // where vLLM puts it for chat
    return send_json(res, 200, body);
  }
  const bool include_usage = g.include_usage;
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [gen, include_usage](size_t, httplib::DataSink& sink) {
        if (gen->finished) return false;
        const size_t i = gen->current;
        if (gen->chat && !gen->role_sent) {  // the first chunk names the role, as OpenAI's does
          gen->role_sent = true;
          json::Value c = {{"index", int64_t(i)}, {"delta", {{"role", "assistant"}, {"content", ""}}},
                           {"logprobs", nullptr}, {"finish_reason", nullptr}};
          if (!write_event(sink, gen->chunk(json::Value::array({c})))) return false;
        }
        const std::string piece = gen->advance(i, std::chrono::milliseconds(200));
        if (!gen->error.empty()) {
          const json::Value err = ApiError(400, gen->error).body();
          write_event(sink, err);
          gen->error.clear();
        }
        if (!piece.empty() || gen->done[i])
          if (!write_event(sink, gen->chunk(json::Value::array({gen->choice_chunk(i, piece, gen->done[i] ? gen->reasons[i] : nullptr)}))))
            return false;
        if (!gen->done[i]) return true;
        if (++gen->current < gen->channels.size()) {
          gen->role_sent = false;
          return true;
        }
        gen->finished = true;
        if (include_usage) {
          json::Value u = gen->chunk(json::Value::array());
          u["usage"] = usage_json(gen->prompt_tokens(), gen->completion_tokens());
          if (!write_event(sink, u)) return false;
        }
        static const std::string kDone = "data: [DONE]\n\n";
        if (!sink.write(kDone.data(), kDone.size())) return false;
        sink.done();
        return true;
      },
      [gen](bool) { gen->abort_all("client disconnected"); });  // no-op for requests that finished
}

template <typename F>
void handle_json(const httplib::Request& req, httplib::Response& res, F&& make) {
  try {
    send_json(res, 200, make(parse_body(req)));
  } catch (const ApiError& e) {
    send_error(res, e);
  } catch (const Error& e) {
    send_error(res, ApiError(400, e.what()));
  }
}

}  // namespace

int run_http_server(ServeEngine& engine, const Tokenizer& tok, const ServeConfig& cfg, const ServeAddress& addr) {
  Server svr;
  const int threads = addr.threads;
  svr.new_task_queue = [threads] { return new httplib::ThreadPool(size_t(threads)); };
  svr.Get("/health", [](const httplib::Request&, httplib::Response& res) { res.status = 200; });
  svr.Get("/v1/models", [&](const httplib::Request&, httplib::Response& res) {
    json::Value m = {{"id", cfg.model_name}, {"object", "model"}, {"created", int64_t(std::time(nullptr))},
                     {"owned_by", "mlarun"}, {"root", cfg.model_name}, {"parent", nullptr},
                     {"max_model_len", cfg.max_model_len},
                     {"vocab_size", cfg.vocab_size}};  // beyond vLLM: `bench serve` draws prompt ids below it
    send_json(res, 200, {{"object", "list"}, {"data", json::Value::array({m})}});
  });
  svr.Post("/v1/completions", [&](const httplib::Request& req, httplib::Response& res) {
    handle_generate(engine, tok, cfg, false, req, res);
  });
  svr.Post("/v1/chat/completions", [&](const httplib::Request& req, httplib::Response& res) {
    handle_generate(engine, tok, cfg, true, req, res);
  });
  svr.Post("/tokenize", [&](const httplib::Request& req, httplib::Response& res) {
    handle_json(req, res, [&](const json::Value& b) { return tokenize_response(b, tok, cfg); });
  });
  svr.Post("/detokenize", [&](const httplib::Request& req, httplib::Response& res) {
    handle_json(req, res, [&](const json::Value& b) { return detokenize_response(b, tok, cfg); });
  });
  svr.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(engine.metrics_text(cfg.model_name), "text/plain; version=0.0.4");
  });
  svr.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.body.empty()) send_json(res, res.status, ApiError(res.status, "Not Found").body());
  });
  if (!svr.bind_to_port(addr.host, addr.port))
    fail("option --port: cannot listen on ", addr.host, ":", addr.port, " (in use, or not an address of this host)");
  if (!svr.widen_backlog()) std::fprintf(stderr, "mlarun: serve: could not widen the listen backlog; bursts of "
                                                 "connections may be refused\n");
  std::signal(SIGPIPE, SIG_IGN);  // a client that went away fails the write, not the process
  g_server = &svr;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::fprintf(stderr, "mlarun: serving %s on http://%s:%d (%d HTTP threads)\n", cfg.model_name.c_str(),
               addr.host.c_str(), addr.port, threads);
  const bool ok = svr.listen_after_bind();
  g_server = nullptr;
  return ok ? 0 : 1;
}

}  // namespace mlarun::cli
