// Running the `mlarun` binary from a test: its exit code and everything it printed (stdout and stderr).
// The test target defines MLARUN_BINARY as the path of the built binary.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <memory>
#include <string>

namespace mlarun::testing {

struct RunResult {
  int exit_code;
  std::string output;  // stdout and stderr together
};

inline RunResult run_mlarun(const std::string& args) {
  std::string cmd = std::string(MLARUN_BINARY) + " " + args + " 2>&1";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(cmd.c_str(), "r"), pclose);
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe.get())) > 0) out.append(buf.data(), n);
  int status = pclose(pipe.release());
  return {WEXITSTATUS(status), out};
}

}  // namespace mlarun::testing
