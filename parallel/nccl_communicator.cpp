// NCCL collectives on device tensors (see nccl_communicator.h). Each call is synchronous, like the other
// backends: it runs on the communicator's stream, which is a blocking stream and so ordered after work already
// queued on the legacy default stream, and returns once the stream has finished.
#include "parallel/nccl_communicator.h"

#include <algorithm>
#include <climits>

#include "parallel/bootstrap.h"
#include "runtime/cuda_check.h"
#include "runtime/device.h"
#include "runtime/error.h"

namespace mlarun {

namespace {

ncclDataType_t nccl_type(const Tensor& t, const char* op) {
  switch (t.dtype()) {
    case DType::F32: return ncclFloat32;
    case DType::BF16: return ncclBfloat16;
    case DType::F16: return ncclFloat16;
    default: fail("nccl ", op, ": f32, bf16 or f16 tensors only, got ", t.describe());
  }
}

bool is_device_pointer(const void* p) {
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, p) != cudaSuccess) {
    cudaGetLastError();  // plain host memory may be reported as an error; clear it
    return false;
  }
  return attr.type == cudaMemoryTypeDevice;
}

}  // namespace

NcclCommunicator::NcclCommunicator(MPI_Comm comm) {
  MLARUN_MPI_CHECK(MPI_Comm_dup(comm, &mpi_comm_));
  MLARUN_MPI_CHECK(MPI_Comm_rank(mpi_comm_, &rank_));
  MLARUN_MPI_CHECK(MPI_Comm_size(mpi_comm_, &world_size_));
  MLARUN_CUDA_CHECK(cudaGetDevice(&device_));
  ncclUniqueId id{};
  if (rank_ == 0) MLARUN_NCCL_CHECK(ncclGetUniqueId(&id));
  MLARUN_MPI_CHECK(MPI_Bcast(&id, int(sizeof id), MPI_BYTE, 0, mpi_comm_));
  MLARUN_NCCL_CHECK(ncclCommInitRank(&nccl_comm_, world_size_, id, rank_));
  MLARUN_CUDA_CHECK(cudaStreamCreate(&stream_));
}

NcclCommunicator::~NcclCommunicator() {
  // Destructors must not throw: release what we hold and ignore failures (the process is usually ending).
  if (stream_) {
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
  }
  if (nccl_comm_) ncclCommDestroy(nccl_comm_);
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (mpi_comm_ != MPI_COMM_NULL && !finalized) MPI_Comm_free(&mpi_comm_);
}

void NcclCommunicator::all_reduce_sum(Tensor& t) {
  const ncclDataType_t type = nccl_type(t, "all_reduce_sum");
  if (t.numel() == 0) return;
  const bool on_device = t.device() == Device::CUDA;
  Tensor dev = on_device ? t : t.to(Device::CUDA);
  MLARUN_NCCL_CHECK(ncclAllReduce(dev.raw(), dev.raw(), size_t(dev.numel()), type, ncclSum, nccl_comm_, stream_));
  MLARUN_CUDA_CHECK(cudaStreamSynchronize(stream_));
  if (!on_device) copy_bytes(t.raw(), Device::CPU, dev.raw(), Device::CUDA, t.nbytes());
}

Tensor NcclCommunicator::all_gather_last_dim(const Tensor& local) {
  MLARUN_CHECK(local.ndim() >= 1, "all_gather_last_dim needs at least one dimension, got ", local.describe());
  const ncclDataType_t type = nccl_type(local, "all_gather_last_dim");
  Shape out_shape = local.shape();
  out_shape.back() *= world_size_;
  const int64_t n = local.numel(), cols = local.dim(-1), rows = n == 0 ? 0 : n / cols;
  if (n == 0) return Tensor::empty(out_shape, local.dtype(), local.device());

  Tensor src = local.device() == Device::CUDA ? local : local.to(Device::CUDA);
  // NCCL lays the result out rank-major: [world, rows, cols].
  Tensor gathered = Tensor::empty({world_size_ * n}, local.dtype(), Device::CUDA);
  MLARUN_NCCL_CHECK(ncclAllGather(src.raw(), gathered.raw(), size_t(n), type, nccl_comm_, stream_));
  Tensor out;
  if (rows == 1) {
    out = gathered.view(out_shape);  // one row: rank-major already is [1, world * cols]
  } else {
    // Each rank's [rows, cols] block becomes a column band of [rows, world * cols]: one strided copy per rank.
    out = Tensor::empty(out_shape, local.dtype(), Device::CUDA);
    const size_t es = dtype_size(local.dtype()), band = size_t(cols) * es;
    auto* dst = static_cast<char*>(out.raw());
    const auto* from = static_cast<const char*>(gathered.raw());
    for (int64_t r = 0; r < world_size_; ++r)
      MLARUN_CUDA_CHECK(cudaMemcpy2DAsync(dst + size_t(r) * band, size_t(world_size_) * band,
                                          from + size_t(r * n) * es, band, band, size_t(rows),
                                          cudaMemcpyDeviceToDevice, stream_));
  }
  MLARUN_CUDA_CHECK(cudaStreamSynchronize(stream_));
  return local.device() == Device::CUDA ? out : out.to(Device::CPU);
}

void NcclCommunicator::broadcast(void* data, size_t nbytes, int root) {
  MLARUN_CHECK(root >= 0 && root < world_size_, "broadcast root ", root, " is not a rank of ", world_size_);
  if (nbytes == 0) return;
  if (is_device_pointer(data)) {
    MLARUN_NCCL_CHECK(ncclBroadcast(data, data, nbytes, ncclUint8, root, nccl_comm_, stream_));
    MLARUN_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return;
  }
  auto* bytes = static_cast<char*>(data);
  for (size_t offset = 0; offset < nbytes; offset += size_t(INT_MAX)) {
    int count = int(std::min(size_t(INT_MAX), nbytes - offset));
    MLARUN_MPI_CHECK(MPI_Bcast(bytes + offset, count, MPI_BYTE, root, mpi_comm_));
  }
}

void NcclCommunicator::barrier() {
  MLARUN_CUDA_CHECK(cudaStreamSynchronize(stream_));
  MLARUN_MPI_CHECK(MPI_Barrier(mpi_comm_));
}

void NcclCommunicator::abort_all(const std::string& message, int code) {
  if (nccl_comm_) ncclCommAbort(nccl_comm_);
  nccl_comm_ = nullptr;
  ::mlarun::abort_all(message, code);
}

}  // namespace mlarun
