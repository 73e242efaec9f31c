// A running `mlarun serve` for tests: started as a child process on a free port with the v3-tiny checkpoint and
// tokenizer, ready once /health answers, stopped with SIGTERM at the end; plus the small HTTP helpers the tests
// share (JSON posts and server-sent-event parsing). MLARUN_BINARY is the built binary (mlarun_uses_cli).
#pragma once

#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
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
  // `extra`: more command-line words for `mlarun serve`.
  explicit ServeProcess(std::vector<std::string> extra = {}) : port_(free_port()) {
    std::vector<std::string> args = {MLARUN_BINARY, "serve", "--model", MLARUN_TEST_DATA_DIR "/deepseek-v3-tiny",
                                     "--tokenizer", MLARUN_TEST_DATA_DIR "/tokenizers/v3-tiny", "--device", "cpu",
                                     "--port", std::to_string(port_), "--served-model-name", "tiny"};
    args.insert(args.end(), extra.begin(), extra.end());
    pid_ = ::fork();
    if (pid_ == 0) {
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
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    int status = 0;
    for (int i = 0; i < 100 && ::waitpid(pid_, &status, WNOHANG) == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status, 0);
  }
  int port() const { return port_; }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(120, 0);
    return c;
  }

 private:
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
  if (!r) return {0, "no response"};
  return {r->status, r->body};
}

inline Reply get(const ServeProcess& s, const std::string& path) {
  auto r = s.client().Get(path.c_str());
  if (!r) return {0, "no response"};
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

}  // namespace mlarun::testing
