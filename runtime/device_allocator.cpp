// Caching device allocator (see device_allocator.h). Blocks are never split: a request takes the smallest cached
// block of its stream that is at least its rounded size and not much larger, else a new cudaMalloc; an
// out-of-memory answer empties the cache and tries once more.
#include "runtime/device_allocator.h"

#include <algorithm>

#include "runtime/error.h"

#ifdef MLARUN_WITH_CUDA
#include <cuda_runtime_api.h>

#include "runtime/cuda_check.h"
#endif

namespace mlarun {

namespace {
constexpr size_t kMiB = size_t(1) << 20;
constexpr size_t kSmallGranule = 512;

// A cached block serves a request when it wastes at most this much.
size_t largest_acceptable(size_t rounded) { return rounded < kMiB ? 2 * rounded : rounded + rounded / 4 + 2 * kMiB; }

[[maybe_unused]] double mib(int64_t bytes) { return double(bytes) / double(kMiB); }
}  // namespace

DeviceAllocator& DeviceAllocator::instance() {
  static DeviceAllocator* allocator = new DeviceAllocator();  // never destroyed: see the header
  return *allocator;
}

size_t DeviceAllocator::round_size(size_t nbytes) {
  if (nbytes == 0) nbytes = 1;
  if (nbytes < kMiB) return (nbytes + kSmallGranule - 1) / kSmallGranule * kSmallGranule;
  return (nbytes + kMiB - 1) / kMiB * kMiB;
}

void* DeviceAllocator::take_cached(size_t rounded, CUstream_st* stream) {
  auto it = free_.lower_bound({stream, rounded});
  if (it == free_.end() || it->first.first != stream || it->first.second > largest_acceptable(rounded)) return nullptr;
  void* p = it->second;
  live_[p] = Block{it->first.second, stream};
  free_.erase(it);
  return p;
}

void DeviceAllocator::free_cached_blocks(CUstream_st* only) {
  for (auto it = free_.begin(); it != free_.end();) {
    CUstream_st* const stream = it->first.first;
    if (only ? stream != only : retained_.count(stream) > 0) {
      ++it;
      continue;
    }
#ifdef MLARUN_WITH_CUDA
    cudaFree(it->second);  // a failure here leaves the block leaked; nothing better to do with it
    stats_.bytes_reserved -= int64_t(it->first.second);
    ++stats_.device_frees;
#endif
    it = free_.erase(it);
  }
}

void DeviceAllocator::retain_cached(CUstream_st* stream) {
  std::lock_guard<std::mutex> lock(mutex_);
  retained_.insert(stream);
}

void DeviceAllocator::release_retained(CUstream_st* stream) {
  std::lock_guard<std::mutex> lock(mutex_);
  retained_.erase(stream);
  free_cached_blocks(stream);
}

void* DeviceAllocator::allocate(size_t nbytes, CUstream_st* stream) {
#ifdef MLARUN_WITH_CUDA
  const size_t rounded = round_size(nbytes);
  std::lock_guard<std::mutex> lock(mutex_);
  void* p = take_cached(rounded, stream);
  if (!p) {
    cudaError_t err = cudaMalloc(&p, rounded);
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // clear it, give the cache back, try once more
      free_cached_blocks();
      err = cudaMalloc(&p, rounded);
    }
    if (err != cudaSuccess) {
      cudaGetLastError();
      size_t free_bytes = 0, total_bytes = 0;
      cudaMemGetInfo(&free_bytes, &total_bytes);
      fail("cudaMalloc of ", rounded, " bytes (", mib(int64_t(rounded)), " MiB) failed: ", cudaGetErrorName(err),
           "; mlarun holds ", mib(stats_.bytes_in_use), " MiB in tensors, the device has ",
           mib(int64_t(free_bytes)), " of ", mib(int64_t(total_bytes)), " MiB free");
    }
    ++stats_.device_mallocs;
    stats_.bytes_reserved += int64_t(rounded);
    live_[p] = Block{rounded, stream};
  }
  const Block& b = live_.at(p);
  stats_.bytes_in_use += int64_t(b.size);
  stats_.peak_bytes_in_use = std::max(stats_.peak_bytes_in_use, stats_.bytes_in_use);
  ++stats_.allocations;
  return p;
#else
  (void)stream;
  fail("cannot allocate ", nbytes, " bytes on the GPU: built without CUDA");
#endif
}

void DeviceAllocator::release(void* p) {
  if (!p) return;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = live_.find(p);
  if (it == live_.end()) return;  // not ours (cannot happen through Storage); ignore rather than throw in a destructor
  stats_.bytes_in_use -= int64_t(it->second.size);
  free_.emplace(std::make_pair(it->second.stream, it->second.size), p);
  live_.erase(it);
}

void DeviceAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  free_cached_blocks();
}

DeviceMemoryStats DeviceAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void DeviceAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.peak_bytes_in_use = stats_.bytes_in_use;
}

}  // namespace mlarun
