// The wgmma layer's layout arithmetic (kernels/cuda/wgmma_sm90.cuh) on the CPU: the 128-byte swizzle, the
// descriptors' bit fields, and for every element an operand holds, the address the tensor cores read (rebuilt
// here from the descriptor's fields and the PTX ISA's canonical SW128 layouts, written independently of the
// header's slab_offset) equals the address the loaders store it at. Also the accumulator map covers a 64 x N tile
// exactly once. What this cannot check (that the hardware reads as the ISA says) the GPU probe checks.
#include <gtest/gtest.h>

#include <cstdint>
#include <set>
#include <vector>

#include "kernels/cuda/wgmma_sm90.cuh"
#include "tests/kernels/wgmma_emulation.h"

namespace {

namespace wg = mlarun::ops::cuda::wgmma_sm90;
namespace test = mlarun::test;

using test::wgmma::decode;
using test::wgmma::Fields;
using test::wgmma::isa_swizzle;
using test::wgmma::k_major_read;
using test::wgmma::n_major_read;

TEST(WgmmaLayout, SwizzleIsTheIsaPermutationOfEachAtom) {
  for (uint32_t addr = 0; addr < 4 * wg::kAtomBytes; addr += 2) {
    ASSERT_EQ(wg::swizzle128(addr), isa_swizzle(addr)) << addr;
    ASSERT_EQ(wg::swizzle128(addr) / wg::kAtomBytes, addr / wg::kAtomBytes) << "stays in its atom";
    ASSERT_EQ(wg::swizzle128(wg::swizzle128(addr)), addr) << "an involution";
  }
}

TEST(WgmmaLayout, DescriptorFieldsRoundTrip) {
  const Fields f = decode(wg::sw128_desc(0x12400, 8192, 1024));
  EXPECT_EQ(f.start, 0x12400u);
  EXPECT_EQ(f.lbo, 8192u);
  EXPECT_EQ(f.sbo, 1024u);
  EXPECT_EQ(f.base_offset, 0u);
  EXPECT_EQ(f.swizzle, 1u);  // 128-byte swizzle
  EXPECT_EQ(decode(wg::k_major_desc(0x8000, 3)).start, 0x8000u + 96);
}

// desc_advance (what the kernels step their descriptors with) equals making the descriptor at the moved address,
// for every 16-byte aligned pair of addresses in shared memory's 256 KB, and for both operand orders' offsets.
TEST(WgmmaLayout, AdvancedDescriptorIsTheDescriptorOfTheMovedAddress) {
  constexpr uint32_t kSmem = 1u << 18;
  for (uint32_t base = 0; base < kSmem; base += 1024 * 7 + 16)
    for (uint32_t bytes = 0; base + bytes < kSmem; bytes += 16 * 61) {
      ASSERT_EQ(wg::desc_advance(wg::sw128_desc(base, 16, 1024), bytes), wg::sw128_desc(base + bytes, 16, 1024))
          << base << " + " << bytes;
      ASSERT_EQ(wg::desc_advance(wg::sw128_desc(base, 0x9000, 1024), bytes),
                wg::sw128_desc(base + bytes, 0x9000, 1024))
          << base << " + " << bytes;
    }
  // The kernels' own steps: k-step k16 of a slab, and N-major row k0.
  for (uint32_t k16 = 0; k16 < 4; ++k16)
    EXPECT_EQ(wg::desc_advance(wg::k_major_desc(0x1c400, 0), 32 * k16), wg::k_major_desc(0x1c400, k16));
  for (uint32_t k0 = 0; k0 < 64; k0 += 16)
    EXPECT_EQ(wg::desc_advance(wg::n_major_desc(0x24000, 0, 8192), wg::kSlabRowBytes * k0),
              wg::n_major_desc(0x24000, k0, 8192));
}

// Q . K^T: a [rows x 576] matrix stored as nine slabs; every k-step of every slab reads each element where the
// loader put it (wgmma_probe.cu load_slabs and the kernels place element (r, c) at slab c / 64, row r, col c % 64).
TEST(WgmmaLayout, KMajorStepsReadWhatTheLoaderStored) {
  constexpr uint32_t kBase = 0x4000, kRows = 64, kCols = 576, kSlab = kRows * wg::kSlabRowBytes;
  auto stored = [&](int r, int c) {
    return wg::swizzle128(kBase + (c / 64) * kSlab + wg::slab_offset(r, c % 64));
  };
  std::set<uint32_t> seen;
  for (int s = 0; s < int(kCols / 64); ++s)
    for (int k16 = 0; k16 < 4; ++k16) {
      const uint64_t desc = wg::k_major_desc(kBase + s * kSlab, k16);
      for (int mn = 0; mn < int(kRows); ++mn)
        for (int k = 0; k < 16; ++k) {
          const uint32_t read = k_major_read(desc, mn, k);
          ASSERT_EQ(read, stored(mn, 64 * s + 16 * k16 + k)) << "slab " << s << " step " << k16 << " (" << mn
                                                             << ", " << k << ")";
          seen.insert(read);
        }
    }
  EXPECT_EQ(seen.size(), size_t(kRows) * kCols) << "every element read once";
}

// P . V: V [64 tokens x 512] in eight slabs read N-major, 256 columns (four slabs) per warpgroup, four k-steps of
// 16 tokens.
TEST(WgmmaLayout, NMajorStepsReadWhatTheLoaderStored) {
  constexpr uint32_t kBase = 0x10000, kTokens = 64, kSlab = kTokens * wg::kSlabRowBytes;
  auto stored = [&](int t, int c) {
    return wg::swizzle128(kBase + (c / 64) * kSlab + wg::slab_offset(t, c % 64));
  };
  std::set<uint32_t> seen;
  for (int g = 0; g < 2; ++g)
    for (int kk = 0; kk < 4; ++kk) {
      const uint64_t desc = wg::n_major_desc(kBase + 4 * g * kSlab, 16 * kk, kSlab);
      for (int k = 0; k < 16; ++k)
        for (int n = 0; n < 256; ++n) {
          const uint32_t read = n_major_read(desc, k, n);
          ASSERT_EQ(read, stored(16 * kk + k, 256 * g + n)) << "group " << g << " step " << kk;
          seen.insert(read);
        }
    }
  EXPECT_EQ(seen.size(), size_t(kTokens) * 512);
}

TEST(WgmmaLayout, AccumulatorMapCoversTheTileOnce) {
  for (int n : {32, 64, 256}) {
    std::vector<int> count(size_t(64 * n), 0);
    for (int warp = 0; warp < 4; ++warp)
      for (int lane = 0; lane < 32; ++lane)
        for (int e = 0; e < n / 2; ++e) ++count[size_t(wg::acc_row(warp, lane, e) * n + wg::acc_col(lane, e))];
    for (int i = 0; i < 64 * n; ++i) ASSERT_EQ(count[size_t(i)], 1) << "N " << n << " element " << i;
  }
}

}  // namespace
