// The benchmarks' deterministic ~N(0, 1) values (bench/random_weights.h): value `index` of `stream` depends on
// those two numbers alone, so a shard or a slice makes just its own values and the host and the GPU
// (ops::fill_random_normal) make the same ones, bit for bit. A standardised sum of four uniform 16-bit draws
// from one splitmix64 hash: mean 0, variance 1, range about +-3.5. Plain arithmetic, host and device.
#pragma once

#include <cstdint>

#include "kernels/host_device.h"

namespace mlarun::random_values {

MLARUN_HOST_DEVICE inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// sqrt(3) / 2^16: a sum of four U[0, 1) has mean 2 and variance 1/3 (the literal rounds to sqrtf(3) exactly).
constexpr float kNormalScale = 1.7320508075688772f / 65536.0f;

// Every step is exact or one rounded f32 operation (the sum fits 2^19, the subtraction is exact), so a compiler
// has nothing to fuse: the host and the device agree.
MLARUN_HOST_DEVICE inline float normal(uint64_t stream, uint64_t index) {
  const uint64_t r = splitmix64(stream ^ splitmix64(index));
  const float sum = float((r & 0xffff) + ((r >> 16) & 0xffff) + ((r >> 32) & 0xffff) + (r >> 48)) + 2.0f;
  return (sum - 2.0f * 65536.0f) * kNormalScale;
}

}  // namespace mlarun::random_values
