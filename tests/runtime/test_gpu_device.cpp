// GPU smoke tests: a tensor makes a round trip through device memory; the step profiler times with events. Skips
// (never fails) without a usable GPU, so it runs on CI machines where the CUDA runtime answers "insufficient driver"
// or "no device".
#include <gtest/gtest.h>

#include <chrono>

#include "runtime/device.h"
#include "runtime/device_allocator.h"
#include "runtime/error.h"
#include "runtime/step_profiler.h"
#include "runtime/tensor.h"

using namespace mlarun;

TEST(GpuDevice, ProbeNeverThrows) {
  const GpuInfo& info = gpu_info();
  if (!info.available) {
    EXPECT_FALSE(info.reason.empty());
  }
}

TEST(GpuDevice, TensorRoundTripThroughDeviceMemory) {
  if (!gpu_available()) GTEST_SKIP() << "no usable GPU: " << gpu_info().reason;
  Tensor host = Tensor::from_f32({4, 3}, {1, -2, 3, 4.5f, 5, 6, 7, 8, 9, 10, 11, -12});
  Tensor dev = host.to(Device::CUDA);
  EXPECT_EQ(dev.device(), Device::CUDA);
  Tensor back = dev.rows(1, 2).to(Device::CPU);
  ASSERT_EQ(back.numel(), 6);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(back.data<float>()[i], host.data<float>()[3 + i]);
}

TEST(GpuDevice, WithoutGpuDeviceAllocationIsAClearError) {
  if (gpu_available()) GTEST_SKIP() << "a GPU is present";
  EXPECT_THROW(Tensor::empty({4}, DType::F32, Device::CUDA), Error);
}

// The step profiler's CUDA path: regions timed by events on the current stream, read after the step's own
// synchronization; the second step reuses the first one's events.
// A retained stream's free blocks survive empty_cache (CUDA graphs captured there still write into them) and are
// reused from the cache; release_retained gives them back to the driver.
TEST(GpuDevice, RetainedStreamBlocksSurviveEmptyCache) {
  if (!gpu_available()) GTEST_SKIP() << "no usable GPU: " << gpu_info().reason;
  DeviceAllocator& alloc = DeviceAllocator::instance();
  CudaStream stream(/*blocking=*/true);
  alloc.retain_cached(stream.handle());
  void* p = alloc.allocate(size_t(3) << 20, stream.handle());
  alloc.release(p);
  alloc.empty_cache();
  const DeviceMemoryStats before = alloc.stats();
  void* q = alloc.allocate(size_t(3) << 20, stream.handle());
  EXPECT_EQ(q, p) << "the retained block came back from the cache";
  EXPECT_EQ(alloc.stats().device_mallocs, before.device_mallocs);
  alloc.release(q);
  alloc.release_retained(stream.handle());
  EXPECT_EQ(alloc.stats().device_frees, before.device_frees + 1) << "given back to the driver";
}

TEST(GpuDevice, StepProfilerTimesRegionsWithEvents) {
  if (!gpu_available()) GTEST_SKIP() << "no usable GPU: " << gpu_info().reason;
  Tensor buffer = Tensor::empty({int64_t(64) << 20}, DType::F32, Device::CUDA);  // 256 MiB
  const auto zero = [&](int times) {
    for (int i = 0; i < times; ++i) device_memset_zero(buffer.raw(), buffer.nbytes());
  };
  StepProfiler profiler(Device::CUDA);
  for (int step = 0; step < 2; ++step) {
    synchronize_stream();
    const auto start = std::chrono::steady_clock::now();
    profiler.begin_step();
    {
      ProfileRegion moe(ProfileCategory::Moe);
      zero(4);
      ProfileRegion comm(ProfileCategory::Communication);
      zero(1);
    }
    profiled(ProfileCategory::Attention, [&] { zero(2); });
    profiler.end_step();
    synchronize_stream();
    const double wall = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    const TimeSplit split = profiler.split();
    EXPECT_GT(split[ProfileCategory::Communication], 0) << "step " << step;
    EXPECT_GT(split[ProfileCategory::Moe], 2 * split[ProfileCategory::Communication]) << "step " << step;
    EXPECT_GT(split[ProfileCategory::Attention], split[ProfileCategory::Communication]) << "step " << step;
    EXPECT_EQ(split[ProfileCategory::DenseGemm], 0) << "step " << step;
    EXPECT_LE(split.total_ms(), wall + 0.05) << "step " << step;
  }
}
