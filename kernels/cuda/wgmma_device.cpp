// device_runs_wgmma (wgmma_device.h): the build's sm_90a code and the device's compute capability, both needed.
#include "kernels/cuda/wgmma_device.h"

#include <cuda_runtime_api.h>

#include <atomic>

namespace mlarun::ops::cuda {

bool device_runs_wgmma() {
#if defined(MLARUN_CUDA_SM90A)
  constexpr int kMaxDevices = 64;
  static std::atomic<int> known[kMaxDevices] = {};  // 0 unknown, 1 no, 2 yes
  int device = 0, major = 0, minor = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0) {
    (void)cudaGetLastError();  // no device: nothing runs, and nothing sticky is left behind
    return false;
  }
  if (device < kMaxDevices && known[device].load() != 0) return known[device].load() == 2;
  const bool runs = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess &&
                    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) == cudaSuccess &&
                    major == 9 && minor == 0;
  (void)cudaGetLastError();
  if (device < kMaxDevices) known[device].store(runs ? 2 : 1);
  return runs;
#else
  return false;
#endif
}

}  // namespace mlarun::ops::cuda
