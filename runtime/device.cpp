// CUDA runtime calls for memory and device discovery, compiled to "no GPU" answers in CPU-only builds.
#include "runtime/device.h"

#include <cstring>
#include <mutex>

#include "runtime/error.h"

#ifdef MLARUN_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace mlarun {

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

void* device_malloc(size_t nbytes) {
#ifdef MLARUN_WITH_CUDA
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, nbytes);
  if (err != cudaSuccess)
    fail("cudaMalloc of ", nbytes, " bytes failed: ", cudaGetErrorName(err), " (", cudaGetErrorString(err), ")");
  return p;
#else
  fail("cannot allocate ", nbytes, " bytes on the GPU: ", gpu_info().reason);
#endif
}

void device_free(void* p) {
#ifdef MLARUN_WITH_CUDA
  if (p) cudaFree(p);
#else
  (void)p;
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
  cudaError_t err = cudaMemcpy(dst, src, nbytes, kind);
  if (err != cudaSuccess) fail("cudaMemcpy of ", nbytes, " bytes failed: ", cudaGetErrorName(err));
#else
  fail("cannot copy to or from the GPU: ", gpu_info().reason);
#endif
}

}  // namespace mlarun
