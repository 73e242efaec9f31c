// Helpers the CPU backend files share (twin of cuda/cuda_common.h): the dot product every matrix product and
// attention score uses, so all of them sum in the same fixed order.
#pragma once

#include <cstdint>

namespace mlarun::ops::cpu {

// Dot product with 8 independent partial sums, so the compiler can vectorise without -ffast-math.
inline float dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  float tail = 0;
  for (; i < n; ++i) tail += a[i] * b[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

}  // namespace mlarun::ops::cpu
