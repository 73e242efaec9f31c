// The paged cache pools: sizes and dtypes as asked, and a pool that cannot fit in memory is a clear error naming
// what was asked for, never a crash.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

#include "runtime/cache_pool.h"
#include "test_util.h"

using namespace mlarun;

using mlarun::testing::huge_allocations_abort;

TEST(CachePool, AllocatesOnePoolPerLayer) {
  CachePool pool = CachePool::allocate(3, 10, 16, 576, DType::BF16, Device::CPU);
  ASSERT_EQ(pool.layers.size(), 3u);
  EXPECT_EQ(pool.layers[0].shape(), (Shape{10, 16, 576}));
  EXPECT_EQ(pool.layers[2].dtype(), DType::BF16);
  EXPECT_EQ(pool.bytes(), 3 * 10 * 16 * 576 * 2);
}

TEST(CachePool, OutOfMemoryIsAClearError) {
  EXPECT_ERROR_MENTIONS(CachePool::allocate(1, 0, 64, 576, DType::F32, Device::CPU), "0 blocks");
  EXPECT_ERROR_MENTIONS(CachePool::allocate(1, 4, 64, 576, DType::F32, Device::CUDA), "cannot allocate the cache");
  if (huge_allocations_abort())
    GTEST_SKIP() << "ASAN build without ASAN_OPTIONS=allocator_may_return_null=1: ASAN would abort on the 18 PiB "
                    "allocation instead of letting it fail (ctest sets the option)";
  // 60 layers x 2^31 blocks x 64 tokens x 576 values in f32: about 18 PiB, far beyond any host.
  EXPECT_ERROR_MENTIONS(CachePool::allocate(60, int64_t(1) << 31, 64, 576, DType::F32, Device::CPU),
                        "cannot allocate the cache", "2147483648 blocks", "MiB");
}
