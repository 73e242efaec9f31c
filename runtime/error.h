// One exception type for every user-facing failure (bad config, malformed file, impossible shape), so the CLI
// can print the message and exit non-zero, and tests can assert on what the message names.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace mlarun {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

// Throws mlarun::Error built from the streamed arguments: fail("file ", path, ": key '", key, "' ...").
template <typename... Args>
[[noreturn]] void fail(const Args&... args) {
  throw Error(detail::concat(args...));
}

}  // namespace mlarun

// Precondition check at an API boundary: MLARUN_CHECK(n > 0, "n must be positive, got ", n).
#define MLARUN_CHECK(cond, ...)                       \
  do {                                                \
    if (!(cond)) ::mlarun::fail(__VA_ARGS__);          \
  } while (0)
