// The `mpi` backend: collectives over MPI on host memory. It is the portable path: it needs no GPU, works
// across nodes with whatever transport Open MPI picks, and, because device tensors are staged through host
// memory, lets several ranks share one GPU (which NCCL refuses). Every call returns once the collective is done:
// it starts the non-blocking MPI collective and waits through the collective watchdog, which ends the job when
// a peer never arrives (--collective-timeout; 0 waits forever). Polling costs a few microseconds per collective.
#pragma once

#include <climits>
#include <cstdint>
#include <string>

#include <mpi.h>

#include "parallel/collective_watchdog.h"
#include "parallel/communicator.h"

namespace mlarun {

class MpiCommunicator final : public Communicator {
 public:
  // Works on a private duplicate of `comm` (collective over `comm`), so its messages never mix with anyone
  // else's. Messages longer than `max_chunk_elements` are sent in pieces (MPI counts are `int`); tests lower
  // it to exercise the chunking.
  explicit MpiCommunicator(MPI_Comm comm = MPI_COMM_WORLD, int64_t max_chunk_elements = INT_MAX);
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  const char* backend() const override { return "mpi"; }
  // f32 or bf16 (CPU or CUDA; a CUDA tensor is copied to the host, reduced, and copied back into place). bf16 is
  // summed in f32 and rounded once.
  void all_reduce_sum(Tensor& t) override;
  // Any dtype; the result lives on the device `local` lives on.
  Tensor all_gather_last_dim(const Tensor& local) override;
  // Host memory only.
  void broadcast(void* data, size_t nbytes, int root) override;
  void barrier() override;
  std::unique_ptr<Communicator> split(int color, int key) override;
  [[noreturn]] void abort_all(const std::string& message, int code) override;
  void set_collective_timeout(double seconds) override { watchdog_.set_timeout(seconds); }
  double collective_timeout() const override { return watchdog_.timeout(); }

 private:
  // Runs one MPI collective: `start(&request)` (MPI_Iallreduce & co.), then a watched wait.
  template <class Start>
  void run(const char* call, Start&& start);

  MPI_Comm comm_ = MPI_COMM_NULL;
  CollectiveWatchdog watchdog_;
  int rank_ = 0;
  int world_size_ = 1;
  int64_t max_chunk_ = INT_MAX;
};

// Re-lays out `world` blocks of [rows, cols] elements, stored one block after another (rank order), as one
// [rows, world * cols] matrix: row r is block 0's row r, then block 1's row r, and so on. Host memory.
void interleave_rank_blocks(const void* rank_major, void* out, int64_t world, int64_t rows, int64_t cols,
                            size_t element_size);

}  // namespace mlarun
