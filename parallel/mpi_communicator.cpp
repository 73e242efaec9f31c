// MPI collectives on host buffers (see mpi_communicator.h). MPI counts are `int`, so every message is sent in
// pieces of at most max_chunk_ elements; device tensors make a round trip through host memory. Each piece is a
// non-blocking collective (MPI_Iallreduce & co.) waited for through the watchdog, whether or not it has a
// deadline: blocking and non-blocking collectives do not match each other in MPI, so ranks with different
// --collective-timeout values (0 among them) must still call the same ones.
#include "parallel/mpi_communicator.h"

#include <algorithm>
#include <cstring>

#include "parallel/bootstrap.h"
#include "runtime/device.h"
#include "runtime/error.h"
#include "runtime/step_profiler.h"

namespace mlarun {

namespace {

void check_mpi(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  fail("MPI call ", call, " failed: ", std::string(text, size_t(len)));
}

// Gathering only copies bytes, so any dtype travels as unsigned integers of its width.
MPI_Datatype mpi_type_of_width(size_t element_size) {
  switch (element_size) {
    case 1: return MPI_UINT8_T;
    case 2: return MPI_UINT16_T;
    case 4: return MPI_UINT32_T;
    case 8: return MPI_UINT64_T;
    default: fail("mpi all_gather: no MPI type for ", element_size, "-byte elements");
  }
}

bool mpi_finalized() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  return finalized != 0;
}

}  // namespace

void interleave_rank_blocks(const void* rank_major, void* out, int64_t world, int64_t rows, int64_t cols,
                            size_t element_size) {
  const auto* src = static_cast<const char*>(rank_major);
  auto* dst = static_cast<char*>(out);
  const size_t row_bytes = size_t(cols) * element_size;
  for (int64_t row = 0; row < rows; ++row)
    for (int64_t r = 0; r < world; ++r)
      std::memcpy(dst + size_t(row * world + r) * row_bytes, src + size_t(r * rows + row) * row_bytes, row_bytes);
}

namespace {

// Checked before anything touches MPI (the watchdog's MPI_Comm_dup runs first, in the member initialisers).
MPI_Comm mpi_ready(MPI_Comm comm) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  MLARUN_CHECK(initialized && !mpi_finalized(), "the mpi communicator needs MPI running: call init_distributed() first");
  return comm;
}

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm comm, int64_t max_chunk_elements)
    : watchdog_(mpi_ready(comm), "mpi"), max_chunk_(max_chunk_elements) {
  MLARUN_CHECK(max_chunk_elements >= 1 && max_chunk_elements <= INT_MAX, "mpi communicator: chunk size ",
               max_chunk_elements, " must be in [1, INT_MAX]");
  check_mpi(MPI_Comm_dup(comm, &comm_), "MPI_Comm_dup");
  check_mpi(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(comm_, &world_size_), "MPI_Comm_size");
}

MpiCommunicator::~MpiCommunicator() {
  if (comm_ != MPI_COMM_NULL && !mpi_finalized()) MPI_Comm_free(&comm_);
}

template <class Start>
void MpiCommunicator::run(const char* call, Start&& start) {
  MPI_Request request = MPI_REQUEST_NULL;
  check_mpi(start(&request), call);
  watchdog_.wait_request(request, call);
}

void MpiCommunicator::all_reduce_sum(Tensor& t) {
  ProfileRegion communication(ProfileCategory::Communication);  // the step time split
  MLARUN_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::BF16, "mpi all_reduce_sum sums f32 or bf16 tensors, got ",
               t.describe());
  if (world_size_ == 1 || t.numel() == 0) return;
  // bf16 (the GPU's activations) is summed in f32 on the host and rounded once, like a reduction in f32 would.
  const bool in_place = t.device() == Device::CPU && t.dtype() == DType::F32;
  Tensor host = t.device() == Device::CPU ? t : t.to(Device::CPU);
  if (host.dtype() != DType::F32) host = host.to_dtype(DType::F32);
  float* values = host.data<float>();
  watchdog_.begin({"all_reduce", host.numel(), "f32"});
  for (int64_t offset = 0; offset < host.numel(); offset += max_chunk_) {
    int count = int(std::min(max_chunk_, host.numel() - offset));
    run("MPI_Allreduce", [&](MPI_Request* r) {
      return MPI_Iallreduce(MPI_IN_PLACE, values + offset, count, MPI_FLOAT, MPI_SUM, comm_, r);
    });
  }
  if (in_place) return;
  if (t.dtype() != DType::F32) host = host.to_dtype(t.dtype());
  copy_bytes(t.raw(), t.device(), host.raw(), Device::CPU, t.nbytes());
}

Tensor MpiCommunicator::all_gather_last_dim(const Tensor& local) {
  ProfileRegion communication(ProfileCategory::Communication);  // the step time split
  MLARUN_CHECK(local.ndim() >= 1, "all_gather_last_dim needs at least one dimension, got ", local.describe());
  if (world_size_ == 1) return local;
  Shape out_shape = local.shape();
  out_shape.back() *= world_size_;
  const int64_t n = local.numel(), cols = local.dim(-1);
  if (n == 0) return Tensor::empty(out_shape, local.dtype(), local.device());

  Tensor host = local.device() == Device::CPU ? local : local.to(Device::CPU);
  const size_t es = dtype_size(local.dtype());
  const MPI_Datatype type = mpi_type_of_width(es);
  Tensor gathered = Tensor::empty({world_size_ * n}, local.dtype());  // rank 0's block, then rank 1's, ...
  const auto* src = static_cast<const char*>(host.raw());
  auto* dst = static_cast<char*>(gathered.raw());
  watchdog_.begin({"all_gather", n, dtype_name(local.dtype())});
  if (n <= max_chunk_) {
    run("MPI_Allgather",
        [&](MPI_Request* r) { return MPI_Iallgather(src, int(n), type, dst, int(n), type, comm_, r); });
  } else {
    // Gather piece by piece, then move each rank's piece to its place inside that rank's block.
    Tensor pieces = Tensor::empty({world_size_ * max_chunk_}, local.dtype());
    auto* piece = static_cast<char*>(pieces.raw());
    for (int64_t offset = 0; offset < n; offset += max_chunk_) {
      const int64_t len = std::min(max_chunk_, n - offset);
      const char* from = src + size_t(offset) * es;
      run("MPI_Allgather",
          [&](MPI_Request* r) { return MPI_Iallgather(from, int(len), type, piece, int(len), type, comm_, r); });
      for (int64_t r = 0; r < world_size_; ++r)
        std::memcpy(dst + size_t(r * n + offset) * es, piece + size_t(r * len) * es, size_t(len) * es);
    }
  }
  Tensor out = Tensor::empty(out_shape, local.dtype());
  interleave_rank_blocks(gathered.raw(), out.raw(), world_size_, n / cols, cols, es);
  return local.device() == Device::CPU ? out : out.to(local.device());
}

void MpiCommunicator::broadcast(void* data, size_t nbytes, int root) {
  ProfileRegion communication(ProfileCategory::Communication);  // the step time split
  MLARUN_CHECK(root >= 0 && root < world_size_, "broadcast root ", root, " is not a rank of ", world_size_);
  auto* bytes = static_cast<char*>(data);
  watchdog_.begin({"broadcast", int64_t(nbytes), "bytes", root});
  for (size_t offset = 0; offset < nbytes; offset += size_t(max_chunk_)) {
    int count = int(std::min(size_t(max_chunk_), nbytes - offset));
    run("MPI_Bcast",
        [&](MPI_Request* r) { return MPI_Ibcast(bytes + offset, count, MPI_BYTE, root, comm_, r); });
  }
}

void MpiCommunicator::barrier() {
  ProfileRegion communication(ProfileCategory::Communication);  // the step time split
  watchdog_.begin({"barrier"});
  run("MPI_Barrier", [&](MPI_Request* r) { return MPI_Ibarrier(comm_, r); });
}

std::unique_ptr<Communicator> MpiCommunicator::split(int color, int key) {
  MPI_Comm sub = MPI_COMM_NULL;
  check_mpi(MPI_Comm_split(comm_, color, key, &sub), "MPI_Comm_split");
  auto out = std::make_unique<MpiCommunicator>(sub, max_chunk_);  // works on its own duplicate of `sub`
  MPI_Comm_free(&sub);
  out->set_collective_timeout(collective_timeout());
  return out;
}

void MpiCommunicator::abort_all(const std::string& message, int code) { ::mlarun::abort_all(message, code); }

}  // namespace mlarun
