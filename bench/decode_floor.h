// The floor of a decode step: the bytes it cannot avoid reading (the weights it touches, the cache rows it attends
// over) at the device's copy bandwidth. At decode batch sizes a DeepSeek step is memory-bound, so this is the
// time a decode step's speed is judged against (bench decode's `floor ms` and `median_over_floor`).
#pragma once

#include <cstdint>

#include "runtime/model_config.h"

namespace mlarun::bench {

struct DecodeStepBytes {
  double experts_hit = 0;  // routed experts a MoE layer reads, expected (0 without MoE layers)
  double weights = 0;      // bytes of weights the step reads
  double cache = 0;        // bytes of cache rows it reads
  double total() const { return weights + cache; }
};

// For `batch` sequences decoding one token each through model `c` whose weights are `weight_values` values of
// `element_bytes` each: every weight once except the embedding (one row per sequence) and the routed experts no
// token picks. With routing uniform over the E experts (random weights route about so), a MoE layer reads
// E (1 - (1 - k / E)^batch) experts' weights in expectation. `cache_bytes`: the step's cache reads.
DecodeStepBytes decode_step_bytes(const ModelConfig& c, int64_t weight_values, int64_t element_bytes, int64_t batch,
                                  double cache_bytes);

// The current GPU's device-to-device copy bandwidth in GB/s (bytes read plus written, 2 x 512 MiB, the median of
// 5 copies after a warm-up): the floor's denominator, measured where the step runs. Throws without a GPU.
double measure_device_copy_gbps();

}  // namespace mlarun::bench
