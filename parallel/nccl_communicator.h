// The `nccl` backend, the production path: collectives run GPU to GPU on NCCL's own stream (NVLink, PCIe or
// the network), one GPU per rank. Compiled only in CUDA builds. MPI is used twice: to hand rank 0's NCCL
// unique id to everyone at start-up, and for host-memory broadcasts and barriers. The NCCL communicator is
// non-blocking (ncclConfig_t::blocking = 0), so no NCCL call can hang: every wait polls ncclCommGetAsyncError
// and cudaStreamQuery under the collective watchdog, which aborts the NCCL communicator and ends the job when a
// peer never arrives (--collective-timeout).
#pragma once

#include <cuda_runtime_api.h>
#include <mpi.h>
#include <nccl.h>

#include <string>

#include "parallel/collective_watchdog.h"
#include "parallel/communicator.h"

namespace mlarun {

class NcclCommunicator final : public Communicator {
 public:
  // Collective over `comm`: rank 0 makes the unique id, MPI_Bcast shares it, every rank joins with
  // ncclCommInitRankConfig (non-blocking) on its current CUDA device (init_distributed() has bound it).
  explicit NcclCommunicator(MPI_Comm comm = MPI_COMM_WORLD);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  const char* backend() const override { return "nccl"; }
  bool can_capture_graphs() const override { return true; }
  int device() const { return device_; }
  // f32 or bf16. Device tensors are reduced in place; a host tensor is staged through the GPU.
  void all_reduce_sum(Tensor& t) override;
  // f32 or bf16; the result lives where `local` lives.
  Tensor all_gather_last_dim(const Tensor& local) override;
  // Device pointers go through ncclBroadcast, host pointers through MPI_Bcast.
  void broadcast(void* data, size_t nbytes, int root) override;
  void barrier() override;
  // A new NCCL communicator over the group (its own unique id, shared over the split MPI communicator).
  std::unique_ptr<Communicator> split(int color, int key) override;
  // Aborts the NCCL communicator (so no kernel waits on a dead peer), then the whole MPI job.
  [[noreturn]] void abort_all(const std::string& message, int code) override;
  void set_collective_timeout(double seconds) override { watchdog_.set_timeout(seconds); }
  double collective_timeout() const override { return watchdog_.timeout(); }

 private:
  // True once the communicator has finished its last call (ncclCommGetAsyncError is not ncclInProgress); an
  // asynchronous NCCL error is an mlarun::Error naming `call`.
  bool nccl_ready(const char* call);
  // Watched waits for the collective watchdog_.begin() started: until NCCL has enqueued `call` on stream_, and
  // until stream_ has run everything queued on it.
  void wait_enqueued(const char* call);
  void wait_stream(const char* call);
  void abort_nccl();

  CollectiveWatchdog watchdog_;
  MPI_Comm mpi_comm_ = MPI_COMM_NULL;
  ncclComm_t nccl_comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  int rank_ = 0;
  int world_size_ = 1;
  int device_ = 0;
};

}  // namespace mlarun
