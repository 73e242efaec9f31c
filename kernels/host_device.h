// MLARUN_HOST_DEVICE: `__host__ __device__` under nvcc, nothing elsewhere, for the plain arithmetic that kernels
// and their CPU tests share (lane maps, layouts, the decode scheduler's plan, the benchmarks' random values).
#pragma once

#if defined(__CUDACC__)
#define MLARUN_HOST_DEVICE __host__ __device__
#else
#define MLARUN_HOST_DEVICE
#endif
