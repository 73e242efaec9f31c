// Runs fn(begin, end) over [0, n) in contiguous pieces on up to 16 threads, once each piece would hold at least a
// million elements (about a millisecond of simple work); smaller jobs stay on the caller's thread. For element-wise
// host work whose result does not depend on the split (bulk dtype conversions, the benchmarks' random values).
// fn must not throw: check arguments before the call.
#pragma once

#include <algorithm>
#include <cstdint>
#include <thread>
#include <vector>

namespace mlarun {

template <typename Fn>
void parallel_ranges(int64_t n, Fn fn) {
  constexpr int64_t kMinPerThread = int64_t(1) << 20;
  const int64_t threads = std::min<int64_t>({int64_t(std::max(1u, std::thread::hardware_concurrency())), 16,
                                             n / kMinPerThread});
  if (threads <= 1) return fn(int64_t(0), n);
  const int64_t piece = (n + threads - 1) / threads;
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < threads; ++t)
    pool.emplace_back([=] { fn(std::min(n, t * piece), std::min(n, (t + 1) * piece)); });
  fn(int64_t(0), std::min(n, piece));
  for (std::thread& th : pool) th.join();
}

}  // namespace mlarun
