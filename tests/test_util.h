// Small helpers shared by the tests: a per-test scratch directory, file writing, and error-message capture.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <vector>

#include "runtime/error.h"
#include "runtime/safetensors.h"
#include "runtime/tensor.h"

// Whether this build runs under AddressSanitizer (which reserves terabytes of address space and, unless told
// otherwise, ends the process on a failed huge allocation instead of returning null).
#if defined(__SANITIZE_ADDRESS__)
#define MLARUN_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MLARUN_TEST_ASAN 1
#endif
#endif

namespace mlarun::testing {

#ifdef MLARUN_TEST_ASAN
inline constexpr bool kAsan = true;
#else
inline constexpr bool kAsan = false;
#endif

// Under AddressSanitizer a deliberate out-of-memory allocation must fail as malloc does (null), not end the
// process with ASAN's report: ctest sets ASAN_OPTIONS=allocator_may_return_null=1 for such tests
// (tests/CMakeLists.txt); run by hand without it, the allocation check is skipped with that reason.
inline bool huge_allocations_abort() {
  if (!kAsan) return false;
  const char* opts = std::getenv("ASAN_OPTIONS");
  return !opts || !std::strstr(opts, "allocator_may_return_null=1");
}


inline std::string data_dir() { return MLARUN_TEST_DATA_DIR; }
inline std::string source_dir() { return MLARUN_SOURCE_DIR; }
// Every fixture with a Hugging Face reference under data_dir(): the two tiny models, then the shape fixtures.
inline const std::vector<std::string>& reference_fixtures() {
  static const std::vector<std::string> fixtures = {
      "deepseek-v2-tiny",         "deepseek-v3-tiny",          "shapes/v2-noqlora-greedy-vdim",
      "shapes/v2-grouped-norope", "shapes/v3-nonorm-onegroup", "shapes/v3-grouped-noshared",
      "shapes/v3-rope-halves"};
  return fixtures;
}

// A fresh directory under /tmp, removed when the object goes.
class ScratchDir {
 public:
  ScratchDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = std::filesystem::temp_directory_path() /
            ("mlarun_" + std::string(info ? info->name() : "test") + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::string write(const std::string& name, const std::string& content) const {
    std::ofstream(file(name), std::ios::binary) << content;
    return file(name);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// Runs `fn` and returns the mlarun::Error message it throws ("" when it does not throw).
template <typename Fn>
std::string error_message(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Runs `fn`, expects an mlarun::Error, and checks that its message contains every one of `parts`.
template <typename Fn>
void expect_error(Fn&& fn, const std::vector<std::string>& parts) {
  std::string message = error_message(fn);
  ASSERT_FALSE(message.empty()) << "no mlarun::Error thrown";
  for (const std::string& part : parts)
    EXPECT_NE(message.find(part), std::string::npos) << "'" << part << "' missing from: " << message;
}

// The largest |a[i] - b[i]|; a NaN on either side counts as infinitely far (std::max alone would skip it).
inline float max_abs_diff(const float* a, const float* b, int64_t n) {
  float m = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float d = std::fabs(a[i] - b[i]);
    m = std::isnan(d) ? INFINITY : std::max(m, d);
  }
  return m;
}
// The bound of mlarun against a fixture's kv_quant_reference.safetensors (tests/tools/make_kv_quant_references.py)
// for prompt `p` ("prompt.{i}.") and cache dtype `dt`: 1e-3, widened to 1.5x the prompt's measured move under fp32
// noise in the latent where that is larger (a latent value on a rounding boundary: either side is right; semantic
// slips move every prompt by 1e-3 or more).
inline float kv_quant_reference_bound(const SafetensorsFile& ref, const std::string& p, const std::string& dt) {
  return std::max(1e-3f, 1.5f * ref.load(p + "flip_sensitivity_" + dt).data<float>()[0]);
}
// The same over two host f32 tensors; tensors of different sizes are infinitely far apart.
inline float max_abs_diff(const Tensor& a, const Tensor& b) {
  if (a.numel() != b.numel()) return INFINITY;
  return max_abs_diff(a.data<float>(), b.data<float>(), a.numel());
}

}  // namespace mlarun::testing

// Asserts that `stmt` throws mlarun::Error whose message contains every one of the given substrings. The parts
// are copied into std::strings first, so a temporary (std::to_string(n).c_str()) is safe to pass.
#define EXPECT_ERROR_MENTIONS(stmt, ...)                                                   \
  do {                                                                                     \
    std::string _msg = ::mlarun::testing::error_message([&] { stmt; });                   \
    EXPECT_FALSE(_msg.empty()) << #stmt " did not throw";                                  \
    for (const std::string& _part : std::initializer_list<std::string>{__VA_ARGS__})        \
      EXPECT_NE(_msg.find(_part), std::string::npos) << "message: " << _msg << "\nmissing: " << _part; \
  } while (0)
