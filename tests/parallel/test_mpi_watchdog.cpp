// The collective watchdog and the start-up fingerprint with real ranks (under mpiexec): collectives go through
// with the watchdog on and off, a peer that is late but within the timeout is waited for, and ranks whose
// fingerprints differ all get the same error. (A peer that never arrives ends the job: mpi_watchdog_probe.)
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "parallel/bootstrap.h"
#include "parallel/fingerprint.h"
#include "parallel/mpi_communicator.h"
#include "test_util.h"

using namespace mlarun;

namespace {

void expect_collectives_work(MpiCommunicator& comm) {
  const int world = comm.world_size(), rank = comm.rank();
  Tensor t = Tensor::empty({1000}, DType::F32);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = float(rank + 1);
  comm.all_reduce_sum(t);
  EXPECT_EQ(t.data<float>()[999], float(world * (world + 1) / 2));

  Tensor local = Tensor::empty({2, 3}, DType::I32);
  for (int64_t i = 0; i < local.numel(); ++i) local.data<int32_t>()[i] = rank * 100 + int32_t(i);
  Tensor all = comm.all_gather_last_dim(local);
  ASSERT_EQ(all.shape(), (Shape{2, 3 * world}));
  EXPECT_EQ(all.data<int32_t>()[3 * (world - 1)], (world - 1) * 100);

  std::vector<int64_t> v;
  if (rank == 0) v = {4, 5, 6};
  comm.broadcast_vector(v, 0);
  EXPECT_EQ(v, (std::vector<int64_t>{4, 5, 6}));
  comm.barrier();
}

}  // namespace

TEST(MpiWatchdog, CollectivesWorkWithTheWatchdogOnAndOff) {
  MpiCommunicator comm;
  EXPECT_EQ(comm.collective_timeout(), kDefaultCollectiveTimeoutSeconds);
  expect_collectives_work(comm);
  comm.set_collective_timeout(0);  // off: the blocking MPI collectives
  EXPECT_EQ(comm.collective_timeout(), 0);
  expect_collectives_work(comm);
  EXPECT_ERROR_MENTIONS(comm.set_collective_timeout(-1), "-1", ">= 0");
}

TEST(MpiWatchdog, ALatePeerWithinTheTimeoutIsWaitedFor) {
  MpiCommunicator comm;
  comm.set_collective_timeout(10);
  if (comm.rank() == comm.world_size() - 1) std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const auto start = std::chrono::steady_clock::now();
  Tensor t = Tensor::empty({16}, DType::F32);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = 1.0f;
  comm.all_reduce_sum(t);
  EXPECT_EQ(t.data<float>()[0], float(comm.world_size()));
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (comm.rank() == 0) {
    EXPECT_GT(waited, 1.0);  // it did wait, through the sleeping phase, and came back
  }
}

TEST(MpiWatchdog, SmallAllReduceLatencyOnAndOff) {
  // Not a pass/fail bound (this machine may be oversubscribed); printed so a change in cost is visible.
  MpiCommunicator comm;
  Tensor t = Tensor::empty({64}, DType::F32);
  auto time_it = [&](double timeout) {
    comm.set_collective_timeout(timeout);
    comm.barrier();
    const int n = 300;
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i) comm.all_reduce_sum(t);
    return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count() / n;
  };
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = 0.0f;
  const double off = time_it(0), on = time_it(600);
  if (comm.rank() == 0)
    std::printf("all_reduce of 64 f32 on %d ranks: %.1f us blocking, %.1f us watched\n", comm.world_size(), off, on);
}

TEST(MpiWatchdog, FingerprintsThatAgreePass) {
  EXPECT_NO_THROW(check_same_fingerprint({"/m", 99, "tp=2 block-size=8"}, MPI_COMM_WORLD, 30));
}

TEST(MpiWatchdog, EveryRankFailsWhenOneRankDiffers) {
  DistributedContext ctx = init_distributed();
  const int odd = ctx.world_size - 1;
  RunFingerprint mine{ctx.rank == odd ? "/m/v3" : "/m/v2", ctx.rank == odd ? 2u : 1u, "tp=2"};
  const std::string expected = "rank " + std::to_string(odd) + "'s model config differs from rank 0's (/m/v3 vs /m/v2)";
  EXPECT_ERROR_MENTIONS(check_same_fingerprint(mine, MPI_COMM_WORLD, 30), expected.c_str());

  RunFingerprint options{"/m", 5, ctx.rank == odd ? "tp=2 block-size=16" : "tp=2 block-size=8"};
  EXPECT_ERROR_MENTIONS(check_same_fingerprint(options, MPI_COMM_WORLD, 30), "options differ", "block-size 16 vs 8");
}
