// Whether the current device runs the Hopper (wgmma) kernels: this build carries sm_90a code (CMake defines
// MLARUN_CUDA_SM90A when CMAKE_CUDA_ARCHITECTURES names 90a) and the device is compute capability 9.0. Anywhere
// else those kernels compile to a trap (kernels/cuda/wgmma_sm90.cuh), so the default choices (mla_decode's
// AttendKernel::Auto, FlashPrefillParams::wgmma) take the mma.sync kernels there. Plain C++ header.
#pragma once

namespace mlarun::ops::cuda {

// A device attribute query, cached per device: safe during CUDA graph capture. False without a device.
bool device_runs_wgmma();

}  // namespace mlarun::ops::cuda
