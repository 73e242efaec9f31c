// `mlarun serve` end to end (a child process on a free port, v3-tiny on the CPU): completions equal `generate`
// on the same ids, streams equal the non-streamed text, 32 concurrent streams each equal their sequential
// result, bad requests get OpenAI's 400/404 naming the field, and a client that disconnects (mid-stream, or while
// a non-streamed request runs) has its request aborted and its cache blocks freed (/metrics). Also the step plans
// rank 0 sends its followers (serve_mirror.h) survive their encoding exactly. Across ranks: test_serve_tp.cpp.
#include <gtest/gtest.h>

#include <memory>
#include <sstream>

#include "cli/cli_runner.h"
#include "cli/serve_fixture.h"
#include "engine/tokenizer.h"

namespace mlarun::testing {
namespace {

class Serve : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = std::make_unique<ServeProcess>(
        std::vector<std::string>{"--max-model-len", "128", "--max-num-seqs", "16", "--block-size", "16"});
  }
  static void TearDownTestSuite() { server_.reset(); }
  static const ServeProcess& server() { return *server_; }
  static const Tokenizer& tok() {
    static Tokenizer t = Tokenizer::load(MLARUN_TEST_DATA_DIR "/tokenizers/v3-tiny");
    return t;
  }
  static std::unique_ptr<ServeProcess> server_;
};
std::unique_ptr<ServeProcess> Serve::server_;

// The ids `generate` prints: its last line (stderr, before it, has the progress lines).
std::vector<int32_t> parse_ids(std::string output) {
  while (!output.empty() && output.back() == '\n') output.pop_back();
  const std::string line = output.substr(output.rfind('\n') == std::string::npos ? 0 : output.rfind('\n') + 1);
  std::vector<int32_t> ids;
  std::stringstream ss(line);
  std::string item;
  while (std::getline(ss, item, ',')) ids.push_back(std::stoi(item));
  return ids;
}

TEST_F(Serve, CompletionOnIdsEqualsGenerate) {
  const std::string ids = "5,17,42,99,7,300";
  RunResult g = run_mlarun("generate --model " MLARUN_TEST_DATA_DIR "/deepseek-v3-tiny --device cpu --prompt-ids " +
                           ids + " --max-tokens 12 --ignore-eos --max-model-len 128 --block-size 16");
  ASSERT_EQ(g.exit_code, 0) << g.output;
  const std::vector<int32_t> expected = parse_ids(g.output);
  ASSERT_EQ(expected.size(), 12u) << g.output;
  Reply r = post(server(), "/v1/completions", greedy({{"prompt", json::Value::array({5, 17, 42, 99, 7, 300})}}, 12));
  ASSERT_EQ(r.status, 200) << r.body;
  json::Value j = r.json();
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["model"], "tiny");
  EXPECT_EQ(j["choices"][0]["text"].get<std::string>(), tok().decode(expected, /*skip_special_tokens=*/true));
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["prompt_tokens"], 6);
  EXPECT_EQ(j["usage"]["completion_tokens"], 12);
  EXPECT_EQ(j["usage"]["total_tokens"], 18);
}

TEST_F(Serve, PromptListsGiveOneChoiceEach) {
  Reply r = post(server(), "/v1/completions",
                 greedy({{"prompt", json::Value::array({"Hello world", json::Value::array({5, 17, 42})})}}, 4));
  ASSERT_EQ(r.status, 200) << r.body;
  json::Value j = r.json();
  ASSERT_EQ(j["choices"].size(), 2u);
  EXPECT_EQ(j["choices"][1]["index"], 1);
  EXPECT_EQ(j["usage"]["completion_tokens"], 8);
}

TEST_F(Serve, StreamEqualsNotStreamed) {
  for (bool chat : {false, true}) {
    json::Value body = chat ? json::Value{{"messages", json::Value::array({{{"role", "user"}, {"content", "Hi there"}}})}}
                            : json::Value{{"prompt", "The quick brown fox"}};
    body = greedy(body, 24);
    const char* path = chat ? "/v1/chat/completions" : "/v1/completions";
    Reply plain = post(server(), path, body);
    ASSERT_EQ(plain.status, 200) << plain.body;
    json::Value pj = plain.json();
    const std::string text = chat ? pj["choices"][0]["message"]["content"].get<std::string>()
                                  : pj["choices"][0]["text"].get<std::string>();
    EXPECT_FALSE(text.empty());
    body["stream"] = true;
    body["stream_options"] = {{"include_usage", true}};
    Reply streamed = post(server(), path, body);
    ASSERT_EQ(streamed.status, 200) << streamed.body;
    Streamed s = read_stream(streamed, chat);
    EXPECT_TRUE(s.done) << streamed.body;
    EXPECT_EQ(s.text, text) << (chat ? "chat" : "completions");
    EXPECT_EQ(s.finish_reason, "length");
    EXPECT_EQ(s.usage, pj["usage"]) << streamed.body;
  }
}

TEST_F(Serve, StopStringsCutTheTextInBothModes) {
  Reply full = post(server(), "/v1/completions", greedy({{"prompt", "The quick brown fox"}}, 24));
  ASSERT_EQ(full.status, 200);
  const std::string text = full.json()["choices"][0]["text"].get<std::string>();
  ASSERT_GE(text.size(), 6u);
  const std::string stop = text.substr(text.size() / 2, 2);
  const std::string expected = text.substr(0, text.find(stop));
  json::Value body = greedy({{"prompt", "The quick brown fox"}, {"stop", json::Value::array({stop})}}, 24);
  Reply cut = post(server(), "/v1/completions", body);
  ASSERT_EQ(cut.status, 200) << cut.body;
  EXPECT_EQ(cut.json()["choices"][0]["text"].get<std::string>(), expected);
  EXPECT_EQ(cut.json()["choices"][0]["finish_reason"], "stop");
  body["stream"] = true;
  Streamed s = read_stream(post(server(), "/v1/completions", body), false);
  EXPECT_EQ(s.text, expected);
  EXPECT_EQ(s.finish_reason, "stop");
}

TEST_F(Serve, ConcurrentStreamsEqualSequentialResults) {
  constexpr int kStreams = 32;  // twice --max-num-seqs: half of them wait their turn
  std::vector<json::Value> bodies;
  std::vector<std::string> sequential;
  for (int i = 0; i < kStreams; ++i) {
    json::Value ids = json::Value::array();
    for (int k = 0; k < 3 + i; ++k) ids.push_back((37 * i + 11 * k + 3) % 600);
    bodies.push_back(greedy({{"prompt", ids}}, 20 + i));
    Reply r = post(server(), "/v1/completions", bodies.back());
    ASSERT_EQ(r.status, 200) << r.body;
    sequential.push_back(r.json()["choices"][0]["text"].get<std::string>());
  }
  std::vector<Streamed> results(kStreams);
  std::vector<std::thread> threads;
  for (int i = 0; i < kStreams; ++i)
    threads.emplace_back([&, i] {
      json::Value b = bodies[size_t(i)];
      b["stream"] = true;
      const Reply r = post(server(), "/v1/completions", b);
      EXPECT_EQ(r.status, 200) << "stream " << i << ": " << r.body;
      results[size_t(i)] = read_stream(r, false);
    });
  for (auto& t : threads) t.join();
  for (int i = 0; i < kStreams; ++i) {
    EXPECT_TRUE(results[size_t(i)].done) << i;
    EXPECT_EQ(results[size_t(i)].text, sequential[size_t(i)]) << "stream " << i;
  }
}

void expect_error(const Reply& r, int status, const std::string& param) {
  EXPECT_EQ(r.status, status) << r.body;
  json::Value j = r.json();
  ASSERT_TRUE(j.contains("error")) << r.body;
  EXPECT_EQ(j["error"]["code"], status) << r.body;
  if (param.empty())
    EXPECT_TRUE(j["error"]["param"].is_null()) << r.body;
  else
    EXPECT_EQ(j["error"]["param"], param) << r.body;
  EXPECT_FALSE(j["error"]["message"].get<std::string>().empty());
}

TEST_F(Serve, BadRequestsNameTheField) {
  const json::Value p = json::Value::array({5, 17, 42});
  auto body = [&](const char* key, json::Value v) {
    json::Value b = {{"model", "tiny"}, {"prompt", p}};
    b[key] = std::move(v);
    return b;
  };
  expect_error(post(server(), "/v1/completions", body("max_tokens", -1)), 400, "max_tokens");
  expect_error(post(server(), "/v1/completions", body("temperature", -0.5)), 400, "temperature");
  expect_error(post(server(), "/v1/completions", body("top_p", 0)), 400, "top_p");
  expect_error(post(server(), "/v1/completions", body("top_p", 1.5)), 400, "top_p");
  expect_error(post(server(), "/v1/completions", body("model", "other")), 404, "model");
  expect_error(post(server(), "/v1/chat/completions", {{"model", "other"}, {"messages", json::Value::array()}}), 404,
               "model");
  expect_error(post(server(), "/v1/completions", body("prompt", json::Value::array({5, 100000}))), 400, "prompt");
  expect_error(post(server(), "/v1/completions", body("stop_token_ids", "x")), 400, "stop_token_ids");
  expect_error(post(server(), "/v1/chat/completions", {{"messages", "hi"}}), 400, "messages");
  json::Value long_prompt = json::Value::array();
  for (int i = 0; i < 200; ++i) long_prompt.push_back(i);  // --max-model-len 128
  Reply too_long = post(server(), "/v1/completions", body("prompt", long_prompt));
  expect_error(too_long, 400, "prompt");
  EXPECT_NE(too_long.body.find("128"), std::string::npos) << too_long.body;
  Reply not_json = {};
  auto r = server().client().Post("/v1/completions", "{not json", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
}

TEST(ServeDisconnect, ClientDisconnectAbortsAndFreesBlocks) {
  // A server of its own with room for a long generation (the tiny model is fast), and a raw socket: send a
  // streamed request for 500 tokens, read its first bytes, and hang up.
  ServeProcess server({"--max-model-len", "512", "--block-size", "16"});
  const std::string before = get(server, "/metrics").body;
  RawRequest raw(server, "/v1/completions",
                 greedy({{"prompt", json::Value::array({5, 17, 42})}, {"stream", true}}, 500));
  ASSERT_TRUE(raw.sent());
  char buf[512];
  ASSERT_GT(::recv(raw.fd(), buf, sizeof buf, 0), 0);
  raw.hang_up();
  std::string text;
  for (int i = 0; i < 100; ++i) {
    text = get(server, "/metrics").body;
    if (metric(text, "num_requests_running") == 0 && finished(text, "abort") == 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(finished(text, "abort"), 1) << before << "\n----\n" << text;
  EXPECT_EQ(finished(text, "length"), 0) << text;  // it did not run to its end
  EXPECT_EQ(metric(text, "num_requests_running"), 0) << text;
  EXPECT_EQ(metric(text, "kv_cache_usage_perc"), 0) << text;
  EXPECT_LT(metric(text, "generation_tokens_total"), 500) << text;
}

TEST(ServeDisconnect, UnstreamedClientDisconnectAbortsAndFreesBlocks) {
  ServeProcess server({"--max-model-len", "512", "--block-size", "16", "--max-num-seqs", "1"});
  expect_unstreamed_disconnect_aborts(server, 40);
}

TEST_F(Serve, ReturnTokenIdsGivesThePromptAndGeneratedIds) {
  json::Value body = greedy({{"prompt", json::Value::array({5, 17, 42})}, {"return_token_ids", true}}, 6);
  Reply r = post(server(), "/v1/completions", body);
  ASSERT_EQ(r.status, 200) << r.body;
  const json::Value c = r.json()["choices"][0];
  EXPECT_EQ(c["prompt_token_ids"], json::Value::array({5, 17, 42}));
  ASSERT_EQ(c["token_ids"].size(), 6u) << r.body;
  EXPECT_EQ(c["text"].get<std::string>(), tok().decode(c["token_ids"].get<std::vector<int32_t>>(), true));
  Reply chat = post(server(), "/v1/chat/completions",
                    greedy({{"messages", json::Value::array({{{"role", "user"}, {"content", "Hi"}}})},
                            {"return_token_ids", true}}, 4));
  ASSERT_EQ(chat.status, 200) << chat.body;
  EXPECT_FALSE(chat.json()["prompt_token_ids"].empty()) << chat.body;
  EXPECT_EQ(chat.json()["choices"][0]["token_ids"].size(), 4u) << chat.body;
  const Reply plain = post(server(), "/v1/completions", greedy({{"prompt", "x"}}, 2));
  EXPECT_FALSE(plain.json()["choices"][0].contains("token_ids")) << plain.body;  // only when asked
}

TEST_F(Serve, ModelsHealthTokenizeDetokenizeMetrics) {
  EXPECT_EQ(get(server(), "/health").status, 200);
  Reply models = get(server(), "/v1/models");
  ASSERT_EQ(models.status, 200);
  EXPECT_EQ(models.json()["data"][0]["id"], "tiny");
  EXPECT_EQ(models.json()["data"][0]["max_model_len"], 128);
  Reply t = post(server(), "/tokenize", {{"model", "tiny"}, {"prompt", "Hello world"}});
  ASSERT_EQ(t.status, 200) << t.body;
  std::vector<int32_t> ids = t.json()["tokens"].get<std::vector<int32_t>>();
  EXPECT_EQ(ids, tok().encode("Hello world", true));
  EXPECT_EQ(t.json()["count"], int64_t(ids.size()));
  EXPECT_EQ(t.json()["max_model_len"], 128);
  Reply d = post(server(), "/detokenize", {{"tokens", ids}});
  ASSERT_EQ(d.status, 200) << d.body;
  EXPECT_EQ(d.json()["prompt"], tok().decode(ids));
  expect_error(post(server(), "/detokenize", {{"tokens", json::Value::array({-1})}}), 400, "tokens");
  const std::string m = get(server(), "/metrics").body;
  for (const char* name : {"num_requests_running", "num_requests_waiting", "kv_cache_usage_perc", "prompt_tokens_total",
                           "generation_tokens_total", "num_preemptions_total"})
    EXPECT_GE(metric(m, name), 0) << name << "\n" << m;
  EXPECT_EQ(metric(m, "cuda_graph_replays_total"), 0) << "the CPU replays no CUDA graph\n" << m;
  for (const char* h : {"time_to_first_token_seconds", "time_per_output_token_seconds", "e2e_request_latency_seconds"}) {
    EXPECT_NE(m.find(std::string("# TYPE mlarun:") + h + " histogram"), std::string::npos) << h;
    EXPECT_NE(m.find(std::string("mlarun:") + h + "_bucket{model_name=\"tiny\",le=\"+Inf\"}"), std::string::npos) << h;
  }
}

}  // namespace
}  // namespace mlarun::testing

namespace mlarun::testing {
namespace {

TEST(ServeCli, RefusesWhatItCannotServe) {
  RunResult tp = run_mlarun("serve --model " MLARUN_TEST_DATA_DIR "/deepseek-v3-tiny --tokenizer " MLARUN_TEST_DATA_DIR
                            "/tokenizers/v3-tiny --device cpu --tp 2");
  EXPECT_EQ(tp.exit_code, 1) << tp.output;
  EXPECT_NE(tp.output.find("mpirun -np 2"), std::string::npos) << tp.output;  // TP serving runs under mpirun
  RunResult no_tok = run_mlarun("serve --model " MLARUN_TEST_DATA_DIR "/deepseek-v3-tiny --device cpu");
  EXPECT_EQ(no_tok.exit_code, 1) << no_tok.output;
  EXPECT_NE(no_tok.output.find("--tokenizer"), std::string::npos) << no_tok.output;
}

}  // namespace
}  // namespace mlarun::testing

#include "launch/serve_mirror.h"
#include "launch/serve_protocol.h"
#include "runtime/error.h"

namespace mlarun::testing {
namespace {

// Feeding a growing token list piece by piece never shows a half character (U+FFFD) and adds up to the whole text;
// text that could still become a stop string waits, and a stop string ends the text before it.
TEST(ServeTextStream, HoldsBackIncompleteUtf8AndStopPrefixes) {
  Tokenizer tok = Tokenizer::load(MLARUN_TEST_DATA_DIR "/tokenizers/v3-tiny");
  const std::vector<int32_t> ids = tok.encode("a世界 é😀 done");
  ASSERT_GT(ids.size(), 8u);
  cli::TextStream stream(tok, {});
  std::string joined;
  for (size_t k = 1; k <= ids.size(); ++k) {
    const std::string piece = stream.update({ids.begin(), ids.begin() + long(k)}, k == ids.size());
    EXPECT_EQ(piece.find("\xEF\xBF\xBD"), std::string::npos) << k;
    joined += piece;
  }
  EXPECT_EQ(joined, "a世界 é😀 done");
  cli::TextStream stopping(tok, {"😀 d"});
  joined.clear();
  for (size_t k = 1; k <= ids.size() && !stopping.stopped(); ++k)
    joined += stopping.update({ids.begin(), ids.begin() + long(k)}, k == ids.size());
  EXPECT_TRUE(stopping.stopped());
  EXPECT_EQ(joined, "a世界 é");
}

}  // namespace
}  // namespace mlarun::testing

namespace mlarun::testing {
namespace {

// Every field of every request and abort comes back bit for bit (doubles that print long, the largest seed).
TEST(ServeStepPlan, EncodingRoundTripsExactly) {
  cli::StepPlan plan;
  SamplingParams sampled;
  sampled.temperature = 0.1 + 0.2;
  sampled.top_p = 1.0 / 3.0;
  sampled.top_k = 7;
  sampled.seed = UINT64_MAX;
  sampled.max_tokens = 300;
  sampled.ignore_eos = true;
  sampled.stop_token_ids = {2, 9};
  plan.adds.push_back({0, {5, 17, 42}, sampled});
  plan.adds.push_back({1, {1}, SamplingParams{}});
  plan.aborts.push_back({0, "client disconnected \"quoted\" ü"});
  plan.step = true;
  const cli::StepPlan back = cli::decode_plan(cli::encode_plan(plan));
  ASSERT_EQ(back.adds.size(), 2u);
  const SamplingParams& p = back.adds[0].params;
  EXPECT_EQ(back.adds[0].engine_id, 0);
  EXPECT_EQ(back.adds[0].prompt, (std::vector<int32_t>{5, 17, 42}));
  EXPECT_EQ(p.temperature, sampled.temperature);  // exact, not near
  EXPECT_EQ(p.top_p, sampled.top_p);
  EXPECT_EQ(p.top_k, 7);
  EXPECT_EQ(p.seed, UINT64_MAX);
  EXPECT_EQ(p.max_tokens, 300);
  EXPECT_TRUE(p.ignore_eos);
  EXPECT_EQ(p.stop_token_ids, (std::vector<int32_t>{2, 9}));
  EXPECT_EQ(back.adds[1].engine_id, 1);
  EXPECT_EQ(back.adds[1].params.max_tokens, SamplingParams{}.max_tokens);
  ASSERT_EQ(back.aborts.size(), 1u);
  EXPECT_EQ(back.aborts[0].reason, plan.aborts[0].reason);
  EXPECT_TRUE(back.step);
  EXPECT_FALSE(back.shutdown);
  cli::StepPlan stop;
  stop.shutdown = true;
  EXPECT_TRUE(cli::decode_plan(cli::encode_plan(stop)).shutdown);
  EXPECT_THROW(cli::decode_plan("{\"adds\": []}"), Error);  // a plan missing its fields is refused by name
}

}  // namespace
}  // namespace mlarun::testing
