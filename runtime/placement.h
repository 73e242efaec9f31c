// Placement: where a model's tensors live and which dtype they compute in. The CPU reference keeps weights and
// activations in f32; the GPU keeps them in bf16 (the ops accumulate in f32). Layers load each weight from a
// WeightSource as host f32 (after FP8 block scales, sharding and any host-side rearranging), then place() it:
// convert on the host, upload, drop the host copy. So a model is never whole on the host, one tensor at a time.
#pragma once

#include <string>

#include "runtime/tensor.h"

namespace mlarun {

struct Placement {
  Device device = Device::CPU;
  DType dtype = DType::F32;  // weights and activations

  static Placement cpu() { return {}; }
  static Placement cuda_bf16() { return {Device::CUDA, DType::BF16}; }
  // The placement for `device` as mlarun runs it: CPU f32, CUDA bf16.
  static Placement for_device(Device device) { return device == Device::CUDA ? cuda_bf16() : cpu(); }
  Placement with_dtype(DType d) const { return {device, d}; }

  // `host` (CPU f32) converted to this dtype and moved to this device; `host` itself when nothing changes.
  Tensor place(const Tensor& host) const;
  std::string describe() const;  // "cpu f32", "cuda bf16"
  bool operator==(const Placement& o) const { return device == o.device && dtype == o.dtype; }
};

}  // namespace mlarun
