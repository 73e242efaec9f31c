// The `nccl` backend, the production path: collectives run GPU to GPU on NCCL's own stream (NVLink, PCIe or
// the network), one GPU per rank. Compiled only in CUDA builds. MPI is used twice: to hand rank 0's NCCL
// unique id to everyone at start-up, and for host-memory broadcasts and barriers.
#pragma once

#include <cuda_runtime_api.h>
#include <mpi.h>
#include <nccl.h>

#include <string>

#include "parallel/communicator.h"

namespace mlarun {

class NcclCommunicator final : public Communicator {
 public:
  // Collective over `comm`: rank 0 makes the unique id, MPI_Bcast shares it, every rank joins with
  // ncclCommInitRank on its current CUDA device (init_distributed() has bound it).
  explicit NcclCommunicator(MPI_Comm comm = MPI_COMM_WORLD);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  const char* backend() const override { return "nccl"; }
  int device() const { return device_; }
  // f32 or bf16. Device tensors are reduced in place; a host tensor is staged through the GPU.
  void all_reduce_sum(Tensor& t) override;
  // f32 or bf16; the result lives where `local` lives.
  Tensor all_gather_last_dim(const Tensor& local) override;
  // Device pointers go through ncclBroadcast, host pointers through MPI_Bcast.
  void broadcast(void* data, size_t nbytes, int root) override;
  void barrier() override;
  // Aborts the NCCL communicator (so no kernel waits on a dead peer), then the whole MPI job.
  [[noreturn]] void abort_all(const std::string& message, int code) override;

 private:
  MPI_Comm mpi_comm_ = MPI_COMM_NULL;
  ncclComm_t nccl_comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  int rank_ = 0;
  int world_size_ = 1;
  int device_ = 0;
};

}  // namespace mlarun
