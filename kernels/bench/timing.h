// The one way the kernel workbenches time a call: CUDA events around each call on the default stream, a few
// untimed warm-up calls first, the median of N (robust to the odd slow run, unlike the mean). Header-only; the
// workbenches are single .cu files.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <vector>

#include "runtime/cuda_check.h"

namespace mlarun::ops::cuda::bench {

// Calls fn(i) for i in [0, warmup) untimed, then times fn(i) for i in [0, reps) one by one (a start and a stop
// event around each); returns the median in milliseconds. fn gets i so a caller can rotate input sets.
template <typename Fn>
double median_ms(int warmup, int reps, Fn&& fn) {
  for (int i = 0; i < warmup; ++i) fn(i);
  cudaEvent_t start, stop;
  MLARUN_CUDA_CHECK(cudaEventCreate(&start));
  MLARUN_CUDA_CHECK(cudaEventCreate(&stop));
  std::vector<float> ms(static_cast<size_t>(std::max(reps, 1)));
  for (size_t i = 0; i < ms.size(); ++i) {
    MLARUN_CUDA_CHECK(cudaEventRecord(start));
    fn(int(i));
    MLARUN_CUDA_CHECK(cudaEventRecord(stop));
    MLARUN_CUDA_CHECK(cudaEventSynchronize(stop));
    MLARUN_CUDA_CHECK(cudaEventElapsedTime(&ms[i], start, stop));
  }
  MLARUN_CUDA_CHECK(cudaEventDestroy(start));
  MLARUN_CUDA_CHECK(cudaEventDestroy(stop));
  std::nth_element(ms.begin(), ms.begin() + ms.size() / 2, ms.end());
  return ms[ms.size() / 2];
}

}  // namespace mlarun::ops::cuda::bench
