// The step profiler on the CPU (runtime/step_profiler.h): nested regions of known busy time land, exclusively, in
// their categories and add up to the step's wall time; markers without an active profiler do nothing; a step's
// split does not carry into the next. Busy loops spin on the profiler's own clock, so each category's time is at
// least what was spent in it; the upper bounds leave room for a shared, preempted machine.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <thread>

#include "runtime/device.h"
#include "runtime/error.h"
#include "runtime/step_profiler.h"

using namespace mlarun;

namespace {

using Clock = std::chrono::steady_clock;

void busy_ms(double ms) {
  const auto until =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double, std::milli>(ms));
  while (Clock::now() < until) {
  }
}

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

// At least what was spent in the category (a preempted thread may spend longer than it spun, never less). No upper
// bound per category, so a loaded machine cannot fail it: time counted twice shows in the sum against the wall.
void expect_about(const TimeSplit& split, ProfileCategory c, double want_ms) {
  EXPECT_GE(split[c], want_ms) << profile_category_name(c);
}

}  // namespace

TEST(StepProfiler, NestedRegionsAreExclusiveAndAddUpToTheStep) {
  StepProfiler profiler;
  const auto start = Clock::now();
  profiler.begin_step();
  busy_ms(4);  // no region: the base, norm_rope_other
  {
    ProfileRegion moe(ProfileCategory::Moe);
    busy_ms(6);
    {
      ProfileRegion comm(ProfileCategory::Communication);  // pauses the MoE
      busy_ms(5);
    }
    busy_ms(4);  // the MoE again
  }
  {
    ProfileRegion attention(ProfileCategory::Attention);
    std::this_thread::sleep_for(std::chrono::milliseconds(8));  // sleeping counts: it is wall time
    profiled(ProfileCategory::DenseGemm, [] { busy_ms(3); });  // pauses the attention
    busy_ms(2);  // attention again
  }
  busy_ms(1);
  profiler.end_step();
  const double wall = ms_since(start);

  const TimeSplit split = profiler.split();
  expect_about(split, ProfileCategory::NormRopeOther, 5);
  expect_about(split, ProfileCategory::Moe, 10);
  expect_about(split, ProfileCategory::Communication, 5);
  expect_about(split, ProfileCategory::Attention, 10);
  expect_about(split, ProfileCategory::DenseGemm, 3);
  // The categories cover the step and nothing twice: their sum is the step's wall time, less the few
  // microseconds between `start` and begin_step and between end_step and `wall`.
  EXPECT_LE(split.total_ms(), wall);
  EXPECT_GT(split.total_ms(), wall - 5);
}

TEST(StepProfiler, OffByDefaultAndOutsideAStep) {
  EXPECT_EQ(StepProfiler::active(), nullptr);
  { ProfileRegion nobody(ProfileCategory::Moe); }  // no profiler: nothing to record into
  StepProfiler profiler;
  { ProfileRegion before(ProfileCategory::Moe); }  // a profiler exists but no step runs
  EXPECT_EQ(StepProfiler::active(), nullptr);
  profiler.begin_step();
  EXPECT_EQ(StepProfiler::active(), &profiler);
  busy_ms(1);
  profiler.end_step();
  EXPECT_EQ(StepProfiler::active(), nullptr);
  { ProfileRegion after(ProfileCategory::Moe); }
  const TimeSplit split = profiler.split();
  EXPECT_EQ(split[ProfileCategory::Moe], 0);
  EXPECT_GE(split[ProfileCategory::NormRopeOther], 1);
  EXPECT_EQ(split.total_ms(), split[ProfileCategory::NormRopeOther]);
}

TEST(StepProfiler, EachStepStartsFromZeroAndARegionLeftOpenIsCutAtTheEnd) {
  StepProfiler profiler;
  profiler.begin_step();
  {
    ProfileRegion moe(ProfileCategory::Moe);
    busy_ms(3);
  }
  profiler.end_step();
  EXPECT_GE(profiler.split()[ProfileCategory::Moe], 3);

  const auto step_start = Clock::now();
  profiler.begin_step();
  auto open = std::make_unique<ProfileRegion>(ProfileCategory::Attention);
  busy_ms(2);
  profiler.end_step();  // the attention region is still open: its time so far counts, the rest is dropped
  const double step_wall = ms_since(step_start);
  busy_ms(1);
  open.reset();  // its exit after the step is ignored
  const TimeSplit split = profiler.split();
  EXPECT_EQ(split[ProfileCategory::Moe], 0);
  EXPECT_GE(split[ProfileCategory::Attention], 2);
  EXPECT_LE(split.total_ms(), step_wall);  // the millisecond after end_step is not in it
}

TEST(StepProfiler, OneStepAtATimePerThread) {
  StepProfiler a, b;
  a.begin_step();
  EXPECT_THROW(b.begin_step(), Error);
  EXPECT_THROW(a.split(), Error);  // still running
  a.end_step();
  b.begin_step();
  b.end_step();
}

TEST(StepProfiler, CudaTimingNeedsAGpu) {
  if (gpu_available()) GTEST_SKIP() << "a GPU is present (tests/runtime/test_gpu_device.cpp times it)";
  StepProfiler profiler(Device::CUDA);
  EXPECT_THROW(profiler.begin_step(), Error);
}
