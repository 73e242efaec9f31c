// The tensor cores' view of shared memory for wgmma, rebuilt from the PTX ISA's description of the descriptor
// and of the canonical 128-byte-swizzled layouts, independently of kernels/cuda/wgmma_sm90.cuh: the CPU tests
// read operands the way the hardware says it does and compare with where the kernels' code stored them. Also the
// exact matrices their replays compute with.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

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

}  // namespace mlarun::test::wgmma
