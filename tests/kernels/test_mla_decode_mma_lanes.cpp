// The tensor-core MLA decode kernel's fragment traffic, replayed on the CPU. Each lane's ldmatrix addresses and
// accumulator elements come from kernels/cuda/mla_decode/mma_lanes.h, as in attend_mma.cu; ldmatrix (plain and
// transposed) and mma.sync.m16n8k16 are emulated from the PTX ISA's fragment layouts, written here independently
// of that header. One CTA's 32 x 32 scores over 576 values and its 32 x 512 P.V over 32 tokens must come out as
// the plain products, every element written exactly once: the index math is checked without a GPU.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/mla_decode/config.h"
#include "kernels/cuda/mla_decode/mma_lanes.h"

namespace {

namespace mla = mlarun::ops::cuda::mla;
namespace lanes = mlarun::ops::cuda::mla::lanes;

struct Matrix {
  int rows, cols;
  std::vector<float> v;
  Matrix(int r, int c) : rows(r), cols(c), v(size_t(r) * c) {}
  float& at(int r, int c) { return v.at(size_t(r) * cols + c); }
  float at(int r, int c) const { return v.at(size_t(r) * cols + c); }
};

using Reg = std::array<float, 2>;                     // one 32-bit register: two 16-bit elements
using Frag4 = std::array<std::array<Reg, 4>, 32>;     // per lane, four registers
using Acc = std::array<std::array<float, 4>, 32>;     // per lane, one m16n8 fp32 accumulator

// ldmatrix.sync.aligned.m8n8.x4[.trans].b16: row r of matrix i is the 8 elements at lane 8i + r's address.
// Plain: lane T receives (row T/4, columns 2(T%4), +1) of each matrix; transposed: (rows 2(T%4), +1, column T/4).
Frag4 ldmatrix_x4(const Matrix& m, const std::function<std::array<int, 2>(int)>& address, bool trans) {
  Frag4 out{};
  for (int i = 0; i < 4; ++i) {
    float mat[8][8];
    for (int r = 0; r < 8; ++r) {
      const auto [row, col] = address(8 * i + r);
      for (int c = 0; c < 8; ++c) mat[r][c] = m.at(row, col + c);
    }
    for (int t = 0; t < 32; ++t)
      out[size_t(t)][size_t(i)] = trans ? Reg{mat[2 * (t % 4)][t / 4], mat[2 * (t % 4) + 1][t / 4]}
                                        : Reg{mat[t / 4][2 * (t % 4)], mat[t / 4][2 * (t % 4) + 1]};
  }
  return out;
}

// mma.sync.aligned.m16n8k16.row.col, lane (g = T/4, t = T%4): a0 = A[g][2t..], a1 = A[g+8][2t..],
// a2 = A[g][8+2t..], a3 = A[g+8][8+2t..]; b0 = B[2t..][g], b1 = B[8+2t..][g]; c = C[g][2t], C[g][2t+1],
// C[g+8][2t], C[g+8][2t+1].
void mma_16816(Acc& c, const Frag4& a, const std::function<Reg(int lane, int which)>& b) {
  float A[16][16], B[16][8];
  for (int T = 0; T < 32; ++T) {
    const int g = T / 4, t = T % 4;
    for (int j = 0; j < 2; ++j) {
      A[g][2 * t + j] = a[size_t(T)][0][size_t(j)];
      A[g + 8][2 * t + j] = a[size_t(T)][1][size_t(j)];
      A[g][8 + 2 * t + j] = a[size_t(T)][2][size_t(j)];
      A[g + 8][8 + 2 * t + j] = a[size_t(T)][3][size_t(j)];
      B[2 * t + j][g] = b(T, 0)[size_t(j)];
      B[8 + 2 * t + j][g] = b(T, 1)[size_t(j)];
    }
  }
  for (int T = 0; T < 32; ++T) {
    const int g = T / 4, t = T % 4;
    const int rows[4] = {g, g, g + 8, g + 8}, cols[4] = {2 * t, 2 * t + 1, 2 * t, 2 * t + 1};
    for (int e = 0; e < 4; ++e)
      for (int k = 0; k < 16; ++k) c[size_t(T)][size_t(e)] += A[rows[e]][k] * B[k][cols[e]];
  }
}

// A lane's ldmatrix address as (row, column) of the matrix it reads.
std::array<int, 2> at(int row, int col) { return {row, col}; }

// A replayed product's output: each accumulator element stored where its lane's c_row / c_col put it, counted.
struct Written {
  Matrix m;
  std::vector<int> count;
  Written(int rows, int cols) : m(rows, cols), count(size_t(rows) * cols, 0) {}
  // The m16n8 accumulator `acc` of the tile at (r0, c0).
  void store(const Acc& acc, int r0, int c0) {
    for (int l = 0; l < 32; ++l)
      for (int e = 0; e < 4; ++e) {
        const int r = r0 + lanes::c_row(l, e), c = c0 + lanes::c_col(l, e);
        m.at(r, c) = acc[size_t(l)][size_t(e)];
        ++count[size_t(r * m.cols + c)];
      }
  }
  // Every element written exactly once, within `tol` of want(r, c); `what` names an element in a failure.
  void expect_equals(const std::function<double(int, int)>& want, double tol, const char* what) const {
    for (int r = 0; r < m.rows; ++r)
      for (int c = 0; c < m.cols; ++c) {
        ASSERT_EQ(count[size_t(r * m.cols + c)], 1) << what << " (" << r << ", " << c << ")";
        ASSERT_NEAR(m.at(r, c), want(r, c), tol) << what << " (" << r << ", " << c << ")";
      }
  }
};

Matrix random_matrix(int r, int c, std::mt19937& rng) {
  Matrix m(r, c);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (float& x : m.v) x = u(rng);
  return m;
}

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
        if (lanes::load_row(u.rows, u.threads, tid) == lanes::load_row(u.rows, u.threads, tid - 1))
          EXPECT_EQ(lanes::load_chunk(u.rows, u.threads, tid, 0), lanes::load_chunk(u.rows, u.threads, tid - 1, 0) + 1);
      }
  }
}

// ---- The fitted kernel over quantized rows with the codes read into registers (quant_fragments.cuh) ---------
namespace {

// An f16 bit pattern's value (normal, subnormal, inf; NaN as NaN).
double f16_value(uint16_t h) {
  const int exp = (h >> 10) & 31, man = h & 1023;
  const double v = exp == 0    ? std::ldexp(double(man), -24)
                   : exp == 31 ? (man != 0 ? NAN : INFINITY)
                               : std::ldexp(double(1024 + man), exp - 25);
  return (h & 0x8000) ? -v : v;
}
// Codes 0, 1 and 2, 3 of a word of four int8 codes as the kernel makes them f16 (quant_fragments.cuh
// codes4_to_f16x2): the interleaved bias bytes, then 1152 subtracted.
std::array<Reg, 2> int8_codes4(uint32_t w) {
  const double bias = f16_value(lanes::kInt8F16Bias);
  const uint32_t flipped = w ^ 0x80808080u;
  const uint32_t lo = lanes::interleave_bytes_01(flipped, lanes::kInt8F16Exponents);
  const uint32_t hi = lanes::interleave_bytes_23(flipped, lanes::kInt8F16Exponents);
  const auto reg = [&](uint32_t v) {
    return Reg{float(f16_value(uint16_t(v & 0xffffu)) - bias), float(f16_value(uint16_t(v >> 16)) - bias)};
  };
  return {reg(lo), reg(hi)};
}

// A stage of 32 quantized rows (656 bytes each, codes first) with random int8 codes.
struct CodeStage {
  std::vector<uint8_t> bytes = std::vector<uint8_t>(size_t(mla::kBlockN) * mla::kQuantRowBytes);
  explicit CodeStage(std::mt19937& rng) {
    for (uint8_t& b : bytes) b = uint8_t(rng());
  }
  int code(int tok, int k) const { return int(int8_t(bytes.at(size_t(tok) * mla::kQuantRowBytes + size_t(k)))); }
  uint32_t word(int tok, int byte) const {
    uint32_t w = 0;
    for (int i = 0; i < 4; ++i) w |= uint32_t(bytes.at(size_t(tok) * mla::kQuantRowBytes + size_t(byte + i))) << 8 * i;
    return w;
  }
};

}  // namespace

// Every int8 code becomes its own value in f16 through the interleave-and-subtract the kernel uses, in each of the
// four byte positions of a word.
TEST(MlaDecodeMmaLanes, CodesInt8BecomeF16Exactly) {
  for (int v = -128; v < 128; ++v)
    for (int pos = 0; pos < 4; ++pos) {
      const uint32_t w = (uint32_t(uint8_t(int8_t(v))) << (8 * pos)) | (0x5au << (8 * ((pos + 1) % 4)));
      const std::array<Reg, 2> r = int8_codes4(w);
      ASSERT_EQ(r[size_t(pos / 2)][size_t(pos % 2)], float(v)) << "code " << v << " at byte " << pos;
      ASSERT_EQ(r[size_t(((pos + 1) % 4) / 2)][size_t(((pos + 1) % 4) % 2)], float(0x5a));
    }
}

// The power-of-two units: a q row's largest latent magnitude lands in [2^14, 2^15) (f16's top binade but one),
// a stage's largest scale times 2^-E in [1, 2); zero, inf and NaN get 0; both clamp.
TEST(MlaDecodeMmaLanes, CodesPowerOfTwoUnitsKeepF16InRange) {
  for (int field = 1; field < 255; ++field)
    for (uint32_t man : {0u, 1u, 64u, 127u}) {
      const uint32_t bits = (uint32_t(field) << 7) | man;  // a bf16 magnitude
      const double v = std::ldexp(1.0 + man / 128.0, field - 127);
      const int e = lanes::q_f16_exp(bits);
      if (e > -64 && e < 64) {
        EXPECT_GE(std::ldexp(v, e), 16384.0) << field << " " << man;
        EXPECT_LT(std::ldexp(v, e), 32768.0) << field << " " << man;
      } else {
        EXPECT_TRUE(field - 127 >= 78 || field - 127 <= -50) << field;
      }
    }
  EXPECT_EQ(lanes::q_f16_exp(0), 0);
  EXPECT_EQ(lanes::q_f16_exp(0x7f80), 0);  // inf
  EXPECT_EQ(lanes::q_f16_exp(0x7fc0), 0);  // NaN
  EXPECT_EQ(lanes::q_f16_exp(0x0001), 64);  // subnormal: clamped
  for (int field = 1; field < 255; ++field) {
    const uint32_t bits = (uint32_t(field) << 23) | 0x7fffffu;
    const int e = lanes::scale_tile_exp(bits);
    const double scaled = std::ldexp(std::ldexp(1.0 + double(0x7fffff) / double(1 << 23), field - 127), -e);
    if (field - 127 >= -126 && field - 127 <= 126) {
      EXPECT_EQ(e, field - 127);
      EXPECT_LT(scaled, 2.0);
      EXPECT_GE(scaled, 1.0);
    }
  }
  EXPECT_EQ(lanes::scale_tile_exp(0), 0);
  EXPECT_EQ(lanes::scale_tile_exp(0x7f800000u), 0);  // inf
  EXPECT_EQ(lanes::scale_tile_exp(0x7fffffffu), 0);  // the NaN of an out-of-pool row's 0xff bytes, sign cleared
  EXPECT_EQ(lanes::scale_tile_exp(0x00000001u), -126);
}

// Scores with the codes in registers at M = 16, 32 and 64: q staged at q_code_col (a permutation of each 16-value
// group), the A fragments read by ldmatrix as in every kernel, each lane's B fragments one word of four codes per
// k-step; every warp's latent share equals q . codes over it.
TEST(MlaDecodeMmaLanes, CodesScoresComputeQTimesCodes) {
  for (int group = 0; group < mla::kKvLoraRank; group += 16) {
    std::vector<int> seen(16, 0);
    for (int k = group; k < group + 16; ++k) {
      const int col = lanes::q_code_col(k);
      ASSERT_GE(col, group);
      ASSERT_LT(col, group + 16);
      ++seen[size_t(col - group)];
    }
    for (int n : seen) ASSERT_EQ(n, 1) << "q_code_col is a permutation of each 16-value group";
  }
  for (int m : mla::kFitRows) {
    SCOPED_TRACE("M = " + std::to_string(m));
    std::mt19937 rng(uint32_t(7 + m));
    const Matrix q = random_matrix(m, mla::kHeadDimQK, rng);
    Matrix q_s(m, mla::kHeadDimQK);
    for (int r = 0; r < m; ++r)
      for (int k = 0; k < mla::kKvLoraRank; ++k) q_s.at(r, lanes::q_code_col(k)) = q.at(r, k);
    const CodeStage stage(rng);
    std::vector<Written> shares(size_t(lanes::fit_k_splits(m)), Written(m, mla::kBlockN));
    for (int w = 0; w < mla::kWarps; ++w) {
      const int m0 = lanes::fit_score_row0(m, w), n0 = lanes::fit_score_tok0(m, w), k0 = lanes::fit_k0(m, w);
      for (int t = 0; t < lanes::fit_tok_tiles_per_warp(m); ++t) {
        Acc sc{};
        for (int k = 0; k < lanes::fit_k_len(m) && k0 + k < mla::kKvLoraRank; k += 32) {
          const int kk = k0 + k;
          for (int s = 0; s < 2; ++s) {
            const Frag4 qa = ldmatrix_x4(
                q_s, [&](int l) { return at(m0 + lanes::a_row(l), kk + 16 * s + lanes::a_col(l)); }, false);
            mma_16816(sc, qa, [&](int T, int which) {
              const int tok = n0 + 8 * t + lanes::code_word_tok(T);
              return int8_codes4(stage.word(tok, kk + 16 * s + lanes::code_word_byte(T)))[size_t(which)];
            });
          }
        }
        shares[size_t(lanes::fit_k_split(m, w))].store(sc, m0, n0 + 8 * t);
      }
    }
    for (size_t s = 0; s < shares.size(); ++s) {
      const int k_begin = int(s) * lanes::fit_k_len(m);
      const int k_end = std::min(k_begin + lanes::fit_k_len(m), mla::kKvLoraRank);
      shares[s].expect_equals(
          [&](int r, int c) {
            double want = 0;
            for (int k = k_begin; k < k_end; ++k) want += double(q.at(r, k)) * stage.code(c, k);
            return want;
          },
          1e-2, "latent score share");
    }
  }
}

// P.V with the codes in registers at M = 16, 32 and 64: four words per lane, k-step and 32-column half, paired by
// byte interleaving into the B fragments of four n8 tiles; the accumulators stored where pv_code_out_col says (8
// consecutive columns per row and half) equal P . codes, every element once, and pv_code_col agrees.
TEST(MlaDecodeMmaLanes, CodesPvComputesPTimesCodes) {
  for (int m : mla::kFitRows) {
    SCOPED_TRACE("M = " + std::to_string(m));
    std::mt19937 rng(uint32_t(11 + m));
    const Matrix p = random_matrix(m, mla::kBlockN, rng);
    const CodeStage stage(rng);
    Written o(m, mla::kHeadDimV);
    for (int w = 0; w < mla::kWarps; ++w) {
      const int c0 = lanes::pv_col0(w);
      std::vector<std::array<Acc, 8>> acc(size_t(m / 16));
      for (int ks = 0; ks < mla::kBlockN; ks += 16)
        for (int h = 0; h < 2; ++h)
          for (int i = 0; i < 4; ++i) {
            // Lane T's b0 / b1 of tile 4 h + i: bytes i of its words for tokens r = 0, 1 (b0) and 2, 3 (b1).
            const auto b = [&](int T, int which) {
              const auto word = [&](int r) {
                return stage.word(ks + lanes::pv_code_tok(T, r), c0 + 32 * h + lanes::pv_code_byte(T));
              };
              const uint32_t lo = word(2 * which), hi = word(2 * which + 1);
              const uint32_t paired = i < 2 ? lanes::interleave_bytes_01(lo, hi) : lanes::interleave_bytes_23(lo, hi);
              return int8_codes4(paired)[size_t(i % 2)];
            };
            for (int mt = 0; mt < m / 16; ++mt) {
              const Frag4 pa =
                  ldmatrix_x4(p, [&](int l) { return at(mt * 16 + lanes::a_row(l), ks + lanes::a_col(l)); }, false);
              mma_16816(acc[size_t(mt)][size_t(4 * h + i)], pa, b);
            }
          }
      for (int mt = 0; mt < m / 16; ++mt)
        for (int l = 0; l < 32; ++l)
          for (int h = 0; h < 2; ++h)
            for (int i = 0; i < 4; ++i)
              for (int e = 0; e < 4; ++e) {
                const int col = lanes::pv_code_out_col(l, h) + 4 * (e & 1) + i;
                ASSERT_EQ(col, lanes::pv_code_col(4 * h + i, lanes::c_col(l, e)));
                const int r = mt * 16 + lanes::c_row(l, e);
                o.m.at(r, c0 + col) = acc[size_t(mt)][size_t(4 * h + i)][size_t(l)][size_t(e)];
                ++o.count[size_t(r * o.m.cols + c0 + col)];
              }
    }
    o.expect_equals(
        [&](int r, int c) {
          double want = 0;
          for (int t = 0; t < mla::kBlockN; ++t) want += double(p.at(r, t)) * stage.code(t, c);
          return want;
        },
        1e-2, "output");
  }
}
