// Error checks for the four libraries the GPU path calls: the CUDA runtime, cuBLAS, NCCL and MPI. Each turns a
// failed call into mlarun::Error naming the file, the line, the call as written and the library's own
// explanation, so a GPU failure reads like every other error of the runtime. The macros expand where they are
// used: include the library's header (cuda_runtime_api.h, cublas_v2.h, nccl.h, mpi.h) in that file; this header
// itself needs none of them, so it is safe in any translation unit.
#pragma once

#include <string>

#include "runtime/error.h"

#ifndef MLARUN_CUDA_CHECK
#define MLARUN_CUDA_CHECK(call)                                                                         \
  do {                                                                                                  \
    cudaError_t cuda_status_ = (call);                                                                  \
    if (cuda_status_ != cudaSuccess)                                                                    \
      ::mlarun::fail(__FILE__, ":", __LINE__, ": ", #call, " failed: ", cudaGetErrorName(cuda_status_), \
                     " (", cudaGetErrorString(cuda_status_), ")");                                      \
  } while (0)
#endif

// After a kernel launch: reports a bad launch configuration (errors during execution surface at the next
// synchronising call, which is checked too).
#ifndef MLARUN_CUDA_CHECK_LAUNCH
#define MLARUN_CUDA_CHECK_LAUNCH(kernel_name)                                                            \
  do {                                                                                                  \
    cudaError_t cuda_status_ = cudaGetLastError();                                                      \
    if (cuda_status_ != cudaSuccess)                                                                    \
      ::mlarun::fail(__FILE__, ":", __LINE__, ": launch of ", kernel_name, " failed: ",                  \
                     cudaGetErrorName(cuda_status_), " (", cudaGetErrorString(cuda_status_), ")");      \
  } while (0)
#endif

#ifndef MLARUN_CUBLAS_CHECK
#define MLARUN_CUBLAS_CHECK(call)                                                                 \
  do {                                                                                            \
    cublasStatus_t cublas_status_ = (call);                                                       \
    if (cublas_status_ != CUBLAS_STATUS_SUCCESS)                                                  \
      ::mlarun::fail(__FILE__, ":", __LINE__, ": ", #call, " failed: ",                           \
                     cublasGetStatusName(cublas_status_), " (", cublasGetStatusString(cublas_status_), ")"); \
  } while (0)
#endif

#ifndef MLARUN_NCCL_CHECK
#define MLARUN_NCCL_CHECK(call)                                                                           \
  do {                                                                                                    \
    ncclResult_t nccl_status_ = (call);                                                                   \
    if (nccl_status_ != ncclSuccess)                                                                      \
      ::mlarun::fail(__FILE__, ":", __LINE__, ": ", #call, " failed: ", ncclGetErrorString(nccl_status_)); \
  } while (0)
#endif

#ifndef MLARUN_MPI_CHECK
#define MLARUN_MPI_CHECK(call)                                                                       \
  do {                                                                                               \
    int mpi_status_ = (call);                                                                        \
    if (mpi_status_ != MPI_SUCCESS) {                                                                \
      char mpi_text_[MPI_MAX_ERROR_STRING];                                                          \
      int mpi_len_ = 0;                                                                              \
      MPI_Error_string(mpi_status_, mpi_text_, &mpi_len_);                                           \
      ::mlarun::fail(__FILE__, ":", __LINE__, ": ", #call, " failed (MPI error ", mpi_status_, "): ", \
                     std::string(mpi_text_, size_t(mpi_len_)));                                      \
    }                                                                                                \
  } while (0)
#endif
