// `mlarun serve` across ranks (`mpirun -np 2 mlarun serve --tp 2 --comm mpi`, rank 0 on HTTP, rank 1 following
// its engine through step plans): the same text and token ids as one rank for greedy, seeded sampled and chat
// requests, sent one by one, all at once, and streamed (tp 2, and tp 2 with dcp 2); /metrics; idle past the
// collective timeout (the heartbeat); SIGTERM to rank 0 or to mpirun ending every rank cleanly; and a
// non-streamed request whose client leaves being aborted on every rank.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "cli/serve_fixture.h"

namespace mlarun::testing {
namespace {

const std::vector<std::string> kOptions = {"--max-model-len", "256", "--block-size", "16", "--max-num-seqs", "16"};

struct Probe {
  const char* path;
  json::Value body;
  bool one_choice = true;  // a list of prompts streams its choices one after another: not compared as one text
  bool chat() const { return std::string(path) == "/v1/chat/completions"; }
};

json::Value sampled(json::Value body, double temperature, double top_p, int64_t top_k, uint64_t seed) {
  body = greedy(std::move(body), 16);
  body["temperature"] = temperature;
  body["top_p"] = top_p;
  body["top_k"] = top_k;
  body["seed"] = seed;
  return body;
}

// Greedy and seeded sampled completions, on ids and on text, chat both ways, and a list of two prompts.
std::vector<Probe> probes() {
  const json::Value hi = json::Value::array({{{"role", "user"}, {"content", "Hi there, how are you?"}}});
  std::vector<Probe> p = {
      {"/v1/completions", greedy({{"prompt", json::Value::array({5, 17, 42, 99, 7, 300})}}, 12)},
      {"/v1/completions", greedy({{"prompt", "The quick brown fox"}}, 20)},
      {"/v1/completions", sampled({{"prompt", "The quick brown fox"}}, 0.8, 0.9, 20, 7)},
      {"/v1/completions", sampled({{"prompt", json::Value::array({9, 1, 400, 22, 37})}}, 1.3, 1.0, 0, 123456789012)},
      {"/v1/completions", sampled({{"prompt", "Hello"}}, 0.7, 0.5, 0, 3)},
      {"/v1/completions", greedy({{"prompt", json::Value::array({"Hello world", json::Value::array({5, 17})})}}, 8),
       false},
      {"/v1/chat/completions", greedy({{"messages", hi}}, 12)},
      {"/v1/chat/completions", sampled({{"messages", hi}}, 0.9, 0.95, 50, 11)},
  };
  for (Probe& probe : p) probe.body["return_token_ids"] = true;
  return p;
}

// What must be equal across servers: each choice's text, token ids and finish reason.
json::Value outcome(const Reply& r, bool chat) {
  if (r.status != 200) return {{"status", r.status}, {"body", r.body}};
  const json::Value reply = r.json();
  json::Value out = json::Value::array();
  for (const json::Value& c : reply["choices"])
    out.push_back({{"text", chat ? c["message"]["content"] : c["text"]}, {"token_ids", c["token_ids"]},
                   {"finish_reason", c["finish_reason"]}});
  return out;
}

std::vector<json::Value> one_by_one(const ServeProcess& server, const std::vector<Probe>& ps) {
  std::vector<json::Value> out;
  for (const Probe& p : ps) out.push_back(outcome(post(server, p.path, p.body), p.chat()));
  return out;
}

// Every probe `copies` times, all in flight together.
std::vector<json::Value> all_at_once(const ServeProcess& server, const std::vector<Probe>& ps, int copies) {
  std::vector<json::Value> out(ps.size() * size_t(copies));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < out.size(); ++i)
    threads.emplace_back([&, i] {
      const Probe& p = ps[i % ps.size()];
      out[i] = outcome(post(server, p.path, p.body), p.chat());
    });
  for (auto& t : threads) t.join();
  return out;
}

void expect_same_as_one_rank(const std::vector<std::string>& parallel_options) {
  const std::vector<Probe> ps = probes();
  std::vector<json::Value> want;
  {
    ServeProcess one(kOptions);
    want = one_by_one(one, ps);
  }
  for (const json::Value& w : want) ASSERT_TRUE(w.is_array()) << json::dump(w);  // every probe succeeded
  std::vector<std::string> options = kOptions;
  options.insert(options.end(), parallel_options.begin(), parallel_options.end());
  ServeProcess tp(options, 2);
  const std::vector<json::Value> got = one_by_one(tp, ps);
  for (size_t i = 0; i < ps.size(); ++i)
    EXPECT_EQ(got[i], want[i]) << "probe " << i << ": " << json::dump(ps[i].body);
  const std::vector<json::Value> together = all_at_once(tp, ps, 3);
  for (size_t i = 0; i < together.size(); ++i)
    EXPECT_EQ(together[i], want[i % ps.size()]) << "concurrent probe " << i << ": "
                                                << json::dump(ps[i % ps.size()].body);
  for (size_t i = 0; i < ps.size(); ++i) {
    if (!ps[i].one_choice) continue;
    json::Value body = ps[i].body;
    body["stream"] = true;
    body.erase("return_token_ids");
    const Streamed s = read_stream(post(tp, ps[i].path, body), ps[i].chat());
    EXPECT_TRUE(s.done) << "stream " << i;
    EXPECT_EQ(s.text, want[i][0]["text"].get<std::string>()) << "stream " << i << ": " << json::dump(body);
  }
  const std::string m = get(tp, "/metrics").body;
  EXPECT_EQ(metric(m, "num_requests_running"), 0) << m;
  EXPECT_EQ(metric(m, "kv_cache_usage_perc"), 0) << m;
  EXPECT_GT(metric(m, "generation_tokens_total"), 0) << m;
  EXPECT_EQ(finished(m, "abort"), 0) << m;
}

TEST(ServeTensorParallel, Tp2GivesWhatOneRankGives) { expect_same_as_one_rank({}); }

TEST(ServeTensorParallel, Tp2Dcp2GivesWhatOneRankGives) { expect_same_as_one_rank({"--dcp", "2"}); }

// Idle for more than twice --collective-timeout, rank 1 waiting for a plan all along: the heartbeats keep the
// watchdog quiet, and the next request is served.
TEST(ServeTensorParallel, IdleLongerThanTheCollectiveTimeout) {
  ServeProcess tp({"--max-model-len", "128", "--collective-timeout", "2"}, 2);
  std::this_thread::sleep_for(std::chrono::seconds(5));
  Reply r = post(tp, "/v1/completions", greedy({{"prompt", json::Value::array({5, 17, 42})}}, 4));
  EXPECT_EQ(r.status, 200) << r.body;
  int status = 0;
  EXPECT_EQ(::waitpid(tp.pid(), &status, WNOHANG), 0) << "mpirun ended while idle";
}

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// SIGTERM to rank 0 (as a supervisor that knows the server's pid sends it): rank 0 stops HTTP and sends the
// shutdown plan, and every rank exits 0, so mpirun does too.
TEST(ServeTensorParallel, SigtermToRankZeroEndsEveryRankWithZero) {
  ServeProcess tp({"--max-model-len", "128"}, 2);
  ASSERT_EQ(post(tp, "/v1/completions", greedy({{"prompt", "Hi"}}, 4)).status, 200);  // rank 1 is following
  const auto start = std::chrono::steady_clock::now();
  const int status = tp.stop_rank(0, SIGTERM, 15);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_NE(status, -2) << "no rank 0 among mpirun's children";
  ASSERT_NE(status, -1) << "mpirun did not end within 15 s";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "mpirun's wait status " << status;
  EXPECT_LT(seconds, 5.0);
}

// SIGTERM or SIGINT to mpirun: it forwards SIGTERM to every rank; rank 0 shuts down, rank 1 (which ignores it)
// leaves at rank 0's shutdown plan, both ending their command normally (each says so) well before mpirun's
// SIGKILL. mpirun itself exits 1 whenever it was signalled (Open MPI's rule), so its status proves nothing here.
TEST(ServeTensorParallel, SignalToMpirunEndsEveryRankCleanly) {
  for (int sig : {SIGTERM, SIGINT}) {
    const std::string log = ::testing::TempDir() + "serve_tp_signal_" + std::to_string(sig) + ".log";
    {
      ServeProcess tp({"--max-model-len", "128"}, 2, log);
      ASSERT_EQ(post(tp, "/v1/completions", greedy({{"prompt", "Hi"}}, 4)).status, 200);
      const auto start = std::chrono::steady_clock::now();
      ASSERT_NE(tp.stop(sig, 15), -1) << "mpirun did not end within 15 s after signal " << sig;
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      EXPECT_LT(seconds, 8.0) << "signal " << sig;
    }
    const std::string text = read_file(log);
    EXPECT_NE(text.find("mlarun: serve: stopped"), std::string::npos) << "signal " << sig << ":\n" << text;
    EXPECT_NE(text.find("mlarun: rank 1: serve: stopped with rank 0"), std::string::npos)
        << "signal " << sig << ":\n" << text;
    std::remove(log.c_str());
  }
}

TEST(ServeTensorParallel, UnstreamedClientDisconnectAbortsOnEveryRank) {
  ServeProcess tp({"--max-model-len", "512", "--block-size", "16", "--max-num-seqs", "1"}, 2);
  expect_unstreamed_disconnect_aborts(tp, 40);
  // Rank 1 took the same aborts: the next request still runs (a follower that diverged would end the job).
  EXPECT_EQ(post(tp, "/v1/completions", greedy({{"prompt", "Hi"}}, 4)).status, 200);
}

}  // namespace
}  // namespace mlarun::testing
