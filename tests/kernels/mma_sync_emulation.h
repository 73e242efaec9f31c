// mma.sync m16n8k16 and ldmatrix emulated on the CPU from the PTX ISA's fragment layouts, written independently of
// the kernels' lane headers, for the tests that replay the mma.sync MLA decode kernels' fragment traffic
// (test_mla_decode_mma_lanes.cpp, test_mla_decode_code_lanes.cpp): a replay whose lane formulas are wrong does not
// give the plain product.
#pragma once

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "kernels/cuda/mla_decode/config.h"
#include "kernels/cuda/mla_decode/mma_lanes.h"

namespace mlarun::test::mma_emulation {

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
inline Frag4 ldmatrix_x4(const Matrix& m, const std::function<std::array<int, 2>(int)>& address, bool trans) {
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
inline void mma_16816(Acc& c, const Frag4& a, const std::function<Reg(int lane, int which)>& b) {
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
inline std::array<int, 2> at(int row, int col) { return {row, col}; }

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

inline Matrix random_matrix(int r, int c, std::mt19937& rng) {
  Matrix m(r, c);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (float& x : m.v) x = u(rng);
  return m;
}

}  // namespace mlarun::test::mma_emulation
