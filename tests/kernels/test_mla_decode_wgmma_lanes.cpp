// One step of the wgmma attend kernel (attend_wgmma.cu) replayed on the CPU: q rows and a cached tile stored where
// the kernel stores them (wgmma_lanes.h row_piece), the scores read through the kernel's descriptors by an
// emulation of wgmma (tests/kernels/wgmma_emulation.h: the ISA's view of shared memory, written independently of
// the kernel's headers), the score accumulators turned into P the kernel's way (registers; the split variant also
// writes its half to a shared slab, and P.V takes its own half from registers, the other from the slab), and P.V
// through the kernel's V descriptors. S and O must be the plain products (exact: inputs are small multiples of 1/8
// and the emulation sums in double), every element once, for both variants; and a pair of steps of the seesaw
// kernel (attend_wgmma_seesaw.cu), its P tiles over the stages' slab 8.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/mla_decode/config.h"
#include "kernels/cuda/mla_decode/wgmma_lanes.h"
#include "kernels/cuda/wgmma_sm90.cuh"
#include "tests/kernels/wgmma_emulation.h"

namespace {

namespace mla = mlarun::ops::cuda::mla;
namespace wg = mlarun::ops::cuda::mla::wg;
namespace sm90 = mlarun::ops::cuda::wgmma_sm90;
namespace emu = mlarun::test::wgmma;

constexpr int kRows = mla::kWgRows, kTokens = mla::kWgBlockN, kD = mla::kHeadDimQK, kDv = mla::kHeadDimV;

using emu::Matrix;
using emu::random_eighths;
using emu::Smem;
using emu::zeros;

// Stores rows x 576 the way the kernel's loader does: 16-byte pieces at base + row_piece(row, byte offset).
void store_rows(Smem& s, uint32_t base, const Matrix& m) {
  for (int r = 0; r < int(m.size()); ++r)
    for (int off = 0; off < kD * 2; off += 16)
      for (int e = 0; e < 8; ++e) s.put(base + wg::row_piece(r, off) + 2 * e, m[size_t(r)][size_t(off / 2 + e)]);
}

// The kernel's P stores: thread (warp, lane), k-step kk, register i holds accumulator elements e and e + 1 (one
// row, two adjacent tokens), stored at p_offset from `p_base`.
void store_p_tile(Smem& s, uint32_t p_base, const Matrix& p, int tok0, int score_n) {
  for (int thread = 0; thread < 128; ++thread) {
    const int warp = thread / 32, lane = thread % 32;
    for (int kk = 0; kk < score_n / 16; ++kk)
      for (int i = 0; i < 4; ++i) {
        const int e = wg::p_element(kk, i), r = sm90::acc_row(warp, lane, e), c = sm90::acc_col(lane, e);
        ASSERT_EQ(sm90::acc_row(warp, lane, e + 1), r);
        ASSERT_EQ(sm90::acc_col(lane, e + 1), c + 1);
        s.put(p_base + wg::p_offset(r, tok0 + c), p[size_t(r)][size_t(c)]);
        s.put(p_base + wg::p_offset(r, tok0 + c + 1), p[size_t(r)][size_t(c + 1)]);
      }
  }
}

void replay_step(bool split) {
  SCOPED_TRACE(split ? "split scores" : "every warpgroup scores all tokens");
  const uint32_t q_base = 0, stage = uint32_t(mla::kWgQBytes) + uint32_t(mla::kWgStageBytes);  // ring stage 1
  const uint32_t p_base = uint32_t(mla::kWgQBytes + mla::kWgStages * mla::kWgStageBytes);
  Smem s(mla::kWgSplitSmemBytes);
  const Matrix q = random_eighths(kRows, kD, split ? 11 : 12), kv = random_eighths(kTokens, kD, split ? 13 : 14);
  store_rows(s, q_base, q);
  store_rows(s, stage, kv);
  const int score_n = split ? kTokens / 2 : kTokens;

  Matrix p_full = zeros(kRows, kTokens);  // P as the two warpgroups hold it (here P = S, to check indices exactly)
  std::array<Matrix, 2> p_regs;          // each warpgroup's own scores, as its registers hold them
  for (int g = 0; g < 2; ++g) {
    const int tok0 = wg::score_tok0(split, g);
    Matrix& sc = p_regs[size_t(g)];
    sc = zeros(64, score_n);
    for (int slab = 0; slab < mla::kWgSlabs; ++slab)
      for (int k = 0; k < 4; ++k)
        emu::mma_ss(sc, s, wg::q_desc(q_base, slab, k), wg::k_desc(stage, slab, k, tok0), false, score_n);
    for (int m = 0; m < kRows; ++m)
      for (int t = 0; t < score_n; ++t) {
        double want = 0;
        for (int d = 0; d < kD; ++d) want += q[size_t(m)][size_t(d)] * kv[size_t(tok0 + t)][size_t(d)];
        ASSERT_EQ(sc[size_t(m)][size_t(t)], want) << "S of warpgroup " << g << " (" << m << ", " << t << ")";
        p_full[size_t(m)][size_t(tok0 + t)] = want;
      }
    if (split) store_p_tile(s, p_base, sc, tok0, score_n);  // the split variant's P slab, as the kernel writes it
  }

  for (int g = 0; g < 2; ++g) {
    Matrix o = zeros(64, 256);
    std::array<int, 4> k_steps_done{};
    for (int i = 0; i < 4; ++i) {
      const int kk = split ? wg::split_pv_kstep(g, i) : i;  // the k-step of the stage's tokens
      ++k_steps_done[size_t(kk)];
      if (split && i >= score_n / 16) {  // the other warpgroup's tokens, from the P slab
        emu::mma_ss(o, s, wg::p_desc(p_base, kk), wg::v_desc(stage, g, kk), true, 256);
        continue;
      }
      // The register P of register k-step i, built as the kernel builds it from its own S (P here).
      emu::mma_rs(o, emu::a_from_acc(p_regs[size_t(g)], i), s, wg::v_desc(stage, g, kk), 256);
    }
    for (int kk = 0; kk < 4; ++kk) ASSERT_EQ(k_steps_done[size_t(kk)], 1) << "k-step " << kk << " of P.V once";
    for (int m = 0; m < kRows; ++m)
      for (int c = 0; c < 256; ++c) {
        double want = 0;
        for (int t = 0; t < kTokens; ++t) want += p_full[size_t(m)][size_t(t)] * kv[size_t(t)][size_t(256 * g + c)];
        ASSERT_EQ(o[size_t(m)][size_t(c)], want) << "O of warpgroup " << g << " (" << m << ", " << c << ")";
      }
  }
  if (!split) return;
  for (int r = 0; r < kRows; ++r)
    for (int t = 0; t < kTokens; ++t)
      ASSERT_EQ(s.writes.at((p_base + wg::p_offset(r, t)) / 2), 1) << "P (" << r << ", " << t << ") written once";
}

// A pair of steps of the seesaw kernel (attend_wgmma_seesaw.cu): A scores the tile in stage 0 and B the one in
// stage 1 (each all 64 tokens); each writes its P into its stage's P tile (p_tile_of_stage: slab 8, k_pe, after
// its scores) and multiplies its P from registers by its 256 columns of its own tile's V and the other's P tile by
// its columns of the other tile's V. Each half of O must be [P_A P_B] . [V_0; V_1] (here P = S), and the P tiles
// must leave V's slabs alone.
// A's P tile goes over slab 8 of its own step's stage, B's into the frame's tile after the ring
// (attend_wgmma_ws.cuh: WsSmem::tile).
TEST(MlaDecodeWgmmaLanes, SeesawPairGivesTheProductsAndItsPTilesLeaveVAlone) {
  const uint32_t q_base = 0, stage0 = uint32_t(mla::kWgQBytes), stage1 = stage0 + uint32_t(mla::kWgStageBytes);
  const uint32_t b_tile = stage0 + uint32_t(mla::kWgStages * mla::kWgStageBytes);
  Smem s(mla::kWgSmemBytes + mla::kWgSlabBytes);
  const Matrix q = random_eighths(kRows, kD, 21);
  const Matrix kv[2] = {random_eighths(kTokens, kD, 22), random_eighths(kTokens, kD, 23)};
  store_rows(s, q_base, q);
  store_rows(s, stage0, kv[0]);
  store_rows(s, stage1, kv[1]);
  const uint32_t stages[2] = {stage0, stage1}, p_tiles[2] = {wg::p_tile_of_stage(stage0), b_tile};
  Matrix p[2] = {zeros(kRows, kTokens), zeros(kRows, kTokens)};
  for (int g = 0; g < 2; ++g) {  // warpgroup g scores the tile in stage g, then stores its P
    for (int slab = 0; slab < mla::kWgSlabs; ++slab)
      for (int k = 0; k < 4; ++k)
        emu::mma_ss(p[g], s, wg::q_desc(q_base, slab, k), wg::k_desc(stages[g], slab, k, 0), false, kTokens);
    store_p_tile(s, p_tiles[g], p[g], 0, kTokens);
  }
  for (int g = 0; g < 2; ++g) {
    Matrix o = zeros(64, 256);
    for (int kk = 0; kk < 4; ++kk) {
      emu::mma_rs(o, emu::a_from_acc(p[g], kk), s, wg::v_desc(stages[g], g, kk), 256);  // its own, from registers
      emu::mma_ss(o, s, wg::p_desc(p_tiles[1 - g], kk), wg::v_desc(stages[1 - g], g, kk), true,
                  256);  // the other's, from its P tile
    }
    for (int m = 0; m < kRows; ++m)
      for (int c = 0; c < 256; ++c) {
        double want = 0;
        for (int h = 0; h < 2; ++h)
          for (int t = 0; t < kTokens; ++t) want += p[h][size_t(m)][size_t(t)] * kv[h][size_t(t)][size_t(256 * g + c)];
        ASSERT_EQ(o[size_t(m)][size_t(c)], want) << "O of warpgroup " << g << " (" << m << ", " << c << ")";
      }
  }
  for (int g = 0; g < 2; ++g)
    for (uint32_t b = 0; b < uint32_t(mla::kWgStageBytes); b += 2) {
      const bool in_p_tile = g == 0 && stages[g] + b >= wg::p_tile_of_stage(stages[g]);
      ASSERT_EQ(s.writes.at((stages[g] + b) / 2), in_p_tile ? 2 : 1) << "stage " << g << " byte " << b;
    }
  for (uint32_t b = 0; b < uint32_t(mla::kWgSlabBytes); b += 2)
    ASSERT_EQ(s.writes.at((b_tile + b) / 2), 1) << "B's P tile, byte " << b;
}

TEST(MlaDecodeWgmmaLanes, OneStepGivesTheProductsWithEveryWarpgroupScoringAllTokens) { replay_step(false); }
TEST(MlaDecodeWgmmaLanes, OneStepGivesTheProductsWithSplitScores) { replay_step(true); }

}  // namespace

// The loader's form of the slab placement (row_piece_base once per thread, row_piece_of_lane per piece) puts every
// piece where row_piece does, at each split of a row between threads the loaders use (4 threads a row: the wgmma
// kernels' 256; 2: the warp-specialized loader's 128 over half a stage from piece 0 or 32) and the others that
// divide 8.
template <int kPerRow, int kFirst>
void expect_lane_pieces_match(int pieces) {
  SCOPED_TRACE("threads per row " + std::to_string(kPerRow) + ", first piece " + std::to_string(kFirst));
  for (int row = 0; row < kRows; ++row)
    for (int lane_chunk = 0; lane_chunk < kPerRow; ++lane_chunk) {
      const uint32_t base = wg::row_piece_base(row, lane_chunk);
      for (int i = 0; lane_chunk + kPerRow * i < pieces; ++i) {
        const int c = kFirst + lane_chunk + kPerRow * i;
        ASSERT_EQ((wg::row_piece_of_lane<kPerRow, kFirst>(base, i)), wg::row_piece(row, 16 * c))
            << "row " << row << ", piece " << c;
      }
    }
}
TEST(MlaDecodeWgmmaLanes, LoaderPiecePlacesMatchRowPiece) {
  constexpr int kAll = kD / 8;  // 16-byte pieces of a row
  expect_lane_pieces_match<4, 0>(kAll);
  expect_lane_pieces_match<2, 0>(32);
  expect_lane_pieces_match<2, 32>(kAll - 32);
  expect_lane_pieces_match<1, 0>(kAll);
  expect_lane_pieces_match<8, 0>(kAll);
}
