// The collectives tensor parallelism needs (all_reduce, all_gather, broadcast, barrier) behind one interface,
// so the parallel layers never know which backend carries them: `single` (world size 1, no communication),
// `mpi` (host buffers over MPI) or `nccl` (GPU buffers). Each backend's collectives mark themselves as communication
// for the step time split (runtime/step_profiler.h); `single`'s are no-ops and count nothing.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/tensor.h"

namespace mlarun {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual const char* backend() const = 0;
  // Sums `t` element-wise over all ranks, in place (f32).
  virtual void all_reduce_sum(Tensor& t) = 0;
  // Concatenates every rank's `local` (same shape everywhere) along its last dimension, in rank order.
  virtual Tensor all_gather_last_dim(const Tensor& local) = 0;
  // Copies root's bytes into every rank's buffer.
  virtual void broadcast(void* data, size_t nbytes, int root) = 0;
  virtual void barrier() = 0;
  // Whether all_reduce_sum may run inside a CUDA graph capture (runtime/cuda_graph.h): true for `single` (no
  // collective) and `nccl` (the all-reduce joins the capturing stream); `mpi` moves host buffers, so it cannot.
  virtual bool can_capture_graphs() const { return false; }
  // Ends every rank with `message` printed once (MPI_Abort under MPI); never returns.
  [[noreturn]] virtual void abort_all(const std::string& message, int code) = 0;
  // Seconds a collective may wait for its peers before the job is ended with a message naming the collective
  // and the ranks it waited for (--collective-timeout; 0: wait forever). World size 1 never waits: no-ops.
  virtual void set_collective_timeout(double seconds) { (void)seconds; }
  virtual double collective_timeout() const { return 0; }
  // A communicator over the ranks that pass the same `color` (collective over this one: every rank calls it),
  // ranked by `key`; the same backend and collective timeout (MPI_Comm_split; decode context parallelism's
  // groups, docs/layouts.md §2.6).
  virtual std::unique_ptr<Communicator> split(int color, int key);  // default: an error naming the backend

  template <typename T>
  void broadcast_vector(std::vector<T>& v, int root);
};

// World size 1: every collective is the identity.
class SingleCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  const char* backend() const override { return "single"; }
  void all_reduce_sum(Tensor&) override {}
  Tensor all_gather_last_dim(const Tensor& local) override { return local; }
  void broadcast(void*, size_t, int) override {}
  void barrier() override {}
  bool can_capture_graphs() const override { return true; }
  std::unique_ptr<Communicator> split(int, int) override { return std::make_unique<SingleCommunicator>(); }
  [[noreturn]] void abort_all(const std::string& message, int code) override;
};

template <typename T>
void Communicator::broadcast_vector(std::vector<T>& v, int root) {
  uint64_t n = v.size();
  broadcast(&n, sizeof n, root);
  v.resize(size_t(n));
  if (n) broadcast(v.data(), size_t(n) * sizeof(T), root);
}

}  // namespace mlarun
