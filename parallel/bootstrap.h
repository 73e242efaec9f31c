// Process start-up for tensor parallelism: every rank calls init_distributed() first thing in main. It brings
// MPI up once per process (a binary started without mpirun is simply world size 1), finds this rank's place
// on its node, binds the rank to a GPU before anything else touches CUDA, and arranges that one failing rank
// takes all of them down (abort_all, SIGSEGV/SIGABRT -> MPI_Abort) instead of leaving the others hung in a
// collective. make_communicator() then turns `--comm auto|nccl|mpi|single` into a backend.
#pragma once

#include <memory>
#include <string>

#include "parallel/communicator.h"

namespace mlarun {

// Where this process sits in the job. Plain data: copying it is free, and init_distributed() may be called
// again (it returns the same answer without initialising anything twice).
struct DistributedContext {
  int rank = 0;              // in MPI_COMM_WORLD
  int world_size = 1;
  int local_rank = 0;        // among the ranks on this node (MPI_COMM_TYPE_SHARED)
  int local_world_size = 1;  // ranks on this node
  int device_count = 0;      // usable GPUs this process sees (0 without a CUDA build or a GPU)
  int device = -1;           // the GPU bound with cudaSetDevice (local_rank % device_count), -1 when none
  int mpi_thread_level = 0;  // what MPI_Init_thread granted (MPI_THREAD_SERIALIZED or better)

  // True when this rank has a GPU that no other rank on its node shares.
  bool has_own_gpu() const { return device_count > 0 && local_world_size <= device_count; }
  std::string describe() const;  // "rank 1/4 (local 1/2), GPU 1 of 2"
};

// Initialises MPI (MPI_Init_thread asking for MPI_THREAD_SERIALIZED; a lower grant is an mlarun::Error),
// registers MPI_Finalize to run at exit, installs the SIGSEGV/SIGABRT handlers, finds the local rank and, in
// CUDA builds with a usable GPU, calls cudaSetDevice(local_rank % device_count). `argc`/`argv` may be null.
DistributedContext init_distributed(int* argc = nullptr, char*** argv = nullptr);

// Prints "mlarun: rank R: <message>" once, from the calling rank, and ends every rank of the job with `code`
// (MPI_Abort on MPI_COMM_WORLD; plain exit when MPI is not running). Never returns.
[[noreturn]] void abort_all(const std::string& message, int code = 1);

// The backend names make_communicator accepts, for help texts: "auto, nccl, mpi, single".
const char* communicator_kinds();

// Builds the communicator `kind` names over MPI_COMM_WORLD; call it on every rank (it may be collective).
//   single: world size 1 only.       mpi:  always (device tensors are staged through host memory).
//   nccl:   CUDA build and one GPU per rank on every rank.
//   auto:   single at world size 1, else nccl when every rank has its own GPU (decided collectively, so all
//           ranks agree), else mpi.
// A kind that cannot work is an mlarun::Error saying why, raised on every rank alike.
std::unique_ptr<Communicator> make_communicator(const std::string& kind, const DistributedContext& ctx);

}  // namespace mlarun
