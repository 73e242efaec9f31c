// The tensor-core MLA decode kernel's fragment traffic, replayed on the CPU. Each lane's ldmatrix addresses and
// accumulator elements come from kernels/cuda/mla_decode/mma_lanes.h, as in attend_mma.cu; ldmatrix (plain and
// transposed) and mma.sync.m16n8k16 are emulated from the PTX ISA's fragment layouts (mma_sync_emulation.h),
// written independently of that header. One CTA's 32 x 32 scores over 576 values and its 32 x 512 P.V over 32
// tokens must come out as the plain products, every element written exactly once: the index math is checked
// without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cuda/mla_decode/config.h"
#include "kernels/cuda/mla_decode/mma_lanes.h"
#include "tests/kernels/mma_sync_emulation.h"

namespace {

using namespace mlarun::test::mma_emulation;  // and its mla / lanes namespace aliases

}  // namespace

TEST(MlaDecodeMmaLanes, ScoresTilesComputeQTimesKTransposed) {
  std::mt19937 rng(1);
  const Matrix q = random_matrix(mla::kRowsPerCta, mla::kHeadDimQK, rng);
  const Matrix kv = random_matrix(mla::kBlockN, mla::kHeadDimQK, rng);
  Written s(mla::kRowsPerCta, mla::kBlockN);
  for (int w = 0; w < mla::kWarps; ++w) {
    const int m0 = lanes::score_row0(w), n0 = lanes::score_tok0(w);
    Acc sc{};
    for (int k = 0; k < mla::kHeadDimQK; k += 32) {
      const auto q_at = [&](int k0) {
        return [&, k0](int l) { return at(m0 + lanes::a_row(l), k0 + lanes::a_col(l)); };
      };
      const Frag4 qa0 = ldmatrix_x4(q, q_at(k), false), qa1 = ldmatrix_x4(q, q_at(k + 16), false);
      const Frag4 kb = ldmatrix_x4(kv, [&](int l) { return at(n0 + lanes::k_tok(l), k + lanes::k_col(l)); }, false);
      mma_16816(sc, qa0, [&](int T, int which) { return kb[size_t(T)][size_t(which)]; });
      mma_16816(sc, qa1, [&](int T, int which) { return kb[size_t(T)][size_t(2 + which)]; });
    }
    s.store(sc, m0, n0);
  }
  s.expect_equals(
      [&](int r, int c) {
        double want = 0;
        for (int k = 0; k < mla::kHeadDimQK; ++k) want += double(q.at(r, k)) * kv.at(c, k);
        return want;
      },
      1e-3, "score");
}

namespace {

// P.V of a CTA of m rows (m / 16 row tiles): warp w's 64 columns from its lanes' fragments (the 32-row kernel is
// m = 32); every output element written once, equal to the plain product.
void replay_pv(int m, uint32_t seed) {
  std::mt19937 rng(seed);
  const Matrix p = random_matrix(m, mla::kBlockN, rng);
  const Matrix kv = random_matrix(mla::kBlockN, mla::kHeadDimQK, rng);
  Written o(m, mla::kHeadDimV);
  for (int w = 0; w < mla::kWarps; ++w) {
    const int c0 = lanes::pv_col0(w);
    std::vector<std::array<Acc, mla::kMmaColsPerWarp / 8>> acc(size_t(m / 16));
    for (int ks = 0; ks < mla::kBlockN; ks += 16)
      for (int mt = 0; mt < m / 16; ++mt) {
        const Frag4 pa =
            ldmatrix_x4(p, [&](int l) { return at(mt * 16 + lanes::a_row(l), ks + lanes::a_col(l)); }, false);
        for (int np = 0; np < mla::kMmaColsPerWarp / 16; ++np) {
          const Frag4 vb = ldmatrix_x4(
              kv, [&](int l) { return at(ks + lanes::v_tok(l), c0 + np * 16 + lanes::v_col(l)); }, true);
          mma_16816(acc[size_t(mt)][size_t(2 * np)], pa,
                    [&](int T, int which) { return vb[size_t(T)][size_t(which)]; });
          mma_16816(acc[size_t(mt)][size_t(2 * np + 1)], pa,
                    [&](int T, int which) { return vb[size_t(T)][size_t(2 + which)]; });
        }
      }
    for (int mt = 0; mt < m / 16; ++mt)
      for (int nt = 0; nt < mla::kMmaColsPerWarp / 8; ++nt)
        o.store(acc[size_t(mt)][size_t(nt)], mt * 16, c0 + nt * 8);
  }
  o.expect_equals(
      [&](int r, int c) {
        double want = 0;
        for (int t = 0; t < mla::kBlockN; ++t) want += double(p.at(r, t)) * kv.at(t, c);
        return want;
      },
      1e-4, "output");
}

}  // namespace

TEST(MlaDecodeMmaLanes, PvTilesComputePTimesTheLatent) { replay_pv(mla::kRowsPerCta, 2); }

// The fitted kernel (attend_mma_fitted.cu) at M = 16, 32 and 64 rows: each warp's score tiles over its share of
// the 576 values (fit_k0 .. + fit_k_len; even k-steps in one chain, odd in another, as the kernel sums them), one
// score buffer per share, each element written once into each; the shares add up to Q . K^T. P.V over M / 16
// row tiles.
TEST(MlaDecodeMmaLanes, FittedScoresCoverEveryRowAndTokenOncePerShare) {
  for (int m : mla::kFitRows) {
    SCOPED_TRACE("M = " + std::to_string(m));
    ASSERT_EQ(lanes::fit_k_splits(m), mla::fit_score_splits(m));
    std::mt19937 rng(uint32_t(3 + m));
    const Matrix q = random_matrix(m, mla::kHeadDimQK, rng);
    const Matrix kv = random_matrix(mla::kBlockN, mla::kHeadDimQK, rng);
    std::vector<Written> shares(size_t(lanes::fit_k_splits(m)), Written(m, mla::kBlockN));
    for (int w = 0; w < mla::kWarps; ++w) {
      const int m0 = lanes::fit_score_row0(m, w), n0 = lanes::fit_score_tok0(m, w), k0 = lanes::fit_k0(m, w);
      for (int t = 0; t < lanes::fit_tok_tiles_per_warp(m); ++t) {
        Acc chain[2] = {};
        for (int k = 0; k < lanes::fit_k_len(m); k += 32) {
          const auto q_at = [&](int kk) {
            return [&, kk](int l) { return at(m0 + lanes::a_row(l), k0 + kk + lanes::a_col(l)); };
          };
          const Frag4 qa0 = ldmatrix_x4(q, q_at(k), false), qa1 = ldmatrix_x4(q, q_at(k + 16), false);
          const Frag4 kb = ldmatrix_x4(
              kv, [&](int l) { return at(n0 + 8 * t + lanes::k_tok(l), k0 + k + lanes::k_col(l)); }, false);
          mma_16816(chain[0], qa0, [&](int T, int which) { return kb[size_t(T)][size_t(which)]; });
          mma_16816(chain[1], qa1, [&](int T, int which) { return kb[size_t(T)][size_t(2 + which)]; });
        }
        Acc sum{};
        for (int l = 0; l < 32; ++l)
          for (int e = 0; e < 4; ++e)
            sum[size_t(l)][size_t(e)] = chain[0][size_t(l)][size_t(e)] + chain[1][size_t(l)][size_t(e)];
        shares[size_t(lanes::fit_k_split(m, w))].store(sum, m0, n0 + 8 * t);
      }
    }
    for (size_t s = 0; s < shares.size(); ++s) {
      const int k_begin = int(s) * lanes::fit_k_len(m), k_end = k_begin + lanes::fit_k_len(m);
      shares[s].expect_equals(
          [&](int r, int c) {
            double want = 0;
            for (int k = k_begin; k < k_end; ++k) want += double(q.at(r, k)) * kv.at(c, k);
            return want;
          },
          1e-3, "score share");
    }
  }
}

// The fitted kernel's walk of a share of the 576 values (share_scores in attend_mma_fitted.cu): a head, whole
// 128-value tiles, a tail and k_pe's steps, from share_head_end / share_tail_begin / share_latent_end. At every
// share the kernel has (and every other 32-aligned one), each 32-value step is taken once and in order, no latent
// piece straddles a scale tile or reaches k_pe, and folding each piece's unscaled sum times the scale of the tile
// it starts in gives the row's scaled dot product.
TEST(MlaDecodeMmaLanes, FittedShareWalkFoldsEachScaleTileOnce) {
  std::vector<std::pair<int, int>> shares;  // (k0, len)
  for (int m : mla::kFitRows)
    for (int w = 0; w < mla::kWarps; ++w) shares.emplace_back(lanes::fit_k0(m, w), lanes::fit_k_len(m));
  for (int k0 = 0; k0 < mla::kHeadDimQK; k0 += 32)
    for (int len = 32; k0 + len <= mla::kHeadDimQK; len += 32) shares.emplace_back(k0, len);
  std::mt19937 rng(17);
  std::uniform_real_distribution<double> value(-1.0, 1.0), scale(0.5, 4.0);
  std::vector<double> q(mla::kHeadDimQK), code(mla::kHeadDimQK), tile_scale(mla::kKvLoraRank / mla::kQuantTile);
  for (auto [k0, len] : shares) {
    SCOPED_TRACE("share " + std::to_string(k0) + " + " + std::to_string(len));
    for (double& x : q) x = value(rng);
    for (double& x : code) x = value(rng);
    for (double& x : tile_scale) x = scale(rng);
    const int lat_end = lanes::share_latent_end(k0, len), head_end = lanes::share_head_end(k0, len);
    const int tail_begin = lanes::share_tail_begin(k0, len);
    std::vector<int> steps;
    double score = 0;
    const auto piece = [&](int from, int count) {  // latent_steps: one fold per piece
      ASSERT_GE(count, 1);
      ASSERT_LE(count, mla::kQuantTile / 32);
      ASSERT_EQ(from / mla::kQuantTile, (from + 32 * count - 1) / mla::kQuantTile) << "a piece straddles a tile";
      ASSERT_LE(from + 32 * count, mla::kKvLoraRank);
      double part = 0;
      for (int i = 0; i < count; ++i) {
        steps.push_back(from + 32 * i);
        for (int k = from + 32 * i; k < from + 32 * (i + 1); ++k) part += q[size_t(k)] * code[size_t(k)];
      }
      score += part * tile_scale[size_t(from / mla::kQuantTile)];
    };
    if (head_end > k0) piece(k0, (head_end - k0) / 32);
    for (int kk = head_end; kk < tail_begin; kk += mla::kQuantTile) piece(kk, mla::kQuantTile / 32);
    if (lat_end > tail_begin) piece(tail_begin, (lat_end - tail_begin) / 32);
    for (int kk = std::max(k0, mla::kKvLoraRank); kk < k0 + len; kk += 32) {
      steps.push_back(kk);
      for (int k = kk; k < kk + 32; ++k) score += q[size_t(k)] * code[size_t(k)];
    }
    std::vector<int> want;
    for (int kk = k0; kk < k0 + len; kk += 32) want.push_back(kk);
    EXPECT_EQ(steps, want);
    double direct = 0;
    for (int k = k0; k < k0 + len; ++k)
      direct += q[size_t(k)] * code[size_t(k)] * (k < mla::kKvLoraRank ? tile_scale[size_t(k / mla::kQuantTile)] : 1.0);
    EXPECT_NEAR(score, direct, 1e-9);
  }
}

TEST(MlaDecodeMmaLanes, FittedPvCoversEveryRowTile) {
  for (int m : mla::kFitRows) {
    SCOPED_TRACE("M = " + std::to_string(m));
    replay_pv(m, uint32_t(4 + m));
  }
}

// The cached-row loader (attend_common.cuh load_kv_rows) at every (rows, threads, row bytes) a kernel calls it
// with: each 16-byte piece of each row is issued exactly once, a thread serves one row only (its one block-table
// read), and a warp's pieces of one iteration are whole runs of consecutive pieces.
TEST(MlaDecodeMmaLanes, RowLoaderIssuesEveryPieceOfEveryRowOnce) {
  struct Use {
    int rows, threads, row_bytes;
  };
  const Use uses[] = {{mla::kBlockN, mla::kThreads, mla::kHeadDimQK * 2},   // SIMT, mma, fitted: bf16
                      {mla::kBlockN, mla::kThreads, mla::kQuantRowBytes},   // the same, fp8 / int8 rows
                      {mla::kWgBlockN, mla::kWgThreads, mla::kHeadDimQK * 2}};  // wgmma
  for (const Use& u : uses) {
    SCOPED_TRACE(std::to_string(u.rows) + " rows, " + std::to_string(u.threads) + " threads, " +
                 std::to_string(u.row_bytes) + " bytes");
    const int chunks = u.row_bytes / 16;
    std::vector<int> issued(size_t(u.rows) * chunks, 0);
    for (int tid = 0; tid < u.threads; ++tid) {
      const int row = lanes::load_row(u.rows, u.threads, tid);
      ASSERT_GE(row, 0);
      ASSERT_LT(row, u.rows);
      for (int i = 0; i < lanes::load_iters(u.rows, u.threads, chunks); ++i) {
        const int c = lanes::load_chunk(u.rows, u.threads, tid, i);
        if (c < chunks) ++issued[size_t(row) * chunks + c];
      }
    }
    for (size_t k = 0; k < issued.size(); ++k)
      ASSERT_EQ(issued[k], 1) << "row " << k / chunks << " piece " << k % chunks;
    // Coalescing: in one iteration, the lanes of a warp that serve one row read consecutive pieces.
    for (int warp = 0; warp < u.threads / 32; ++warp)
      for (int lane = 1; lane < 32; ++lane) {
        const int tid = 32 * warp + lane;
        if (lanes::load_row(u.rows, u.threads, tid) != lanes::load_row(u.rows, u.threads, tid - 1)) continue;
        EXPECT_EQ(lanes::load_chunk(u.rows, u.threads, tid, 0), lanes::load_chunk(u.rows, u.threads, tid - 1, 0) + 1);
      }
  }
}

// The softmax's row maximum by one redux.sync (attend_common.cuh warp_max_by_key): the keys order as the floats do
// (-0 just below +0), the key map is its own inverse, and the largest key of a warp's 32 values maps back to
// fmaxf's maximum of them, masked lanes (-inf) and all. A NaN orders above +inf with the sign bit clear, below -inf
// with it set.
TEST(MlaDecodeMmaLanes, FloatOrderKeyOrdersLikeTheFloats) {
  const auto bits = [](float f) {
    int32_t b;
    std::memcpy(&b, &f, sizeof(b));
    return b;
  };
  const auto key = [&](float f) { return lanes::float_order_key(bits(f)); };
  const auto from_key = [](int32_t k) {
    const int32_t b = lanes::float_order_key(k);
    float f;
    std::memcpy(&f, &b, sizeof(f));
    return f;
  };
  const float inf = std::numeric_limits<float>::infinity();
  using limits = std::numeric_limits<float>;
  std::vector<float> values = {-inf, -limits::max(), -1.5f, -1.f, -limits::min(), -limits::denorm_min(), -0.f,
                               0.f,  limits::denorm_min(), limits::min(), 1.f, 1.5f, limits::max(), inf};
  std::mt19937 rng(17);
  std::uniform_int_distribution<uint32_t> any_bits;
  while (values.size() < 3000) {  // random bit patterns (NaNs skipped) spread over every exponent
    const uint32_t b = any_bits(rng);
    float f;
    std::memcpy(&f, &b, sizeof(f));
    if (!std::isnan(f)) values.push_back(f);
  }
  for (float a : values) {
    ASSERT_EQ(lanes::float_order_key(key(a)), bits(a)) << a;
    for (size_t i = 0; i < values.size(); i += 7) {
      const float b = values[i];
      if (a < b) ASSERT_LT(key(a), key(b)) << a << " " << b;
      if (a > b) ASSERT_GT(key(a), key(b)) << a << " " << b;
    }
  }
  EXPECT_EQ(key(-0.f) + 1, key(0.f));
  EXPECT_GT(key(std::numeric_limits<float>::quiet_NaN()), key(inf));
  EXPECT_LT(key(-std::numeric_limits<float>::quiet_NaN()), key(-inf));
  std::uniform_real_distribution<float> score(-300.f, 300.f);
  for (int trial = 0; trial < 2000; ++trial) {
    int32_t top_key = std::numeric_limits<int32_t>::min();
    float top = -inf;
    const int masked_from = trial % 33;  // lanes at or past it are masked, as past a row's visible tokens
    for (int lane = 0; lane < 32; ++lane) {
      const float v = lane < masked_from ? score(rng) : -inf;
      top_key = std::max(top_key, key(v));
      top = std::fmax(top, v);
    }
    ASSERT_EQ(from_key(top_key), top) << "trial " << trial;
  }
}
