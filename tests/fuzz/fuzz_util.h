// Shared by the libFuzzer harnesses: the readers under test take paths, so each process gets a private scratch
// directory to write inputs into; the config readers warn on std::cerr, which would drown libFuzzer's output, so
// the harnesses silence it; and FUZZ_CHECK turns a broken invariant into a crash libFuzzer records.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <streambuf>
#include <string>

namespace mlarun::fuzz {

// A directory of its own for this process under $TMPDIR (or /tmp), removed at exit.
inline const std::string& scratch_dir() {
  static const std::string dir = [] {
    const char* base = std::getenv("TMPDIR");
    std::string templ = std::string(base && *base ? base : "/tmp") + "/mlarun-fuzz-XXXXXX";
    if (!mkdtemp(templ.data())) {
      std::perror("mlarun fuzz: mkdtemp");
      std::abort();
    }
    return templ;
  }();
  static const bool cleanup = [] {
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(scratch_dir(), ec);
    });
    return true;
  }();
  (void)cleanup;
  return dir;
}

// Writes the input to `name` inside the scratch directory (replacing it) and returns the path.
inline std::string write_input(const std::string& name, const uint8_t* data, size_t size) {
  std::string path = scratch_dir() + "/" + name;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || (size && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
    std::perror(("mlarun fuzz: writing " + path).c_str());
    std::abort();
  }
  return path;
}

// Sends std::cerr nowhere (warnings about unknown keys on every input); sanitizer reports still reach stderr.
inline void silence_cerr() {
  struct NullBuf : std::streambuf {
    int overflow(int c) override { return c == traits_type::eof() ? 0 : c; }
  };
  static NullBuf null_buf;
  std::cerr.rdbuf(&null_buf);
}

}  // namespace mlarun::fuzz

// An invariant the code promises: a failure prints `what` and aborts, which libFuzzer reports as a crash.
#define FUZZ_CHECK(cond, what)                                                         \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      std::fprintf(stderr, "FUZZ_CHECK failed: %s: %s\n", #cond, std::string(what).c_str()); \
      std::abort();                                                                    \
    }                                                                                  \
  } while (0)
