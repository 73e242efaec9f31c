// MLARUN_CUDA_CHECK: turns a failed CUDA runtime call into mlarun::Error naming the call, the place and the
// CUDA error, so kernels and workbenches report failures the same way the rest of the runtime does.
// Guarded: parallel/nccl_communicator.cpp defines the same macro (same text) for itself.
#pragma once

#include <cuda_runtime_api.h>

#include "runtime/error.h"

#ifndef MLARUN_CUDA_CHECK
#define MLARUN_CUDA_CHECK(call)                                                                       \
  do {                                                                                                \
    cudaError_t cuda_status_ = (call);                                                                \
    if (cuda_status_ != cudaSuccess)                                                                  \
      ::mlarun::fail(__FILE__, ":", __LINE__, ": ", #call, " failed: ", cudaGetErrorName(cuda_status_), \
                     " (", cudaGetErrorString(cuda_status_), ")");                                    \
  } while (0)
#endif
