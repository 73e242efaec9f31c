// The fitted MLA decode kernel over quantized rows with the codes read into registers (quant_fragments.cuh,
// MlaDecodeParams::codes_in_registers), replayed on the CPU: q staged at its permuted columns, each lane's word
// loads of codes, the byte pairing into B fragments and the int8-to-f16 conversion, through the emulated ldmatrix
// and mma.sync of mma_sync_emulation.h; one tile's scores and P.V must come out as the plain products over the
// codes, every element once. Also the two power-of-two units that keep the f16 operands in range.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/mla_decode/config.h"
#include "kernels/cuda/mla_decode/mma_lanes.h"
#include "runtime/dtype.h"
#include "tests/kernels/mma_sync_emulation.h"

namespace {

using namespace mlarun::test::mma_emulation;  // and its mla / lanes namespace aliases

// Codes 0, 1 and 2, 3 of a word of four int8 codes as the kernel makes them f16 (quant_fragments.cuh
// codes4_to_f16x2): the interleaved bias bytes, then 1152 subtracted.
std::array<Reg, 2> int8_codes4(uint32_t w) {
  const float bias = mlarun::f16_to_float(lanes::kInt8F16Bias);
  const uint32_t flipped = w ^ 0x80808080u;
  const uint32_t lo = lanes::interleave_bytes_01(flipped, lanes::kInt8F16Exponents);
  const uint32_t hi = lanes::interleave_bytes_23(flipped, lanes::kInt8F16Exponents);
  const auto reg = [&](uint32_t v) {
    return Reg{mlarun::f16_to_float(uint16_t(v & 0xffffu)) - bias, mlarun::f16_to_float(uint16_t(v >> 16)) - bias};
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
// byte interleaving into the B fragments of four n8 tiles, P's A fragments multiplied by each token's scale where
// a_pair_tok says their tokens are; the accumulators stored where pv_code_out_col says (8 consecutive columns per
// row and half) equal P . diag(scale) . codes, every element once, and pv_code_col agrees.
TEST(MlaDecodeMmaLanes, CodesPvComputesPTimesCodes) {
  for (int m : mla::kFitRows) {
    SCOPED_TRACE("M = " + std::to_string(m));
    std::mt19937 rng(uint32_t(11 + m));
    const Matrix p = random_matrix(m, mla::kBlockN, rng);
    const CodeStage stage(rng);
    std::vector<float> scale(size_t(mla::kBlockN));
    for (size_t t = 0; t < scale.size(); ++t) scale[t] = float(1 + t % 7) / 4.f;  // a wrong token shows
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
              Frag4 pa =
                  ldmatrix_x4(p, [&](int l) { return at(mt * 16 + lanes::a_row(l), ks + lanes::a_col(l)); }, false);
              for (int l = 0; l < 32; ++l)
                for (int reg = 0; reg < 4; ++reg)
                  for (int x = 0; x < 2; ++x)
                    pa[size_t(l)][size_t(reg)][size_t(x)] *= scale[size_t(ks + lanes::a_pair_tok(l, reg) + x)];
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
          for (int t = 0; t < mla::kBlockN; ++t) want += double(p.at(r, t)) * scale[size_t(t)] * stage.code(t, c);
          return want;
        },
        1e-2, "output");
  }
}
