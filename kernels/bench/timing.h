// The one way the kernel workbenches time a call: CUDA events around each call on the default stream, a few
// untimed warm-up calls first, the median of N (robust to the odd slow run, unlike the mean). Header-only; the
// workbenches are single .cu files.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <functional>
#include <utility>
#include <vector>

#include "runtime/cuda_check.h"

namespace mlarun::ops::cuda::bench {

// Calls each fns[k](i) for i in [0, warmup) untimed, then times them in turn within each repetition i in [0, reps)
// (call 0, 1, ..., then again; a start and a stop event around each), so that whatever drifts over a run (the GPU's
// clocks, its temperature) falls on all of them alike instead of on whichever was timed last. Returns each call's
// median in milliseconds, in the order given. fns get i so a caller can rotate input sets.
inline std::vector<double> median_ms_interleaved(int warmup, int reps,
                                                 const std::vector<std::function<void(int)>>& fns) {
  for (int i = 0; i < warmup; ++i)
    for (const auto& fn : fns) fn(i);
  cudaEvent_t start, stop;
  MLARUN_CUDA_CHECK(cudaEventCreate(&start));
  MLARUN_CUDA_CHECK(cudaEventCreate(&stop));
  std::vector<std::vector<float>> ms(fns.size(), std::vector<float>(static_cast<size_t>(std::max(reps, 1))));
  for (size_t i = 0; i < ms[0].size(); ++i)
    for (size_t k = 0; k < fns.size(); ++k) {
      MLARUN_CUDA_CHECK(cudaEventRecord(start));
      fns[k](int(i));
      MLARUN_CUDA_CHECK(cudaEventRecord(stop));
      MLARUN_CUDA_CHECK(cudaEventSynchronize(stop));
      MLARUN_CUDA_CHECK(cudaEventElapsedTime(&ms[k][i], start, stop));
    }
  MLARUN_CUDA_CHECK(cudaEventDestroy(start));
  MLARUN_CUDA_CHECK(cudaEventDestroy(stop));
  std::vector<double> medians;
  for (auto& m : ms) {
    std::nth_element(m.begin(), m.begin() + m.size() / 2, m.end());
    medians.push_back(m[m.size() / 2]);
  }
  return medians;
}

// The same for one call: its median in milliseconds.
template <typename Fn>
double median_ms(int warmup, int reps, Fn&& fn) {
  return median_ms_interleaved(warmup, reps, {std::function<void(int)>(std::forward<Fn>(fn))})[0];
}

}  // namespace mlarun::ops::cuda::bench
