// NCCL collectives on device tensors (see nccl_communicator.h). Each call is synchronous, like the other
// backends: it runs on the communicator's stream, which is a blocking stream and so ordered after work already
// queued on the legacy default stream, and returns once the stream has finished. Waiting is polling (the NCCL
// communicator is non-blocking), so the collective watchdog can end a wait on a peer that never arrives.
#include "parallel/nccl_communicator.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <thread>

#include "parallel/bootstrap.h"
#include "runtime/cuda_check.h"
#include "runtime/device.h"
#include "runtime/error.h"
#include "runtime/step_profiler.h"

namespace mlarun {

namespace {

// `moves_only`: the collective copies the elements (all-gather) rather than adding them, so any element width
// travels as raw bytes (a quantized cache's fp8/int8 rows under decode context parallelism).
ncclDataType_t nccl_type(const Tensor& t, const char* op, bool moves_only = false) {
  switch (t.dtype()) {
    case DType::F32: return ncclFloat32;
    case DType::BF16: return ncclBfloat16;
    case DType::F16: return ncclFloat16;
    default: break;
  }
  if (moves_only && dtype_size(t.dtype()) == 1) return ncclUint8;
  if (moves_only && dtype_size(t.dtype()) == 4) return ncclUint32;
  if (moves_only && dtype_size(t.dtype()) == 8) return ncclUint64;
  fail("nccl ", op, ": ", moves_only ? "1-, 4- or 8-byte elements or bf16/f16" : "f32, bf16 or f16",
       " tensors only, got ", t.describe());
}

// A call on a non-blocking communicator returns ncclInProgress while NCCL sets it up or enqueues it.
void check_started(ncclResult_t rc, const char* call) {
  if (rc != ncclSuccess && rc != ncclInProgress) fail("nccl: ", call, " failed: ", ncclGetErrorString(rc));
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

NcclCommunicator::NcclCommunicator(MPI_Comm comm) : watchdog_(comm, "nccl") {
  MLARUN_MPI_CHECK(MPI_Comm_dup(comm, &mpi_comm_));
  MLARUN_MPI_CHECK(MPI_Comm_rank(mpi_comm_, &rank_));
  MLARUN_MPI_CHECK(MPI_Comm_size(mpi_comm_, &world_size_));
  MLARUN_CUDA_CHECK(cudaGetDevice(&device_));
  ncclUniqueId id{};
  if (rank_ == 0) MLARUN_NCCL_CHECK(ncclGetUniqueId(&id));
  watchdog_.begin({"broadcast of the NCCL unique id", int64_t(sizeof id), "bytes", 0});
  MPI_Request request = MPI_REQUEST_NULL;
  MLARUN_MPI_CHECK(MPI_Ibcast(&id, int(sizeof id), MPI_BYTE, 0, mpi_comm_, &request));
  watchdog_.wait_request(request, "MPI_Ibcast");

  watchdog_.set_before_abort([this] { abort_nccl(); });  // also while the set-up below waits for its peers
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // every call returns at once; wait_enqueued() polls for the outcome
  watchdog_.begin({"NCCL communicator set-up (ncclCommInitRankConfig)"});
  check_started(ncclCommInitRankConfig(&nccl_comm_, world_size_, id, rank_, &config), "ncclCommInitRankConfig");
  wait_enqueued("ncclCommInitRankConfig");
  MLARUN_CUDA_CHECK(cudaStreamCreate(&stream_));
}

NcclCommunicator::~NcclCommunicator() {
  // Destructors must not throw: release what we hold and ignore failures (the process is usually ending).
  if (stream_) {
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
  }
  if (nccl_comm_) {
    // A non-blocking communicator finalizes in the background; give it a few seconds, then abort (a peer may be
    // gone already).
    ncclResult_t state = ncclCommFinalize(nccl_comm_);
    const auto give_up = CollectiveWatchdog::Clock::now() + std::chrono::seconds(10);
    while (state == ncclInProgress && CollectiveWatchdog::Clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      if (ncclCommGetAsyncError(nccl_comm_, &state) != ncclSuccess) break;
    }
    if (state == ncclSuccess)
      ncclCommDestroy(nccl_comm_);
    else
      ncclCommAbort(nccl_comm_);
  }
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (mpi_comm_ != MPI_COMM_NULL && !finalized) MPI_Comm_free(&mpi_comm_);
}

bool NcclCommunicator::nccl_ready(const char* call) {
  ncclResult_t state = ncclSuccess;
  MLARUN_NCCL_CHECK(ncclCommGetAsyncError(nccl_comm_, &state));
  if (state == ncclInProgress) return false;
  if (state != ncclSuccess)
    fail("nccl: ", call, " failed: ", ncclGetErrorString(state), " (", ncclGetLastError(nccl_comm_), ")");
  return true;
}

void NcclCommunicator::wait_enqueued(const char* call) {
  watchdog_.wait([&] { return nccl_ready(call); });
}

void NcclCommunicator::wait_stream(const char* call) {
  watchdog_.wait([&] {
    if (!nccl_ready(call)) return false;  // also catches a peer's failure while the kernel waits
    const cudaError_t status = cudaStreamQuery(stream_);
    if (status == cudaErrorNotReady) return false;
    MLARUN_CUDA_CHECK(status);
    return true;
  });
}

void NcclCommunicator::abort_nccl() {
  if (nccl_comm_) ncclCommAbort(nccl_comm_);
  nccl_comm_ = nullptr;
}

void NcclCommunicator::all_reduce_sum(Tensor& t) {
  ProfileRegion communication(ProfileCategory::Communication);  // the step time split
  const ncclDataType_t type = nccl_type(t, "all_reduce_sum");
  if (t.numel() == 0) return;
  const bool on_device = t.device() == Device::CUDA;
  if (on_device && stream_is_capturing()) {
    // Inside a CUDA graph capture (runtime/cuda_graph.h) the all-reduce joins the graph on the capturing stream;
    // nothing runs yet, so there is nothing to wait for (the replay's caller waits on the step as a whole).
    watchdog_.begin({"all_reduce (captured)", t.numel(), dtype_name(t.dtype())});
    check_started(ncclAllReduce(t.raw(), t.raw(), size_t(t.numel()), type, ncclSum, nccl_comm_, current_stream()),
                  "ncclAllReduce (captured)");
    wait_enqueued("ncclAllReduce (captured)");  // a non-blocking communicator may still be enqueueing
    return;
  }
  Tensor dev = on_device ? t : t.to(Device::CUDA);
  watchdog_.begin({"all_reduce", dev.numel(), dtype_name(dev.dtype())});
  check_started(ncclAllReduce(dev.raw(), dev.raw(), size_t(dev.numel()), type, ncclSum, nccl_comm_, stream_),
                "ncclAllReduce");
  wait_enqueued("ncclAllReduce");
  wait_stream("ncclAllReduce");
  if (!on_device) copy_bytes(t.raw(), Device::CPU, dev.raw(), Device::CUDA, t.nbytes());
}

Tensor NcclCommunicator::all_gather_last_dim(const Tensor& local) {
  ProfileRegion communication(ProfileCategory::Communication);  // the step time split
  MLARUN_CHECK(local.ndim() >= 1, "all_gather_last_dim needs at least one dimension, got ", local.describe());
  const ncclDataType_t type = nccl_type(local, "all_gather_last_dim", /*moves_only=*/true);
  Shape out_shape = local.shape();
  out_shape.back() *= world_size_;
  const int64_t n = local.numel(), cols = local.dim(-1), rows = n == 0 ? 0 : n / cols;
  if (n == 0) return Tensor::empty(out_shape, local.dtype(), local.device());

  Tensor src = local.device() == Device::CUDA ? local : local.to(Device::CUDA);
  // NCCL lays the result out rank-major: [world, rows, cols].
  Tensor gathered = Tensor::empty({world_size_ * n}, local.dtype(), Device::CUDA);
  watchdog_.begin({"all_gather", n, dtype_name(local.dtype())});
  check_started(ncclAllGather(src.raw(), gathered.raw(), size_t(n), type, nccl_comm_, stream_), "ncclAllGather");
  wait_enqueued("ncclAllGather");
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
  wait_stream("ncclAllGather");
  return local.device() == Device::CUDA ? out : out.to(Device::CPU);
}

void NcclCommunicator::broadcast(void* data, size_t nbytes, int root) {
  ProfileRegion communication(ProfileCategory::Communication);  // the step time split
  MLARUN_CHECK(root >= 0 && root < world_size_, "broadcast root ", root, " is not a rank of ", world_size_);
  if (nbytes == 0) return;
  watchdog_.begin({"broadcast", int64_t(nbytes), "bytes", root});
  if (is_device_pointer(data)) {
    check_started(ncclBroadcast(data, data, nbytes, ncclUint8, root, nccl_comm_, stream_), "ncclBroadcast");
    wait_enqueued("ncclBroadcast");
    wait_stream("ncclBroadcast");
    return;
  }
  auto* bytes = static_cast<char*>(data);
  for (size_t offset = 0; offset < nbytes; offset += size_t(INT_MAX)) {
    int count = int(std::min(size_t(INT_MAX), nbytes - offset));
    MPI_Request request = MPI_REQUEST_NULL;
    MLARUN_MPI_CHECK(MPI_Ibcast(bytes + offset, count, MPI_BYTE, root, mpi_comm_, &request));
    watchdog_.wait_request(request, "MPI_Ibcast");
  }
}

void NcclCommunicator::barrier() {
  ProfileRegion communication(ProfileCategory::Communication);  // the step time split
  watchdog_.begin({"barrier"});
  wait_stream("barrier");
  MPI_Request request = MPI_REQUEST_NULL;
  MLARUN_MPI_CHECK(MPI_Ibarrier(mpi_comm_, &request));
  watchdog_.wait_request(request, "MPI_Ibarrier");
}

std::unique_ptr<Communicator> NcclCommunicator::split(int color, int key) {
  MPI_Comm sub = MPI_COMM_NULL;
  MLARUN_MPI_CHECK(MPI_Comm_split(mpi_comm_, color, key, &sub));
  auto out = std::make_unique<NcclCommunicator>(sub);  // duplicates `sub`, makes and shares a unique id
  MPI_Comm_free(&sub);
  out->set_collective_timeout(collective_timeout());
  return out;
}

void NcclCommunicator::abort_all(const std::string& message, int code) {
  abort_nccl();
  ::mlarun::abort_all(message, code);
}

}  // namespace mlarun
