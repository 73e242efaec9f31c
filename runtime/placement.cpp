// Placing host f32 tensors (see placement.h).
#include "runtime/placement.h"

#include "runtime/error.h"

namespace mlarun {

Tensor Placement::place(const Tensor& host) const {
  MLARUN_CHECK(host.device() == Device::CPU, "place: expected a host tensor, got ", host.describe());
  Tensor converted = host.dtype() == dtype ? host : host.to_dtype(dtype);
  return device == Device::CPU ? converted : converted.to(device);
}

std::string Placement::describe() const { return std::string(device_name(device)) + " " + dtype_name(dtype); }

}  // namespace mlarun
