// GPU smoke test: a tensor makes a round trip through device memory. Skips (never fails) without a usable GPU,
// so it runs on CI machines where the CUDA runtime answers "insufficient driver" or "no device".
#include <gtest/gtest.h>

#include "runtime/device.h"
#include "runtime/error.h"
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
