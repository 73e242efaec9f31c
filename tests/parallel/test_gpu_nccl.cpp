// The NCCL communicator at world size 1 on a real GPU: every collective must hand back exactly what it was given
// (f32 and bf16, device and host tensors). Skips, never fails, without a usable GPU or without a CUDA build.
// MPI starts as a singleton here (no mpiexec), which is all NcclCommunicator needs to share its unique id.
#include <gtest/gtest.h>

#include <cstring>

#include "parallel/bootstrap.h"
#include "runtime/device.h"
#include "runtime/error.h"

using namespace mlarun;

namespace {

Tensor sample(const Shape& shape) {
  std::vector<float> values(size_t(checked_numel(shape)));
  for (size_t i = 0; i < values.size(); ++i) values[i] = float(int(i * 7 % 23) - 11) * 0.25f;
  return Tensor::from_f32(shape, values);
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  Tensor ha = a.to(Device::CPU), hb = b.to(Device::CPU);
  return ha.shape() == hb.shape() && ha.dtype() == hb.dtype() && std::memcmp(ha.raw(), hb.raw(), ha.nbytes()) == 0;
}

std::unique_ptr<Communicator> nccl_or_skip_reason(std::string& reason) {
#ifdef MLARUN_WITH_CUDA
  if (!gpu_available()) {
    reason = "no usable GPU: " + gpu_info().reason;
    return nullptr;
  }
  return make_communicator("nccl", init_distributed());
#else
  reason = "built without CUDA";
  return nullptr;
#endif
}

}  // namespace

#define NCCL_OR_SKIP(comm)                                         \
  std::string skip_reason;                                         \
  std::unique_ptr<Communicator> comm = nccl_or_skip_reason(skip_reason); \
  if (!comm) GTEST_SKIP() << skip_reason

TEST(GpuNccl, AllReduceAtWorldSizeOneIsTheIdentity) {
  NCCL_OR_SKIP(comm);
  EXPECT_STREQ(comm->backend(), "nccl");
  EXPECT_EQ(comm->world_size(), 1);
  Tensor host = sample({5, 7});
  Tensor dev = host.to(Device::CUDA);
  comm->all_reduce_sum(dev);
  EXPECT_TRUE(same_bytes(dev, host));

  Tensor bf16 = host.to_dtype(DType::BF16);
  Tensor dev_bf16 = bf16.to(Device::CUDA);
  comm->all_reduce_sum(dev_bf16);
  EXPECT_TRUE(same_bytes(dev_bf16, bf16));

  Tensor staged = host.clone();  // a host tensor makes a round trip through the GPU
  comm->all_reduce_sum(staged);
  EXPECT_TRUE(same_bytes(staged, host));
}

TEST(GpuNccl, AllGatherAtWorldSizeOneIsTheIdentity) {
  NCCL_OR_SKIP(comm);
  for (const Shape& shape : {Shape{3, 5}, Shape{1, 8}, Shape{2, 3, 4}}) {
    Tensor host = sample(shape);
    Tensor gathered = comm->all_gather_last_dim(host.to(Device::CUDA));
    EXPECT_EQ(gathered.device(), Device::CUDA);
    EXPECT_TRUE(same_bytes(gathered, host)) << shape_str(shape);
    Tensor bf16 = host.to_dtype(DType::BF16);
    EXPECT_TRUE(same_bytes(comm->all_gather_last_dim(bf16.to(Device::CUDA)), bf16)) << shape_str(shape);
    EXPECT_TRUE(same_bytes(comm->all_gather_last_dim(host), host)) << shape_str(shape) << " from the host";
  }
}

TEST(GpuNccl, BroadcastAndBarrier) {
  NCCL_OR_SKIP(comm);
  std::vector<int32_t> v{3, 1, 4, 1, 5};
  comm->broadcast_vector(v, 0);  // host memory: through MPI
  EXPECT_EQ(v, (std::vector<int32_t>{3, 1, 4, 1, 5}));
  Tensor host = sample({16});
  Tensor dev = host.to(Device::CUDA);
  comm->broadcast(dev.raw(), dev.nbytes(), 0);  // device memory: through NCCL
  EXPECT_TRUE(same_bytes(dev, host));
  comm->barrier();
}

TEST(GpuNccl, UnsupportedDtypeIsAClearError) {
  NCCL_OR_SKIP(comm);
  Tensor ints = Tensor::zeros({4}, DType::I32, Device::CUDA);
  EXPECT_THROW(comm->all_reduce_sum(ints), Error);
}
