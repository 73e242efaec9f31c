// The wgmma probe (kernels/cuda/wgmma_probe.h) against fp64 products of the same bf16 values: scores (both
// operands K-major from shared memory), P . V (A from registers, B N-major) and the two chained through registers
// as the MLA decode step chains them. A wrong descriptor, swizzle or fragment map gives errors of order one; the
// tolerance only allows fp32 accumulation order (and, in Attention, a bf16 rounding step of P that can land on the
// other side of a tie). Skips without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/cuda/wgmma_probe.h"
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
