// The tensor cores' view of shared memory for wgmma, rebuilt from the PTX ISA's description of the descriptor
// and of the canonical 128-byte-swizzled layouts, independently of kernels/cuda/wgmma_sm90.cuh: the CPU tests
// read operands the way the hardware says it does and compare with where the kernels' code stored them. Also the
// exact matrices and emulated shared memory their replays compute with, wgmma itself (SS and RS), and, marked as
// the kernels' side, their accumulator-to-operand map.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/cuda/wgmma_sm90.cuh"

namespace mlarun::test::wgmma {

struct Fields {
  uint32_t start, lbo, sbo, base_offset, swizzle;
};
inline Fields decode(uint64_t d) {
  return {uint32_t(d & 0x3FFF) << 4, uint32_t((d >> 16) & 0x3FFF) << 4, uint32_t((d >> 32) & 0x3FFF) << 4,
          uint32_t((d >> 49) & 7), uint32_t(d >> 62)};
}
// In each 1024-byte span, 16-byte chunk j of 128-byte row i moves to chunk j ^ i.
inline uint32_t isa_swizzle(uint32_t addr) {
  const uint32_t row = (addr / 128) % 8, chunk = (addr / 16) % 8;
  return addr - chunk * 16 + ((chunk ^ row) * 16);
}
// K-major SW128, element (mn, k) of one k-step (k < 16): 128-byte rows within an 8-row atom, atoms SBO apart.
inline uint32_t k_major_read(uint64_t desc, int mn, int k) {
  const Fields f = decode(desc);
  return isa_swizzle(f.start + (mn % 8) * 128 + (mn / 8) * f.sbo + k * 2);
}
// N-major SW128, element (k, n) of one k-step: 64 n values per 128-byte row, the next 64 LBO away; k rows 128
// bytes apart within 8, the next 8 SBO away.
inline uint32_t n_major_read(uint64_t desc, int k, int n) {
  const Fields f = decode(desc);
  return isa_swizzle(f.start + (n % 64) * 2 + (n / 64) * f.lbo + (k % 8) * 128 + (k / 8) * f.sbo);
}
// wgmma's register A operand (16-bit types): thread `lane` of warp `w` holds, in register i, half j, element
// (row 16 w + lane / 4 + 8 (i % 2), k 2 (lane % 4) + j + 8 (i / 2)).
inline int a_frag_row(int w, int lane, int i) { return 16 * w + lane / 4 + 8 * (i % 2); }
inline int a_frag_k(int lane, int i, int j) { return 2 * (lane % 4) + j + 8 * (i / 2); }

// Matrices of the replays: doubles, so sums of products of multiples of 1/8 stay exact.
using Matrix = std::vector<std::vector<double>>;
inline Matrix zeros(int r, int c) { return Matrix(size_t(r), std::vector<double>(size_t(c), 0.0)); }
inline Matrix random_eighths(int r, int c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> u(-16, 16);
  Matrix m = zeros(r, c);
  for (auto& row : m)
    for (double& x : row) x = u(rng) / 8.0;
  return m;
}

// Shared memory as one double per 16-bit element, addressed in bytes: unwritten elements are NaN, and every
// element counts its writes.
struct Smem {
  std::vector<double> v;
  std::vector<int> writes;
  explicit Smem(size_t bytes) : v(bytes / 2, NAN), writes(bytes / 2, 0) {}
  void put(uint32_t addr, double x) {
    v.at(addr / 2) = x;
    ++writes.at(addr / 2);
  }
  double at(uint32_t addr) const { return v.at(addr / 2); }
};

// wgmma m64nNk16 with A and B from shared memory (A K-major; B K-major, or N-major when trans_b): d += A . B.
inline void mma_ss(Matrix& d, const Smem& s, uint64_t desc_a, uint64_t desc_b, bool trans_b, int n) {
  for (int m = 0; m < 64; ++m)
    for (int j = 0; j < n; ++j)
      for (int k = 0; k < 16; ++k)
        d[size_t(m)][size_t(j)] += s.at(k_major_read(desc_a, m, k)) *
                                   s.at(trans_b ? n_major_read(desc_b, k, j) : k_major_read(desc_b, j, k));
}
// The same with A from registers, a[thread][register][half] of the warpgroup's 128 threads, and B N-major.
using AFrag = std::array<std::array<std::array<double, 2>, 4>, 128>;
inline void mma_rs(Matrix& d, const AFrag& a, const Smem& s, uint64_t desc_b, int n) {
  Matrix am = zeros(64, 16);
  for (int t = 0; t < 128; ++t)
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 2; ++j)
        am[size_t(a_frag_row(t / 32, t % 32, i))][size_t(a_frag_k(t % 32, i, j))] =
            a[size_t(t)][size_t(i)][size_t(j)];
  for (int m = 0; m < 64; ++m)
    for (int col = 0; col < n; ++col)
      for (int k = 0; k < 16; ++k)
        d[size_t(m)][size_t(col)] += am[size_t(m)][size_t(k)] * s.at(n_major_read(desc_b, k, col));
}

// The kernels' side, under test: k-step kk of an accumulator matrix `acc` (64 rows) turned into the register A
// operand as they do it (kernels/cuda/wgmma_sm90.cuh acc_row, acc_col, acc_to_a).
inline AFrag a_from_acc(const Matrix& acc, int kk) {
  namespace sm90 = ops::cuda::wgmma_sm90;
  AFrag a{};
  for (int t = 0; t < 128; ++t)
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 2; ++j) {
        const int e = sm90::acc_to_a(kk, i) + j;
        const int r = sm90::acc_row(t / 32, t % 32, e), c = sm90::acc_col(t % 32, e);
        a[size_t(t)][size_t(i)][size_t(j)] = acc[size_t(r)][size_t(c)];
      }
  return a;
}

}  // namespace mlarun::test::wgmma
