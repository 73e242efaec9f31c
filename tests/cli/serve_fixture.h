// A running `mlarun serve` for tests: started as a child process on a free port with the v3-tiny checkpoint and
// tokenizer (alone, or under mpirun as N tensor-parallel ranks when the target defines MLARUN_MPIEXEC), ready
// once /health answers, stopped with SIGTERM at the end; plus the small HTTP helpers the tests share (JSON posts,
// server-sent-event parsing, /metrics values) and the client-disconnect check both serve tests run.
// MLARUN_BINARY is the built binary (mlarun_uses_cli).
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "runtime/json.h"

namespace mlarun::testing {

inline int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

class ServeProcess {
 public:
  // `extra`: more command-line words for `mlarun serve`. `ranks` > 1: under mpirun with --tp `ranks` --comm mpi.
  // `log_path`: where the server's stdout and stderr go (empty: the test's own).
  explicit ServeProcess(std::vector<std::string> extra = {}, int ranks = 1, const std::string& log_path = "")
      : port_(free_port()) {
    std::vector<std::string> args;
    if (ranks > 1) {
#ifdef MLARUN_MPIEXEC
      args = {MLARUN_MPIEXEC, "--allow-run-as-root", "--oversubscribe", "-np", std::to_string(ranks)};
#else
      throw std::runtime_error("ServeProcess: several ranks need MLARUN_MPIEXEC (the test target defines it)");
#endif
    }
    const std::vector<std::string> serve = {MLARUN_BINARY, "serve", "--model", MLARUN_TEST_DATA_DIR "/deepseek-v3-tiny",
                                            "--tokenizer", MLARUN_TEST_DATA_DIR "/tokenizers/v3-tiny", "--device",
                                            "cpu", "--port", std::to_string(port_), "--served-model-name", "tiny"};
    args.insert(args.end(), serve.begin(), serve.end());
    if (ranks > 1) args.insert(args.end(), {"--tp", std::to_string(ranks), "--comm", "mpi"});
    args.insert(args.end(), extra.begin(), extra.end());
    pid_ = ::fork();
    if (pid_ == 0) {
      if (!log_path.empty()) {
        const int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        ::dup2(fd, 1);
        ::dup2(fd, 2);
      }
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    httplib::Client c("127.0.0.1", port_);
    for (int i = 0; i < 600; ++i) {  // up to 60 s
      if (auto r = c.Get("/health"); r && r->status == 200) return;
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("mlarun serve exited before answering /health");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    throw std::runtime_error("mlarun serve did not answer /health within 60 s");
  }
  ~ServeProcess() {
    if (pid_ > 0) stop(SIGTERM, 10.0);
  }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }  // the server, or mpirun
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(120, 0);
    return c;
  }
  // Sends `sig` to the process (mpirun under several ranks) and waits up to `seconds` for it to end: its wait
  // status, or -1 when it had to be killed.
  int stop(int sig, double seconds) { return signal_and_wait(pid_, sig, seconds); }
  // Sends `sig` to one rank of an mpirun launch (a child of mpirun whose OMPI_COMM_WORLD_RANK is `rank`), then
  // waits for mpirun as stop() does; -2 when no such rank was found.
  int stop_rank(int rank, int sig, double seconds) {
    const pid_t child = find_rank(rank);
    if (child <= 0) return -2;
    ::kill(child, sig);
    return signal_and_wait(pid_, 0, seconds);
  }

 private:
  int signal_and_wait(pid_t pid, int sig, double seconds) {
    if (pid <= 0) return -1;
    if (sig) ::kill(pid, sig);
    int status = 0;
    for (int i = 0; i < int(seconds * 10); ++i) {
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        pid_ = -1;
        return status;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    pid_ = -1;
    return -1;
  }
  pid_t find_rank(int rank) const {
    const std::string want = "OMPI_COMM_WORLD_RANK=" + std::to_string(rank);
    DIR* proc = ::opendir("/proc");
    pid_t found = -1;
    while (dirent* e = proc ? ::readdir(proc) : nullptr) {
      const pid_t pid = pid_t(std::atoi(e->d_name));
      if (pid <= 0) continue;
      std::ifstream stat("/proc/" + std::string(e->d_name) + "/stat");
      std::string line;
      std::getline(stat, line);
      const size_t close = line.rfind(')');  // "pid (comm) state ppid ..."
      if (close == std::string::npos) continue;
      std::istringstream rest(line.substr(close + 2));
      char state = 0;
      pid_t ppid = 0;
      rest >> state >> ppid;
      if (ppid != pid_) continue;
      std::ifstream env("/proc/" + std::string(e->d_name) + "/environ");
      for (std::string var; std::getline(env, var, '\0');)
        if (var == want) found = pid;
    }
    if (proc) ::closedir(proc);
    return found;
  }

  int port_;
  pid_t pid_ = -1;
};

struct Reply {
  int status = 0;
  std::string body;
  json::Value json() const { return json::parse(body, "reply"); }
};

inline Reply post(const ServeProcess& s, const std::string& path, const json::Value& body) {
  auto r = s.client().Post(path.c_str(), json::dump(body), "application/json");
  if (!r) return {0, "no response: " + httplib::to_string(r.error())};
  return {r->status, r->body};
}

inline Reply get(const ServeProcess& s, const std::string& path) {
  auto r = s.client().Get(path.c_str());
  if (!r) return {0, "no response: " + httplib::to_string(r.error())};
  return {r->status, r->body};
}

// The `data:` payloads of a server-sent-event body, in order ("[DONE]" included).
inline std::vector<std::string> sse_data(const std::string& body) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find('\n', pos);
    if (end == std::string::npos) end = body.size();
    std::string line = body.substr(pos, end - pos);
    if (line.rfind("data: ", 0) == 0) out.push_back(line.substr(6));
    pos = end + 1;
  }
  return out;
}

// A greedy request for the tiny model: temperature 0, exactly `max_tokens` tokens.
inline json::Value greedy(json::Value body, int64_t max_tokens) {
  body["model"] = "tiny";
  body["temperature"] = 0;
  body["max_tokens"] = max_tokens;
  body["ignore_eos"] = true;
  return body;
}

// The concatenated text of a stream, its finish reason and the usage chunk (null when absent).
struct Streamed {
  std::string text, finish_reason;
  json::Value usage;
  bool done = false;
};
inline Streamed read_stream(const Reply& r, bool chat) {
  Streamed s;
  for (const std::string& d : sse_data(r.body)) {
    if (d == "[DONE]") {
      s.done = true;
      continue;
    }
    EXPECT_FALSE(s.done) << "data after [DONE]";
    json::Value v = json::parse(d, "chunk");
    if (v.contains("usage") && !v["usage"].is_null()) s.usage = v["usage"];
    for (auto& c : v["choices"]) {
      if (chat) {
        if (c["delta"].contains("content")) s.text += c["delta"]["content"].get<std::string>();
      } else {
        s.text += c["text"].get<std::string>();
      }
      if (!c["finish_reason"].is_null()) s.finish_reason = c["finish_reason"].get<std::string>();
    }
  }
  return s;
}

// A gauge or counter of /metrics (-1 when absent).
inline double metric(const std::string& text, const std::string& name) {
  const std::string key = "mlarun:" + name + "{";
  size_t pos = text.find("\n" + key);
  if (pos == std::string::npos) return -1;
  size_t sp = text.find("} ", pos);
  return std::stod(text.substr(sp + 2, text.find('\n', sp) - sp - 2));
}

// Requests finished with `reason` (request_success_total).
inline double finished(const std::string& metrics, const std::string& reason) {
  const std::string key = "finished_reason=\"" + reason + "\"} ";
  size_t pos = metrics.find(key);
  return pos == std::string::npos ? 0 : std::stod(metrics.substr(pos + key.size()));
}

// A raw connection that sends one HTTP request and can hang up without reading the answer.
class RawRequest {
 public:
  RawRequest(const ServeProcess& server, const std::string& path, const json::Value& body) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(uint16_t(server.port()));
    const std::string text = json::dump(body);
    const std::string req = "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                            "Content-Length: " + std::to_string(text.size()) + "\r\n\r\n" + text;
    sent_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
            ::send(fd_, req.data(), req.size(), 0) == ssize_t(req.size());
  }
  ~RawRequest() { hang_up(); }
  bool sent() const { return sent_; }
  int fd() const { return fd_; }
  void hang_up() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
  bool sent_ = false;
};

// A non-streamed request whose client hangs up is aborted, its blocks freed, long before it would have ended:
// `prompts` prompts of 500 tokens each, run one at a time (the server runs with --max-num-seqs 1 and
// --max-model-len 512), and the client leaves once the first one runs.
inline void expect_unstreamed_disconnect_aborts(const ServeProcess& server, int prompts) {
  json::Value list = json::Value::array();
  for (int i = 0; i < prompts; ++i) list.push_back(json::Value::array({5, 17, 42 + i}));
  RawRequest raw(server, "/v1/completions", greedy({{"prompt", list}}, 500));
  ASSERT_TRUE(raw.sent());
  std::string text;
  for (int i = 0; i < 200 && metric(text, "num_requests_running") != 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    text = get(server, "/metrics").body;
  }
  ASSERT_EQ(metric(text, "num_requests_running"), 1) << text;
  raw.hang_up();
  const auto left = std::chrono::steady_clock::now();
  for (int i = 0; i < 100; ++i) {
    text = get(server, "/metrics").body;
    if (metric(text, "num_requests_running") == 0 && metric(text, "num_requests_waiting") == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - left).count();
  EXPECT_EQ(metric(text, "num_requests_running"), 0) << text;
  EXPECT_EQ(metric(text, "num_requests_waiting"), 0) << text;
  EXPECT_EQ(metric(text, "kv_cache_usage_perc"), 0) << text;
  EXPECT_EQ(finished(text, "abort") + finished(text, "length"), prompts) << text;
  EXPECT_LT(finished(text, "length"), prompts / 2) << "the request mostly ran to its end\n" << text;
  EXPECT_LT(metric(text, "generation_tokens_total"), prompts * 500 / 2) << text;
  EXPECT_LT(seconds, 5.0) << "the abort took " << seconds << " s";
}

}  // namespace mlarun::testing
