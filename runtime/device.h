// The device layer: the only place the runtime core talks to the CUDA runtime. Without a CUDA build every
// query answers "no GPU"; with one, "insufficient driver" (35) and "no device" (100) also mean "no GPU", so
// GPU tests skip on machines without one. Nothing here runs at static initialisation.
//
// Streams: all device work of a thread (ops, copies, memsets) goes to its current stream, by default the
// legacy default stream, which orders itself with every blocking stream (the NCCL communicator's included).
// A StreamGuard points the thread at another stream for a scope. Device memory comes from the caching
// allocator (device_allocator.h), tied to the stream current at allocation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "runtime/tensor.h"

struct CUstream_st;  // cudaStream_t is CUstream_st*; declared here so this header needs no CUDA headers

namespace mlarun {

using StreamHandle = ::CUstream_st*;  // nullptr: the legacy default stream

struct GpuInfo {
  bool available = false;
  int device_count = 0;
  std::string reason;  // why no GPU is usable, when !available
};

// Probes the CUDA runtime once (thread-safe) and caches the answer.
const GpuInfo& gpu_info();
bool gpu_available();
// The current device's name ("NVIDIA H100 80GB HBM3"); "" without a GPU.
std::string gpu_name();

struct DeviceMemoryInfo {
  int64_t free_bytes = 0;
  int64_t total_bytes = 0;
};
// cudaMemGetInfo of the current device; throws without a GPU.
DeviceMemoryInfo device_memory_info();

StreamHandle current_stream();
// Makes `stream` this thread's current stream until the guard goes.
class StreamGuard {
 public:
  explicit StreamGuard(StreamHandle stream);
  ~StreamGuard();
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  StreamHandle previous_;
};
// An owned CUDA stream: non-blocking by default (for work that must not order itself after the default stream);
// a blocking one orders itself with the legacy default stream both ways, as the default stream's own work would.
class CudaStream {
 public:
  explicit CudaStream(bool blocking = false);  // throws without a GPU
  ~CudaStream();
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;
  StreamHandle handle() const { return stream_; }
  void synchronize() const;

 private:
  StreamHandle stream_ = nullptr;
};
// Waits for the work queued on `stream` (the current one by default); throws with the CUDA error if any
// earlier asynchronous work failed.
void synchronize_stream(StreamHandle stream = current_stream());
// Whether `stream` is being captured into a CUDA graph (runtime/cuda_graph.h): work there is recorded, not run,
// so nothing may wait for it (false without a GPU).
bool stream_is_capturing(StreamHandle stream = current_stream());
void device_synchronize();

// A CUDA timing event: `record` queues it on the current stream; `elapsed_ms(from, to)` is the GPU time between
// two recorded events once `to` has completed (`synchronize` waits for it). Move-only, so a pool of them can live
// in a vector. Throws without a GPU.
class DeviceEvent {
 public:
  DeviceEvent();
  ~DeviceEvent();
  DeviceEvent(DeviceEvent&& other) noexcept : event_(other.event_) { other.event_ = nullptr; }
  DeviceEvent& operator=(DeviceEvent&&) = delete;
  DeviceEvent(const DeviceEvent&) = delete;
  DeviceEvent& operator=(const DeviceEvent&) = delete;
  void record();
  void synchronize() const;
  static double elapsed_ms(const DeviceEvent& from, const DeviceEvent& to);

 private:
  void* event_ = nullptr;  // cudaEvent_t
};

void* device_malloc(size_t nbytes);  // through the caching allocator; throws on failure or without CUDA
void device_free(void* p);
// Zeroes `nbytes` at device pointer `p`, in order on the current stream.
void device_memset_zero(void* p, size_t nbytes);
// Copies on the current stream. Returns once the data is usable where it landed: a copy to the host waits for
// the stream; a copy from (pageable) host memory returns once the source has been read, so the caller may free it.
// A copy to or from the host while the stream is being captured into a CUDA graph is an error.
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes);

// A host buffer for uploads that leave asynchronously: page-locked (cudaHostAlloc) in a CUDA build with a GPU, so
// the copy from it is one cudaMemcpyAsync that does not block the host; plain host memory otherwise. One upload in
// flight at a time: `reserve` (the only way to get a writable pointer) first waits for the previous upload, so
// its bytes are never overwritten while the copy still reads them. Grows, never shrinks.
class HostStaging {
 public:
  HostStaging() = default;
  ~HostStaging();
  HostStaging(const HostStaging&) = delete;
  HostStaging& operator=(const HostStaging&) = delete;
  // Waits for the previous upload, then returns at least `nbytes` writable bytes.
  void* reserve(size_t nbytes);
  // Queues a copy of the first `nbytes` bytes to device memory `dst` on the current stream; returns at once.
  void upload(void* dst, size_t nbytes);
  bool pinned() const { return pinned_; }

 private:
  void wait();
  void* data_ = nullptr;
  size_t capacity_ = 0;
  bool pinned_ = false;
  void* event_ = nullptr;  // cudaEvent_t recorded after the last upload
};

}  // namespace mlarun
