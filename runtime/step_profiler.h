// Where a step's time goes (`mlarun bench decode`'s split): code marks what it is doing with RAII regions
// (`ProfileRegion region(ProfileCategory::Moe)`), and the StepProfiler active on that thread gives every moment of
// the step to exactly one category. Regions nest exclusively: entering one pauses the one around it (a stack; at
// every boundary the time since the previous boundary goes to the category on top), so a collective inside the MoE
// counts as communication, not MoE, and the categories add up to the step. Time in no region goes to the step's
// base, norm_rope_other. Lives in runtime/ so every folder above can mark its own regions.
//
// Off by default: with no profiler active on the thread a region costs one thread-local pointer test.
// Timestamps: on the CPU std::chrono::steady_clock at each boundary. On CUDA a timing event recorded on the current
// stream at each boundary, from a pool reused step after step (no allocation once a step has been seen), read after
// the step's own synchronization: GPU time between boundaries, no synchronization added inside the step (its GPU
// test passed on an H200 and an H100).
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "runtime/device.h"

namespace mlarun {

enum class ProfileCategory : uint8_t { Attention, Moe, DenseGemm, NormRopeOther, Communication };
inline constexpr size_t kProfileCategoryCount = 5;
inline constexpr std::array<ProfileCategory, kProfileCategoryCount> kProfileCategories = {
    ProfileCategory::Attention, ProfileCategory::Moe, ProfileCategory::DenseGemm, ProfileCategory::NormRopeOther,
    ProfileCategory::Communication};
// "attention", "moe", "dense_gemm", "norm_rope_other", "communication" (the JSON keys).
const char* profile_category_name(ProfileCategory c);

// Milliseconds per category.
struct TimeSplit {
  std::array<double, kProfileCategoryCount> ms{};
  double& operator[](ProfileCategory c) { return ms[size_t(c)]; }
  double operator[](ProfileCategory c) const { return ms[size_t(c)]; }
  double total_ms() const;
  double share(ProfileCategory c) const;  // of the total, 0..1 (0 when nothing was timed)
  TimeSplit& operator+=(const TimeSplit& other);
};

class StepProfiler {
 public:
  explicit StepProfiler(Device device = Device::CPU);  // CUDA: throws without a GPU at the first step
  ~StepProfiler();
  StepProfiler(const StepProfiler&) = delete;
  StepProfiler& operator=(const StepProfiler&) = delete;

  // Makes this the calling thread's profiler and opens the step in the base category. One step at a time.
  void begin_step();
  // Closes the step's last interval and stops recording (regions still open are dropped).
  void end_step();
  // The last finished step's split; on CUDA it first waits for the step's last event (nothing to wait for once the
  // caller has synchronized the stream).
  TimeSplit split() const;

  // The calling thread's profiler inside a step, else null.
  static StepProfiler* active() { return active_; }
  // Region boundaries (ProfileRegion calls them); ignored outside a step.
  void enter(ProfileCategory c);
  void exit();

 private:
  void mark();  // a boundary: a timestamp; the interval since the previous one belongs to the top of the stack

  Device device_;
  bool in_step_ = false;
  std::vector<ProfileCategory> open_;       // the region stack, the base at the bottom
  std::vector<ProfileCategory> intervals_;  // intervals_[i]: between boundaries i and i + 1
  std::vector<std::chrono::steady_clock::time_point> host_times_;  // CPU: boundary i
  std::vector<DeviceEvent> events_;  // CUDA: events_[i] is boundary i; a pool, grown only
  size_t marks_ = 0;                 // boundaries recorded this step
  inline static thread_local StepProfiler* active_ = nullptr;
};

// Marks the current scope as `category` while a profiler is active on this thread.
class ProfileRegion {
 public:
  explicit ProfileRegion(ProfileCategory category) : profiler_(StepProfiler::active()) {
    if (profiler_) profiler_->enter(category);
  }
  ~ProfileRegion() {
    if (profiler_) profiler_->exit();
  }
  ProfileRegion(const ProfileRegion&) = delete;
  ProfileRegion& operator=(const ProfileRegion&) = delete;

 private:
  StepProfiler* profiler_;
};

// f() inside a region of `category` (one expression: `Tensor y = profiled(ProfileCategory::DenseGemm, [&] {...});`).
template <class F>
decltype(auto) profiled(ProfileCategory category, F&& f) {
  ProfileRegion region(category);
  return f();
}

}  // namespace mlarun
