// decode_step_bytes and the copy-bandwidth measurement (see decode_floor.h).
#include "bench/decode_floor.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "bench/bench_common.h"
#include "runtime/device.h"
#include "runtime/tensor.h"

namespace mlarun::bench {

DecodeStepBytes decode_step_bytes(const ModelConfig& c, int64_t weight_values, int64_t element_bytes, int64_t batch,
                                  double cache_bytes) {
  DecodeStepBytes b;
  const int64_t rows = std::min(batch, c.vocab_size);  // of the embedding: the sequences' tokens at most
  double values = double(weight_values) - double(c.vocab_size - rows) * double(c.dim);
  const int64_t moe_layers = c.num_moe_layers();
  if (moe_layers > 0 && c.n_routed_experts > 0) {
    const double E = double(c.n_routed_experts), k = double(c.n_activated_experts);
    b.experts_hit = E * (1.0 - std::pow(1.0 - k / E, double(batch)));
    values -= double(moe_layers) * (E - b.experts_hit) * 3.0 * double(c.dim) * double(c.moe_inter_dim);
  }
  b.weights = values * double(element_bytes);
  b.cache = cache_bytes;
  return b;
}

double measure_device_copy_gbps() {
  constexpr int64_t kBytes = int64_t(512) << 20;
  const Tensor src = Tensor::zeros({kBytes}, DType::F8_E4M3, Device::CUDA);
  Tensor dst = Tensor::empty({kBytes}, DType::F8_E4M3, Device::CUDA);
  copy_bytes(dst.raw(), Device::CUDA, src.raw(), Device::CUDA, size_t(kBytes));  // warm-up
  std::vector<double> gbps;
  for (int i = 0; i < 5; ++i) {
    DeviceEvent start, stop;
    start.record();
    copy_bytes(dst.raw(), Device::CUDA, src.raw(), Device::CUDA, size_t(kBytes));
    stop.record();
    stop.synchronize();
    gbps.push_back(2.0 * double(kBytes) / (DeviceEvent::elapsed_ms(start, stop) * 1e6));
  }
  return median(gbps);
}

}  // namespace mlarun::bench
