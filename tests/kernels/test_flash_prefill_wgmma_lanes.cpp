// One key tile of the Hopper flash prefill kernel (kernel_wgmma.cuh) replayed on the CPU, for every head-dim pair
// it serves: Q, K and V stored where the kernel's loader stores them (flash_prefill/wgmma_lanes.h chunk_offset),
// S read through the kernel's descriptors by an emulation of wgmma (tests/kernels/wgmma_emulation.h, the ISA's
// view, written apart from the kernel's headers), P built from the accumulators the kernel's way (acc_to_a) and
// P V through its V descriptors. S and O must equal the plain products exactly (inputs are multiples of 1/8 and
// the emulation sums in double).
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/flash_prefill/config.h"
#include "kernels/cuda/flash_prefill/wgmma_lanes.h"
#include "kernels/cuda/wgmma_sm90.cuh"
#include "tests/kernels/wgmma_emulation.h"

namespace {

namespace flash = mlarun::ops::cuda::flash;
namespace emu = mlarun::test::wgmma;

using emu::Matrix;
using emu::random_eighths;
using emu::zeros;

using emu::Smem;

// Stores a rows x d matrix as the kernel's load_slabs does: chunk c of row r at base + chunk_offset(rows, r, c).
void store(Smem& s, uint32_t base, const Matrix& m) {
  const int rows = int(m.size()), d = int(m[0].size());
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < d / 8; ++c)
      for (int e = 0; e < 8; ++e)
        s.put(base + flash::wg::chunk_offset(rows, r, c) + 2 * e, m[size_t(r)][size_t(8 * c + e)]);
}

// load_slabs_by_rows (the pipelined kernel's loads, kernel_wgmma.cuh) for every tile it loads there (Q, K and V at
// each head-dim pair, 256 threads; 128 threads too): each (row, chunk) of the tile is copied by exactly one thread
// and pass, to where load_slabs would put it (chunk_offset), and a copy's offset from the thread's first one is the
// same for every thread (the kernel adds it as a constant).
TEST(FlashPrefillWgmmaLanes, LoadsByRowsPutEveryChunkWhereTheDescriptorsReadIt) {
  for (const int threads : {256, 128})
    for (const int rows : {128, 64})
      for (const int d : {64, 128, 192, 256}) {
        if (rows % (threads / 8) != 0) continue;
        SCOPED_TRACE(std::to_string(threads) + " threads, " + std::to_string(rows) + " x " + std::to_string(d));
        std::vector<int> copies(size_t(rows * (d / 8)), 0);
        for (int tid = 0; tid < threads; ++tid)
          for (int pass = 0; pass < rows / (threads / 8); ++pass)
            for (int slab = 0; slab < d / 64; ++slab) {
              const flash::wg::ByRowsCopy c = flash::wg::by_rows_copy(rows, threads, tid, pass, slab);
              ASSERT_TRUE(c.row >= 0 && c.row < rows && c.chunk >= 0 && c.chunk < d / 8);
              ++copies[size_t(c.row * (d / 8) + c.chunk)];
              EXPECT_EQ(flash::wg::chunk_offset(rows, tid / 8, tid % 8) + c.offset,
                        flash::wg::chunk_offset(rows, c.row, c.chunk))
                  << "tid " << tid << " pass " << pass << " slab " << slab;
              EXPECT_EQ(c.offset, flash::wg::by_rows_copy(rows, threads, 0, pass, slab).offset);
            }
        for (size_t i = 0; i < copies.size(); ++i) ASSERT_EQ(copies[i], 1) << "chunk " << i;
      }
}

template <int kDQK, int kDV>
void replay_tile() {
  using W = flash::WgmmaTile<kDQK, kDV>;
  constexpr int kM = W::kBlockM, kN = W::kBlockN;
  SCOPED_TRACE(std::to_string(kDQK) + "/" + std::to_string(kDV));
  const uint32_t q_base = 0, k_base = (kDQK / 64) * kM * 128, v_base = k_base + (kDQK / 64) * kN * 128;
  Smem s(size_t(W::kSmemBytes));
  const Matrix q = random_eighths(kM, kDQK, 1), k = random_eighths(kN, kDQK, 2), v = random_eighths(kN, kDV, 3);
  store(s, q_base, q);
  store(s, k_base, k);
  store(s, v_base, v);
  for (int g = 0; g < 2; ++g) {
    Matrix sc = zeros(64, kN);  // S of warpgroup g: its 64 query rows x kN keys
    for (int slab = 0; slab < kDQK / 64; ++slab)
      for (int kk = 0; kk < 4; ++kk)
        emu::mma_ss(sc, s, flash::wg::q_desc(q_base, kM, g, slab, kk), flash::wg::k_desc(k_base, kN, slab, kk),
                    false, kN);
    for (int m = 0; m < 64; ++m)
      for (int n = 0; n < kN; ++n) {
        double want = 0;
        for (int d = 0; d < kDQK; ++d) want += q[size_t(64 * g + m)][size_t(d)] * k[size_t(n)][size_t(d)];
        ASSERT_EQ(sc[size_t(m)][size_t(n)], want) << "S of warpgroup " << g << " (" << m << ", " << n << ")";
      }
    // P = S as the kernel packs it into registers, then O = P V through v_desc.
    Matrix o = zeros(64, kDV);
    for (int kk = 0; kk < kN / 16; ++kk)
      emu::mma_rs(o, emu::a_from_acc(sc, kk), s, flash::wg::v_desc(v_base, kN, kk), kDV);
    for (int m = 0; m < 64; ++m)
      for (int c = 0; c < kDV; ++c) {
        double want = 0;
        for (int n = 0; n < kN; ++n) want += sc[size_t(m)][size_t(n)] * v[size_t(n)][size_t(c)];
        ASSERT_EQ(o[size_t(m)][size_t(c)], want) << "O of warpgroup " << g << " (" << m << ", " << c << ")";
      }
  }
}

TEST(FlashPrefillWgmmaLanes, OneKeyTileGivesTheProductsForEveryHeadDimPair) {
  replay_tile<192, 128>();
  replay_tile<128, 128>();
  replay_tile<64, 64>();
  replay_tile<256, 256>();
}

}  // namespace
