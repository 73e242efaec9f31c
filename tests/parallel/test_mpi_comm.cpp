// The MPI communicator's collectives, checked against values every rank can compute by itself (run under
// mpiexec with 2 and 4 ranks). Every test runs the same collectives on every rank in the same order, and uses
// EXPECT (not ASSERT) before a collective, so a failure on one rank can never leave the others waiting.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "parallel/bootstrap.h"
#include "parallel/mpi_communicator.h"
#include "runtime/device.h"
#include "test_util.h"

using namespace mlarun;

namespace {

// Element i on rank r: (r + 1) * (i + 1) + i / 2. Small integers and halves, so float sums are exact.
float rank_value(int rank, int64_t i) { return float(rank + 1) * float(i + 1) + 0.5f * float(i); }

float expected_sum(int world, int64_t i) {
  return float(world * (world + 1) / 2) * float(i + 1) + float(world) * 0.5f * float(i);
}

Tensor rank_tensor(int rank, int64_t n) {
  Tensor t = Tensor::empty({n}, DType::F32);
  for (int64_t i = 0; i < n; ++i) t.data<float>()[i] = rank_value(rank, i);
  return t;
}

// local[row, col] on rank r: r * 1000 + row * 10 + col.
Tensor gather_input(int rank, int64_t rows, int64_t cols) {
  Tensor t = Tensor::empty({rows, cols}, DType::I64);
  for (int64_t row = 0; row < rows; ++row)
    for (int64_t col = 0; col < cols; ++col) t.data<int64_t>()[row * cols + col] = rank * 1000 + row * 10 + col;
  return t;
}

void expect_gathered(const Tensor& out, int world, int64_t rows, int64_t cols) {
  ASSERT_EQ(out.shape(), (Shape{rows, cols * world}));
  for (int64_t row = 0; row < rows; ++row)
    for (int r = 0; r < world; ++r)
      for (int64_t col = 0; col < cols; ++col)
        EXPECT_EQ(out.data<int64_t>()[row * cols * world + r * cols + col], r * 1000 + row * 10 + col)
            << "row " << row << ", block of rank " << r << ", col " << col;
}

}  // namespace

TEST(MpiComm, RankAndSizeMatchTheContext) {
  DistributedContext ctx = init_distributed();
  MpiCommunicator comm;
  EXPECT_EQ(comm.rank(), ctx.rank);
  EXPECT_EQ(comm.world_size(), ctx.world_size);
  EXPECT_GE(ctx.world_size, 2) << "run this binary under mpiexec with at least 2 ranks";
  EXPECT_STREQ(comm.backend(), "mpi");
  EXPECT_GE(ctx.local_rank, 0);
  EXPECT_LT(ctx.local_rank, ctx.local_world_size);
  EXPECT_LE(ctx.local_world_size, ctx.world_size);
}

TEST(MpiComm, AllReduceSumsRankDependentData) {
  MpiCommunicator comm;
  const int64_t n = 1000;
  Tensor t = rank_tensor(comm.rank(), n);
  comm.all_reduce_sum(t);
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(t.data<float>()[i], expected_sum(comm.world_size(), i)) << "i " << i;
}

TEST(MpiComm, AllReduceInChunksGivesTheSameSums) {
  MpiCommunicator comm(MPI_COMM_WORLD, /*max_chunk_elements=*/7);
  const int64_t n = 100;  // 15 chunks, the last one short
  Tensor t = rank_tensor(comm.rank(), n).view({10, 10});
  comm.all_reduce_sum(t);
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(t.data<float>()[i], expected_sum(comm.world_size(), i)) << "i " << i;
}

TEST(MpiComm, AllReduceOfARowViewLeavesOtherRowsAlone) {
  MpiCommunicator comm;
  Tensor t = rank_tensor(comm.rank(), 12).view({3, 4});
  Tensor middle = t.rows(1, 1);
  comm.all_reduce_sum(middle);
  for (int64_t i = 0; i < 12; ++i) {
    float want = (i >= 4 && i < 8) ? expected_sum(comm.world_size(), i) : rank_value(comm.rank(), i);
    EXPECT_EQ(t.data<float>()[i], want) << "i " << i;
  }
}

TEST(MpiComm, AllReduceRejectsNonF32) {
  MpiCommunicator comm;
  Tensor t = Tensor::zeros({4}, DType::I32);
  EXPECT_ERROR_MENTIONS(comm.all_reduce_sum(t), "f32", "i32");
}

TEST(MpiComm, AllGatherConcatenatesLastDimInRankOrder) {
  MpiCommunicator comm;
  Tensor out = comm.all_gather_last_dim(gather_input(comm.rank(), 3, 4));
  expect_gathered(out, comm.world_size(), 3, 4);
}

TEST(MpiComm, AllGatherInChunksGivesTheSameLayout) {
  MpiCommunicator comm(MPI_COMM_WORLD, /*max_chunk_elements=*/5);
  Tensor out = comm.all_gather_last_dim(gather_input(comm.rank(), 3, 4));  // 12 elements: chunks 5, 5, 2
  expect_gathered(out, comm.world_size(), 3, 4);
}

TEST(MpiComm, AllGatherOfF32LogitsShapedLikeTheLmHead) {
  MpiCommunicator comm;
  const int world = comm.world_size();
  const int64_t rows = 2, shard = 3;  // [tokens, vocab / world] -> [tokens, vocab]
  Tensor local = Tensor::empty({rows, shard}, DType::F32);
  for (int64_t row = 0; row < rows; ++row)
    for (int64_t c = 0; c < shard; ++c) local.data<float>()[row * shard + c] = float(row * 100 + comm.rank() * shard + c);
  Tensor out = comm.all_gather_last_dim(local);
  ASSERT_EQ(out.shape(), (Shape{rows, shard * world}));
  for (int64_t row = 0; row < rows; ++row)
    for (int64_t v = 0; v < shard * world; ++v) EXPECT_EQ(out.data<float>()[row * shard * world + v], float(row * 100 + v));
}

TEST(MpiComm, AllGatherOfOneDimensionalAndThreeDimensionalTensors) {
  MpiCommunicator comm;
  const int world = comm.world_size();
  Tensor flat = Tensor::from_f32({2}, {float(comm.rank()), float(comm.rank()) + 0.5f});
  Tensor out = comm.all_gather_last_dim(flat);
  ASSERT_EQ(out.shape(), (Shape{2 * world}));
  for (int r = 0; r < world; ++r) {
    EXPECT_EQ(out.data<float>()[2 * r], float(r));
    EXPECT_EQ(out.data<float>()[2 * r + 1], float(r) + 0.5f);
  }
  Tensor cube = gather_input(comm.rank(), 6, 2).view({2, 3, 2});  // last dim 2; rows of the 2-D view are [6]
  Tensor out3 = comm.all_gather_last_dim(cube);
  ASSERT_EQ(out3.shape(), (Shape{2, 3, 2 * world}));
  expect_gathered(out3.view({6, 2 * world}), world, 6, 2);
}

TEST(MpiComm, BroadcastVectorCopiesTheRootsContents) {
  MpiCommunicator comm;
  const int root = comm.world_size() - 1;
  std::vector<int32_t> v;
  if (comm.rank() == root)
    for (int i = 0; i < 10 + root; ++i) v.push_back(i * i - 7);
  else
    v.assign(size_t(comm.rank() + 1), -1);  // different sizes and contents on the other ranks
  comm.broadcast_vector(v, root);
  ASSERT_EQ(v.size(), size_t(10 + root));
  for (int i = 0; i < 10 + root; ++i) EXPECT_EQ(v[size_t(i)], i * i - 7);
}

TEST(MpiComm, BroadcastInChunks) {
  MpiCommunicator comm(MPI_COMM_WORLD, /*max_chunk_elements=*/3);
  std::string text = comm.rank() == 0 ? std::string("collectives, chunked") : std::string(20, '?');
  comm.broadcast(text.data(), text.size(), 0);
  EXPECT_EQ(text, "collectives, chunked");
}

TEST(MpiComm, BarrierHoldsEveryRankUntilTheLastArrives) {
  MpiCommunicator comm;
  comm.barrier();  // line everyone up first
  const auto start = std::chrono::steady_clock::now();
  if (comm.rank() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(300));
  comm.barrier();
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GE(waited, 0.25) << "rank " << comm.rank() << " left the barrier before rank 0 arrived";
}

TEST(MpiComm, DeviceTensorsAreStagedThroughTheHost) {
  const bool gpu = gpu_available();
  int gpu_everywhere = gpu ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &gpu_everywhere, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);  // skip on all or none
  if (!gpu_everywhere) GTEST_SKIP() << "no usable GPU on every rank: " << gpu_info().reason;
  MpiCommunicator comm;
  Tensor t = rank_tensor(comm.rank(), 64).to(Device::CUDA);
  comm.all_reduce_sum(t);
  Tensor back = t.to(Device::CPU);
  for (int64_t i = 0; i < 64; ++i) EXPECT_EQ(back.data<float>()[i], expected_sum(comm.world_size(), i));
  Tensor gathered = comm.all_gather_last_dim(gather_input(comm.rank(), 3, 4).to(Device::CUDA));
  EXPECT_EQ(gathered.device(), Device::CUDA);
  expect_gathered(gathered.to(Device::CPU), comm.world_size(), 3, 4);
}

TEST(MpiComm, MakeCommunicatorPicksAndRefusesBackends) {
  DistributedContext ctx = init_distributed();
  std::unique_ptr<Communicator> mpi = make_communicator("mpi", ctx);
  EXPECT_STREQ(mpi->backend(), "mpi");
  EXPECT_EQ(mpi->world_size(), ctx.world_size);
  int gpu_anywhere = gpu_available() ? 1 : 0;  // agreed by all ranks, so all take the same branches below
  MPI_Allreduce(MPI_IN_PLACE, &gpu_anywhere, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  std::unique_ptr<Communicator> picked = make_communicator("auto", ctx);  // collective decision
  if (!gpu_anywhere) {
    EXPECT_STREQ(picked->backend(), "mpi");
  }
  // Named: EXPECT_ERROR_MENTIONS keeps its parts as const char* past the full expression (ASAN caught a temporary).
  const std::string world = std::to_string(ctx.world_size);
  EXPECT_ERROR_MENTIONS(make_communicator("single", ctx), "single", world.c_str(), "ranks");
  EXPECT_ERROR_MENTIONS(make_communicator("gloo", ctx), "gloo", "auto, nccl, mpi, single");
  if (!gpu_anywhere) {
#ifdef MLARUN_WITH_CUDA
    EXPECT_ERROR_MENTIONS(make_communicator("nccl", ctx), "nccl", "one GPU per rank");
#else
    EXPECT_ERROR_MENTIONS(make_communicator("nccl", ctx), "nccl", "CUDA build");
#endif
  }
}
