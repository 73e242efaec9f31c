// CUDA runtime calls for memory, streams and device discovery, compiled to "no GPU" answers in CPU-only builds.
#include "runtime/device.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "runtime/device_allocator.h"
#include "runtime/error.h"

#ifdef MLARUN_WITH_CUDA
#include <cuda_runtime_api.h>

#include "runtime/cuda_check.h"
#endif

namespace mlarun {

namespace {
thread_local StreamHandle g_current_stream = nullptr;  // per thread; nullptr = legacy default stream

[[noreturn]] void no_cuda(const char* what) { fail("cannot ", what, ": ", gpu_info().reason); }
}  // namespace

const GpuInfo& gpu_info() {
  static GpuInfo info;
  static std::once_flag once;
  std::call_once(once, [] {
#ifdef MLARUN_WITH_CUDA
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err == cudaSuccess && count > 0) {
      info.available = true;
      info.device_count = count;
    } else {
      info.reason = err == cudaSuccess ? "no CUDA device" : std::string(cudaGetErrorName(err)) + " (" +
                                                                cudaGetErrorString(err) + ")";
      cudaGetLastError();  // clear the sticky error so later probes start clean
    }
#else
    info.reason = "built without CUDA (MLARUN_CUDA=OFF or no nvcc)";
#endif
  });
  return info;
}

bool gpu_available() { return gpu_info().available; }

std::string gpu_name() {
  if (!gpu_available()) return "";
#ifdef MLARUN_WITH_CUDA
  int device = 0;
  cudaDeviceProp prop{};
  if (cudaGetDevice(&device) != cudaSuccess || cudaGetDeviceProperties(&prop, device) != cudaSuccess) {
    cudaGetLastError();
    return "unknown GPU";
  }
  return prop.name;
#else
  return "";
#endif
}

DeviceMemoryInfo device_memory_info() {
  if (!gpu_available()) no_cuda("read the GPU's memory");
#ifdef MLARUN_WITH_CUDA
  size_t free_bytes = 0, total_bytes = 0;
  MLARUN_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  return {int64_t(free_bytes), int64_t(total_bytes)};
#else
  return {};
#endif
}

StreamHandle current_stream() { return g_current_stream; }

StreamGuard::StreamGuard(StreamHandle stream) : previous_(g_current_stream) { g_current_stream = stream; }
StreamGuard::~StreamGuard() { g_current_stream = previous_; }

CudaStream::CudaStream(bool blocking) {
  if (!gpu_available()) no_cuda("create a CUDA stream");
#ifdef MLARUN_WITH_CUDA
  MLARUN_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, blocking ? cudaStreamDefault : cudaStreamNonBlocking));
#else
  (void)blocking;
#endif
}

CudaStream::~CudaStream() {
#ifdef MLARUN_WITH_CUDA
  if (stream_) {
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
  }
#endif
}

void CudaStream::synchronize() const { synchronize_stream(stream_); }

void synchronize_stream(StreamHandle stream) {
#ifdef MLARUN_WITH_CUDA
  if (!gpu_available()) return;
  MLARUN_CUDA_CHECK(cudaStreamSynchronize(stream));
#else
  (void)stream;
#endif
}

bool stream_is_capturing(StreamHandle stream) {
#ifdef MLARUN_WITH_CUDA
  if (!gpu_available()) return false;
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  MLARUN_CUDA_CHECK(cudaStreamIsCapturing(stream, &status));
  return status != cudaStreamCaptureStatusNone;
#else
  (void)stream;
  return false;
#endif
}

void device_synchronize() {
#ifdef MLARUN_WITH_CUDA
  if (!gpu_available()) return;
  MLARUN_CUDA_CHECK(cudaDeviceSynchronize());
#endif
}

DeviceEvent::DeviceEvent() {
  if (!gpu_available()) no_cuda("create a CUDA event");
#ifdef MLARUN_WITH_CUDA
  cudaEvent_t e = nullptr;
  MLARUN_CUDA_CHECK(cudaEventCreate(&e));  // with timing
  event_ = e;
#endif
}

DeviceEvent::~DeviceEvent() {
#ifdef MLARUN_WITH_CUDA
  if (event_) cudaEventDestroy(static_cast<cudaEvent_t>(event_));
#endif
}

void DeviceEvent::record() {
#ifdef MLARUN_WITH_CUDA
  MLARUN_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event_), current_stream()));
#endif
}

void DeviceEvent::synchronize() const {
#ifdef MLARUN_WITH_CUDA
  MLARUN_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(event_)));
#endif
}

double DeviceEvent::elapsed_ms(const DeviceEvent& from, const DeviceEvent& to) {
#ifdef MLARUN_WITH_CUDA
  float ms = 0;
  MLARUN_CUDA_CHECK(
      cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(from.event_), static_cast<cudaEvent_t>(to.event_)));
  return double(ms);
#else
  (void)from, (void)to;
  return 0;
#endif
}

void* device_malloc(size_t nbytes) {
  if (!gpu_available()) fail("cannot allocate ", nbytes, " bytes on the GPU: ", gpu_info().reason);
  return DeviceAllocator::instance().allocate(nbytes, current_stream());
}

void device_free(void* p) {
  if (p) DeviceAllocator::instance().release(p);
}

void device_memset_zero(void* p, size_t nbytes) {
  if (nbytes == 0) return;
#ifdef MLARUN_WITH_CUDA
  MLARUN_CUDA_CHECK(cudaMemsetAsync(p, 0, nbytes, current_stream()));
#else
  (void)p;
  no_cuda("zero GPU memory");
#endif
}

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) {
  if (nbytes == 0) return;
  if (dst_device == Device::CPU && src_device == Device::CPU) {
    std::memcpy(dst, src, nbytes);
    return;
  }
#ifdef MLARUN_WITH_CUDA
  cudaMemcpyKind kind = dst_device == Device::CPU   ? cudaMemcpyDeviceToHost
                        : src_device == Device::CPU ? cudaMemcpyHostToDevice
                                                    : cudaMemcpyDeviceToDevice;
  // A graph would replay a host copy from or into host memory long since freed (or wait for a stream that only
  // records): refused, which fails the capture (runtime/cuda_graph.h) and leaves the step to run eagerly.
  MLARUN_CHECK(kind == cudaMemcpyDeviceToDevice || !stream_is_capturing(),
               "a copy between host and GPU inside a CUDA graph capture");
  MLARUN_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, kind, current_stream()));
  if (kind == cudaMemcpyDeviceToHost) MLARUN_CUDA_CHECK(cudaStreamSynchronize(current_stream()));
#else
  no_cuda("copy to or from the GPU");
#endif
}

HostStaging::~HostStaging() {
#ifdef MLARUN_WITH_CUDA
  if (event_) {
    cudaEventSynchronize(static_cast<cudaEvent_t>(event_));
    cudaEventDestroy(static_cast<cudaEvent_t>(event_));
  }
  if (pinned_) cudaFreeHost(data_);
  else std::free(data_);
#else
  std::free(data_);
#endif
}

void HostStaging::wait() {
#ifdef MLARUN_WITH_CUDA
  if (event_) MLARUN_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(event_)));
#endif
}

void* HostStaging::reserve(size_t nbytes) {
  wait();
  if (nbytes <= capacity_ && data_) return data_;
  const size_t want = std::max<size_t>(nbytes, std::max<size_t>(4096, capacity_ * 2));
#ifdef MLARUN_WITH_CUDA
  if (pinned_) cudaFreeHost(data_);
  else std::free(data_);
  data_ = nullptr;
  pinned_ = false;
  if (gpu_available() && cudaHostAlloc(&data_, want, cudaHostAllocDefault) == cudaSuccess) {
    pinned_ = true;
  } else {
    cudaGetLastError();  // a failed pinned allocation falls back to pageable memory
    data_ = std::malloc(want);
  }
#else
  std::free(data_);
  data_ = std::malloc(want);
#endif
  MLARUN_CHECK(data_ != nullptr, "HostStaging: cannot allocate ", want, " bytes of host memory");
  capacity_ = want;
  return data_;
}

void HostStaging::upload(void* dst, size_t nbytes) {
  MLARUN_CHECK(nbytes <= capacity_, "HostStaging: upload of ", nbytes, " bytes from a buffer of ", capacity_);
  if (nbytes == 0) return;
#ifdef MLARUN_WITH_CUDA
  MLARUN_CHECK(!stream_is_capturing(), "HostStaging: an upload inside a CUDA graph capture (the step's data goes "
                                       "up before the replay)");
  MLARUN_CUDA_CHECK(cudaMemcpyAsync(dst, data_, nbytes, cudaMemcpyHostToDevice, current_stream()));
  if (!event_) {
    cudaEvent_t e = nullptr;
    MLARUN_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    event_ = e;
  }
  MLARUN_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event_), current_stream()));
#else
  (void)dst;
  no_cuda("upload to the GPU");
#endif
}

}  // namespace mlarun
