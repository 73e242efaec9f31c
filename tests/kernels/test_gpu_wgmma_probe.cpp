// The wgmma probe (kernels/cuda/wgmma_probe.h) against fp64 products of the same bf16 values: scores (both
// operands K-major from shared memory), P . V (A from registers, B N-major) and the two chained through registers
// as the MLA decode step chains them. A wrong descriptor, swizzle or fragment map gives errors of order one; the
// tolerance only allows fp32 accumulation order (and, in Attention, a bf16 rounding step of P that can land on the
// other side of a tie). Skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/tma_map.h"
#include "kernels/cuda/wgmma_probe.h"
#include "runtime/error.h"
#include "runtime/device.h"
#include "runtime/dtype.h"
#include "runtime/tensor.h"

using namespace mlarun;
namespace cuda = mlarun::ops::cuda;

namespace {

std::vector<uint16_t> random_bf16(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = float_to_bf16(u(rng));
  return v;
}
float at(const std::vector<uint16_t>& m, int cols, int r, int c) { return bf16_to_float(m[size_t(r) * cols + c]); }

// Runs `which` on the GPU and returns out (rows x cols).
std::vector<float> run(cuda::WgmmaProbe which, const std::vector<uint16_t>& a, const std::vector<uint16_t>& b,
                       int cols) {
  Tensor da = Tensor::empty({int64_t(a.size())}, DType::BF16, Device::CUDA);
  Tensor db = Tensor::empty({int64_t(b.size())}, DType::BF16, Device::CUDA);
  Tensor out = Tensor::empty({cuda::kProbeRows, cols}, DType::F32, Device::CUDA);
  copy_bytes(da.raw(), Device::CUDA, a.data(), Device::CPU, a.size() * 2);
  copy_bytes(db.raw(), Device::CUDA, b.data(), Device::CPU, b.size() * 2);
  cuda::wgmma_probe(which, da.data<uint16_t>(), db.data<uint16_t>(), out.data<float>());
  Tensor h = out.to(Device::CPU);
  return std::vector<float>(h.data<float>(), h.data<float>() + h.numel());
}

void expect_near(const std::vector<float>& got, const std::vector<double>& want, double tol, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (!(std::fabs(got[i] - want[i]) <= tol) && bad++ < 5)
      ADD_FAILURE() << what << " element " << i << ": got " << got[i] << " want " << want[i];
  EXPECT_EQ(bad, 0) << what << ": elements outside " << tol;
}

constexpr int kR = cuda::kProbeRows, kT = cuda::kProbeTokens, kD = cuda::kProbeDimQK, kDv = cuda::kProbeDimV;

std::vector<double> scores_ref(const std::vector<uint16_t>& q, const std::vector<uint16_t>& k) {
  std::vector<double> s(size_t(kR) * kT);
  for (int r = 0; r < kR; ++r)
    for (int t = 0; t < kT; ++t) {
      double acc = 0;
      for (int d = 0; d < kD; ++d) acc += double(at(q, kD, r, d)) * at(k, kD, t, d);
      s[size_t(r) * kT + t] = acc;
    }
  return s;
}

}  // namespace

TEST(WgmmaProbe, ScoresKMajorFromSharedMemory) {
  if (!gpu_available()) GTEST_SKIP() << "no usable GPU: " << gpu_info().reason;
  const auto q = random_bf16(size_t(kR) * kD, 1), k = random_bf16(size_t(kT) * kD, 2);
  expect_near(run(cuda::WgmmaProbe::Scores, q, k, kT), scores_ref(q, k), 1e-3, "S");
}

TEST(WgmmaProbe, PvFromRegistersAndNMajorSharedMemory) {
  if (!gpu_available()) GTEST_SKIP() << "no usable GPU: " << gpu_info().reason;
  const auto p = random_bf16(size_t(kR) * kT, 3), v = random_bf16(size_t(kT) * kDv, 4);
  std::vector<double> want(size_t(kR) * kDv);
  for (int r = 0; r < kR; ++r)
    for (int c = 0; c < kDv; ++c) {
      double acc = 0;
      for (int t = 0; t < kT; ++t) acc += double(at(p, kT, r, t)) * at(v, kDv, t, c);
      want[size_t(r) * kDv + c] = acc;
    }
  expect_near(run(cuda::WgmmaProbe::PV, p, v, kDv), want, 1e-4, "O");
}

TEST(WgmmaProbe, ScoresChainedThroughRegistersIntoPv) {
  if (!gpu_available()) GTEST_SKIP() << "no usable GPU: " << gpu_info().reason;
  const auto q = random_bf16(size_t(kR) * kD, 5), kv = random_bf16(size_t(kT) * kD, 6);
  const std::vector<double> s = scores_ref(q, kv);
  std::vector<double> want(size_t(kR) * kDv);
  for (int r = 0; r < kR; ++r)
    for (int c = 0; c < kDv; ++c) {
      double acc = 0;
      for (int t = 0; t < kT; ++t)
        acc += double(bf16_to_float(float_to_bf16(float(s[size_t(r) * kT + t] * cuda::kProbeScoreScale)))) *
               at(kv, kD, t, c);
      want[size_t(r) * kDv + c] = acc;
    }
  // |P| is about 0.25 (S ~ 8); a P value rounded the other way moves O by at most 2^-8 |P| |V| per token.
  expect_near(run(cuda::WgmmaProbe::Attention, q, kv, kDv), want, 0.02, "O");
}

// The keys of the Scores probe copied by TMA from a paged pool (kernels/cuda/tma_sm90.cuh, tma_map.h), as a cache
// of blocks of 8, 16, 64 and 256 rows would give them: the 64-token tile in runs of min(block size, 64) rows from
// shuffled blocks (a block of 256 read from row 64 of it), nine 64-column boxes per run into the 128-byte-swizzled
// slabs, all counted on one mbarrier by the thread that issues them and waited for by the other warpgroup. S must
// equal Q . K^T over the gathered rows: a wrong box placement, swizzle or byte count shows as wrong rows or a hang.
TEST(WgmmaProbe, ScoresFromPagedKeysByTma) {
  if (!gpu_available()) GTEST_SKIP() << "no usable GPU: " << gpu_info().reason;
  for (int block_size : {8, 16, 64, 256}) {
    SCOPED_TRACE("block size " + std::to_string(block_size));
    const int num_blocks = 2 * std::max(1, kT / block_size) + 3;
    const int64_t pool_rows = int64_t(num_blocks) * block_size;
    const auto q = random_bf16(size_t(kR) * kD, 7);
    const auto pool = random_bf16(size_t(pool_rows) * kD, uint32_t(8 + block_size));
    std::vector<int32_t> blocks(static_cast<size_t>(num_blocks));
    for (int b = 0; b < num_blocks; ++b) blocks[size_t(b)] = b;
    std::shuffle(blocks.begin(), blocks.end(), std::mt19937(uint32_t(block_size)));
    cuda::TmaProbeKeys keys;
    keys.pool_rows = pool_rows;
    keys.box_rows = std::min(block_size, kT);
    keys.runs = kT / keys.box_rows;
    const int tok0 = block_size > kT ? kT : 0;  // a large block's tile starts inside it
    std::vector<uint16_t> gathered(size_t(kT) * kD);
    for (int j = 0; j < keys.runs; ++j) {
      const int t = tok0 + j * keys.box_rows;
      keys.first_row[j] = blocks[size_t(t / block_size)] * block_size + t % block_size;
      for (int r = 0; r < keys.box_rows; ++r)
        std::copy_n(pool.begin() + (int64_t(keys.first_row[j]) + r) * kD, kD,
                    gathered.begin() + (int64_t(j) * keys.box_rows + r) * kD);
    }
    Tensor dq = Tensor::empty({int64_t(q.size())}, DType::BF16, Device::CUDA);
    Tensor dpool = Tensor::empty({int64_t(pool.size())}, DType::BF16, Device::CUDA);
    Tensor out = Tensor::empty({kR, kT}, DType::F32, Device::CUDA);
    copy_bytes(dq.raw(), Device::CUDA, q.data(), Device::CPU, q.size() * 2);
    copy_bytes(dpool.raw(), Device::CUDA, pool.data(), Device::CPU, pool.size() * 2);
    keys.pool = dpool.data<uint16_t>();
    cuda::wgmma_tma_probe(dq.data<uint16_t>(), keys, out.data<float>());
    Tensor h = out.to(Device::CPU);
    expect_near(std::vector<float>(h.data<float>(), h.data<float>() + h.numel()), scores_ref(q, gathered), 1e-3,
                "S by TMA");
  }
}

// The tensor map's arguments are checked by name before the driver is asked (so this runs without a GPU).
TEST(TmaMap, ChecksItsArgumentsByName) {
  alignas(16) static uint16_t row[1024];
  const cuda::TmaMatrixBf16 good{row, 64, 576, 1152, 64};
  EXPECT_NO_THROW(cuda::check_tma_matrix(good));
  const auto expect_error = [](cuda::TmaMatrixBf16 m, const std::string& text) {
    try {
      cuda::check_tma_matrix(m);
      ADD_FAILURE() << "accepted; wanted: " << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
  };
  auto m = good;
  m.base = nullptr;
  expect_error(m, "base is null");
  m = good, m.base = reinterpret_cast<const unsigned char*>(row) + 8;
  expect_error(m, "is not 16-byte aligned");
  m = good, m.rows = 0;
  expect_error(m, "rows = 0 must be in [1, 2^32]");
  m = good, m.row_stride_bytes = 1160;
  expect_error(m, "row_stride_bytes = 1160 must be a multiple of 16");
  m = good, m.row_stride_bytes = 1136;
  expect_error(m, "at least cols * 2 = 1152");
  m = good, m.box_rows = 257;
  expect_error(m, "box_rows = 257 must be in [1, 256]");
}
