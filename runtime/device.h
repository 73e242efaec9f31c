// The device layer: the only place the runtime core talks to the CUDA runtime. Without a CUDA build every
// query answers "no GPU"; with one, "insufficient driver" (35) and "no device" (100) also mean "no GPU", so
// GPU tests skip on machines without one. Nothing here runs at static initialisation.
#pragma once

#include <cstddef>
#include <string>

#include "runtime/tensor.h"

namespace mlarun {

struct GpuInfo {
  bool available = false;
  int device_count = 0;
  std::string reason;  // why no GPU is usable, when !available
};

// Probes the CUDA runtime once (thread-safe) and caches the answer.
const GpuInfo& gpu_info();
bool gpu_available();

void* device_malloc(size_t nbytes);  // throws mlarun::Error on failure or when there is no CUDA build
void device_free(void* p);
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes);

}  // namespace mlarun
