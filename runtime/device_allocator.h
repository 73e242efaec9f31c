// DeviceAllocator: the caching allocator behind every CUDA tensor. cudaMalloc and cudaFree synchronise the
// device and cost tens of microseconds, so a step loop that allocated through them would stall; instead freed
// blocks go to a free list (by stream and size) and the next request of about that size reuses one. After the
// first step the loop allocates nothing from the driver (stats().device_mallocs stops growing).
//
// Stream safety: a block is reused only on the stream it was allocated on. Work on one stream runs in order,
// so a block freed on the host while kernels still read it is safe to hand out again for later work on the
// same stream (PyTorch's caching allocator reasons the same way). Tensors must be used on their stream only.
//
// Process-wide by nature (like the CUDA context it draws from): one instance, created on first use and never
// destroyed, so no static-destruction order can free memory after the CUDA runtime has gone.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <mutex>
#include <unordered_map>
#include <utility>

struct CUstream_st;

namespace mlarun {

struct DeviceMemoryStats {
  int64_t bytes_in_use = 0;       // handed out to tensors now (rounded sizes)
  int64_t peak_bytes_in_use = 0;  // since the last reset_peak()
  int64_t bytes_reserved = 0;     // in use + cached in free lists (what the driver sees as ours)
  int64_t device_mallocs = 0;     // cudaMalloc calls so far
  int64_t device_frees = 0;       // cudaFree calls so far (empty_cache, or retry after out-of-memory)
  int64_t allocations = 0;        // requests served (from the cache or the driver)
};

class DeviceAllocator {
 public:
  static DeviceAllocator& instance();

  // A block of at least `nbytes` for work on `stream`; throws mlarun::Error (naming the size and the pool's
  // state) when the device is out of memory even after the cache was emptied.
  void* allocate(size_t nbytes, CUstream_st* stream);
  void release(void* p);
  // Gives every cached free block back to the driver (used before measuring free memory), but a retained stream's.
  void empty_cache();
  // The free blocks of `stream` stay cached through empty_cache and out-of-memory retries: CUDA graphs captured on
  // that stream (runtime/cuda_graph.h) still write into them when they replay. release_retained(stream) gives them
  // back to the driver and ends that (when the graphs are gone).
  void retain_cached(CUstream_st* stream);
  void release_retained(CUstream_st* stream);
  DeviceMemoryStats stats() const;
  void reset_peak();

  // Sizes are rounded up to limit fragmentation: 512 bytes below 1 MiB, then whole MiB.
  static size_t round_size(size_t nbytes);

 private:
  DeviceAllocator() = default;
  void* take_cached(size_t rounded, CUstream_st* stream);  // lock held
  // Lock held. Every cached block but the retained streams' (only == nullptr), or only `only`'s.
  void free_cached_blocks(CUstream_st* only = nullptr);

  struct Block {
    size_t size;
    CUstream_st* stream;
  };
  mutable std::mutex mutex_;
  std::unordered_map<void*, Block> live_;                              // handed out
  std::multimap<std::pair<CUstream_st*, size_t>, void*> free_;         // (stream, size) -> block
  std::set<CUstream_st*> retained_;                                     // streams whose free blocks stay
  DeviceMemoryStats stats_;
};

}  // namespace mlarun
