// Flash prefill on the GPU against the CPU reference, and its argument checks without one.
// Why the 2x rule: a bf16/fp16 kernel cannot match an fp32 reference exactly, so (as FlashAttention's tests do)
// its error against the fp32 reference (ops::attention on the same rounded inputs) may be at most twice the
// error of a plain low-precision implementation (scores and probabilities rounded to the dtype) plus one output
// rounding. Outputs and lse are poisoned with NaN first, so an unwritten element fails. A NaN input must reach
// exactly the outputs a plain softmax makes NaN (FlashPrefillNan). The boundary tests need no GPU: every check
// runs before the first CUDA call.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "kernels/cuda/flash_prefill/cases.h"
#include "kernels/cuda/flash_prefill/flash_prefill.h"
#include "kernels/cuda/flash_prefill/reference.h"
#include "kernels/cuda/flash_prefill/tile_order.cuh"
#include "kernels/ops.h"
#include "runtime/device.h"
#include "runtime/error.h"
#include "runtime/tensor.h"

using namespace mlarun;
namespace cuda = mlarun::ops::cuda;
using cuda::FlashPrefillParams;
using cuda::flash::Case;

namespace mlarun::ops::cuda::flash {
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }  // test names, not bytes, in ctest's list
}  // namespace mlarun::ops::cuda::flash

namespace {

// Fresh normal inputs drawn on the host (seeded by the case name) and rounded to the dtype; every row checked.
void run_case(const Case& c) {
  std::mt19937 rng(std::hash<std::string>{}(c.name));
  std::normal_distribution<float> dist(0.f, 1.f);
  cuda::flash::DeviceRun run(c, [&](const Shape& shape) {
    Tensor t = Tensor::empty(shape, DType::F32);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
    return t.to_dtype(c.dtype).to(Device::CUDA);
  });
  const cuda::flash::Errors all = cuda::flash::validate(run, cuda::flash::every_row(c));
  EXPECT_EQ(all.unwritten, 0) << "elements of out/lse left as NaN poison";
  EXPECT_TRUE(all.within_twice_plain())
      << "max |kernel - fp32 ref| = " << all.kernel << ", plain " << dtype_name(c.dtype) << " = " << all.plain;
  EXPECT_LE(all.lse, cuda::flash::kMaxLseError) << "max |lse - ref|";
  std::printf("[ %s ] max err %.3g, plain %s %.3g, lse %.3g\n", c.name.c_str(), all.kernel, dtype_name(c.dtype),
              all.plain, all.lse);
}

const std::vector<int> kMixed = {1, 17, 128, 1000};

std::vector<Case> cases() {
  std::vector<Case> v;
  const int dims[4][2] = {{192, 128}, {128, 128}, {64, 64}, {256, 256}};
  for (auto& d : dims)
    for (DType t : {DType::BF16, DType::F16}) {
      const std::string tag = std::to_string(d[0]) + "_" + std::to_string(d[1]) + "_" + dtype_name(t);
      v.push_back({"gqa_causal_" + tag, d[0], d[1], 8, 2, t, true, -1, kMixed, kMixed});
      v.push_back({"mha_noncausal_" + tag, d[0], d[1], 3, 3, t, false, -1, {1, 17, 128, 1000}, {5, 17, 300, 1000}});
      v.push_back({"mqa_chunked_window_" + tag, d[0], d[1], 5, 1, t, true, 200, kMixed, {65, 317, 129, 1077}});
    }
  v.push_back({"mla_128_heads", 192, 128, 128, 128, DType::BF16, true, -1, kMixed, kMixed});
  v.push_back({"one_head_long", 192, 128, 1, 1, DType::BF16, true, -1, {1, 17, 128, 1000, 4096},
               {1, 17, 128, 1000, 4096}});
  v.push_back({"gqa_long_fp16", 128, 128, 4, 2, DType::F16, true, -1, {4096, 17}, {4096, 17}});
  v.push_back({"window_0_sees_only_itself", 128, 128, 2, 2, DType::BF16, true, 0, kMixed, kMixed});
  v.push_back({"window_noncausal", 64, 64, 4, 2, DType::BF16, false, 100, kMixed, {1, 40, 128, 900}});
  v.push_back({"fewer_keys_than_queries", 192, 128, 2, 1, DType::BF16, true, -1, {17, 128, 33}, {5, 128, 0}});
  v.push_back({"zero_length_sequences", 128, 128, 2, 2, DType::F16, false, -1, {0, 17, 0, 70}, {3, 17, 0, 70}});
  // Explicit causal offsets (the pieces of a chunked prefill): a piece before the queries (every row sees all of
  // it), the last piece (early rows see none of it), a middle cut, offsets far out both ways.
  v.push_back({"causal_offsets_mla", 192, 128, 16, 16, DType::BF16, true, -1, {200, 130, 64, 7, 100},
               {300, 90, 500, 40, 64}, {2000, -70, 300, 100000, -1000}});
  v.push_back({"causal_offsets_window_fp16", 128, 128, 4, 2, DType::F16, true, 50, {129, 65}, {300, 77},
               {120, -20}});
  // Every case so far again with the tiles launched longest first (tile_order.cuh): same results, another order;
  // but the three largest (their CPU references dominate the check's time under memcheck). Two of them also one
  // head after another (longest_first 2), and in the plain order from the tile list (3 and 4).
  const size_t plain = v.size();
  for (size_t i = 0; i < plain; ++i) {
    Case c = v[i];
    if (c.name == "mla_128_heads" || c.name == "one_head_long" || c.name == "gqa_long_fp16") continue;
    c.name += "_lpt";
    c.longest_first = 1;
    v.push_back(c);
    const bool ordered = c.name == "gqa_causal_192_128_bf16_lpt" || c.name == "causal_offsets_mla_lpt";
    if (ordered) {
      c.name += "_by_head";
      c.longest_first = 2;
      v.push_back(c);
    }
    // The plain order from the list without empty m-blocks, by head (3) and heads together (4); the
    // non-causal case lists its m-blocks ascending.
    if (!ordered && v[i].name != "mha_noncausal_128_128_bf16") continue;
    c.name = v[i].name + "_compact_by_head";
    c.longest_first = 3;
    v.push_back(c);
    c.name = v[i].name + "_compact";
    c.longest_first = 4;
    v.push_back(c);
  }
  // One small case per head-dim pair (several key tiles, chunked): what launch/gpu_check.sh runs under racecheck.
  for (auto& d : dims)
    v.push_back({"small_" + std::to_string(d[0]) + "_" + std::to_string(d[1]), d[0], d[1], 2, 1, DType::BF16, true,
                 -1, {1, 17, 130}, {1, 40, 200}});
  // Every case so far on the Hopper kernel (kernel_wgmma.cuh), names ending in "_wg" (the small ones included, so
  // racecheck sees it too), but the two longest-sequence ones and the longest-first copies other than two.
  const size_t all = v.size();
  for (size_t i = 0; i < all; ++i) {
    Case c = v[i];
    const bool lpt = c.name.size() > 4 && c.name.compare(c.name.size() - 4, 4, "_lpt") == 0;
    if (c.name == "one_head_long" || c.name == "gqa_long_fp16" ||
        (lpt && c.name != "gqa_causal_192_128_bf16_lpt" && c.name != "causal_offsets_mla_lpt"))
      continue;
    c.name += "_wg";
    c.wgmma = true;
    v.push_back(c);
  }
  // The same on the warp-specialized Hopper kernel (kernel_wgmma_ws.cuh), names ending in "_ws", where d_v is up to
  // 128 (256/256 keeps the wgmma kernel).
  const size_t with_wg = v.size();
  for (size_t i = all; i < with_wg; ++i) {
    Case c = v[i];
    if (c.dv > 128) continue;
    c.name = c.name.substr(0, c.name.size() - 3) + "_ws";
    c.warp_specialized = true;
    v.push_back(c);
  }
  // And on the pipelined one (kernel_wgmma_pipelined.cuh), names ending in "_pipe", where d_v is up to 128; again
  // with its warpgroups taking turns ("_pingpong"); and persistent, with and without turns ("_persist",
  // "_persist_pp"), on 3 CTAs, so that each one walks many tiles (an SM's worth would give most cases one a CTA).
  for (size_t i = all; i < with_wg; ++i) {
    Case c = v[i];
    if (c.dv > 128) continue;
    const std::string base = c.name.substr(0, c.name.size() - 3);
    c.name = base + "_pipe";
    c.pipelined = true;
    v.push_back(c);
    c.name = base + "_pingpong";
    c.pingpong = true;
    v.push_back(c);
    c.name = base + "_persist_pp";
    c.persistent = 3;
    v.push_back(c);
    c.name = base + "_persist";
    c.pingpong = false;
    v.push_back(c);
  }
  return v;
}

class FlashPrefillGpu : public ::testing::TestWithParam<Case> {};

TEST_P(FlashPrefillGpu, MatchesCpuReferenceWithinTwiceThePlainError) {
  if (!gpu_available()) GTEST_SKIP() << "no usable GPU: " << gpu_info().reason;
  run_case(GetParam());
}

INSTANTIATE_TEST_SUITE_P(Cases, FlashPrefillGpu, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

// The tile lists (tile_order.cuh): every (sequence, m-block) tile exactly once, for a causal varlen batch with
// empty sequences, explicit offsets and a window; longest first by non-increasing key blocks as the kernel counts
// them (tile_key_blocks on the host), the plain order sequence by sequence with each one's m-blocks last first.
TEST(FlashPrefillTileOrder, ListsEveryTileOnceLongestFirstOrInThePlainOrder) {
  if (!gpu_available()) GTEST_SKIP() << "no usable GPU: " << gpu_info().reason;
  const std::vector<int> len_q = {4096, 0, 17, 1000, 130, 0, 1}, len_k = {4096, 5, 300, 1000, 9000, 0, 64};
  const std::vector<int> offset = {0, 0, 283, 0, 8870, 0, 63};
  for (const int window : {-1, 300}) {
    SCOPED_TRACE("window " + std::to_string(window));
    std::vector<int32_t> cu_q{0}, cu_k{0};
    for (size_t b = 0; b < len_q.size(); ++b) {
      cu_q.push_back(cu_q.back() + len_q[b]);
      cu_k.push_back(cu_k.back() + len_k[b]);
    }
    const int bm = 128, bn = 64, batch = int(len_q.size());
    int tiles = 0;
    for (int l : len_q) tiles += (l + bm - 1) / bm;
    Tensor dcu_q = Tensor::empty({batch + 1}, DType::I32), dcu_k = Tensor::empty({batch + 1}, DType::I32);
    Tensor doff = Tensor::empty({batch}, DType::I32);
    std::copy(cu_q.begin(), cu_q.end(), dcu_q.data<int32_t>());
    std::copy(cu_k.begin(), cu_k.end(), dcu_k.data<int32_t>());
    std::copy(offset.begin(), offset.end(), doff.data<int32_t>());
    dcu_q = dcu_q.to(Device::CUDA), dcu_k = dcu_k.to(Device::CUDA), doff = doff.to(Device::CUDA);
    for (const int longest_first : {1, 0}) {
      Tensor order = Tensor::empty({2 * int64_t(tiles)}, DType::I32, Device::CUDA);
      const cuda::flash::TileOrderArgs args{dcu_q.data<int32_t>(), dcu_k.data<int32_t>(), doff.data<int32_t>(),
                                            batch, tiles, 1, window, bm, bn, longest_first};
      cuda::flash::order_tiles(args, reinterpret_cast<int2*>(order.raw()), nullptr);
      const Tensor host = order.to(Device::CPU);
      std::set<std::pair<int, int>> seen;
      int last_work = 1 << 30;
      std::pair<int, int> last{-1, 0};
      for (int t = 0; t < tiles; ++t) {
        const int seq = host.data<int32_t>()[2 * t], m_block = host.data<int32_t>()[2 * t + 1];
        ASSERT_TRUE(seq >= 0 && seq < batch && m_block >= 0 && m_block * bm < len_q[size_t(seq)]) << "tile " << t;
        EXPECT_TRUE(seen.insert({seq, m_block}).second) << "tile (" << seq << ", " << m_block << ") twice";
        const size_t b = size_t(seq);
        const int work = std::max(
            0, cuda::flash::tile_key_blocks(m_block * bm, len_q[b], len_k[b], offset[b], true, window, bm, bn).count());
        if (longest_first) {
          EXPECT_LE(work, last_work) << "tile " << t << " heavier than the one before it";
        } else {
          EXPECT_TRUE(seq > last.first || (seq == last.first && m_block == last.second - 1))
              << "tile " << t << " (" << seq << ", " << m_block << ") after (" << last.first << ", " << last.second
              << ")";
          EXPECT_TRUE(seq == last.first || m_block == (len_q[b] + bm - 1) / bm - 1) << "a sequence's last block first";
        }
        last_work = work;
        last = {seq, m_block};
      }
      EXPECT_EQ(int(seen.size()), tiles) << "longest_first " << longest_first;
    }
  }
}

// NaN in an input reaches exactly the outputs a plain softmax(S) @ V makes NaN (flash_prefill.h), the other rows
// still match the reference, and a row that sees no key still writes exact zeros and -inf. 128/128 bf16, causal,
// 4 q heads over 2 kv heads (q heads 0, 1 read kv head 0). seq 0: q NaN (row 5, head 1); seq 1: k NaN (key 10,
// kv head 0); seq 2: v NaN (key 0, kv head 1, column 7); seq 3: 20 queries over 5 keys (rows 0..14 see nothing)
// with v NaN (key 0, kv head 0, column 2) in the one key tile that rows 15..19 share with them.
// Stage A's kernel (0), the Hopper one (1), its warp-specialized (2) and pipelined (3; 4 with turns) variants, the
// last persistent on 2 CTAs (5; 6 with turns).
class FlashPrefillNan : public ::testing::TestWithParam<int> {};
TEST_P(FlashPrefillNan, ReachesTheRowsThatSeeItAndNoOthers) {
  if (!gpu_available()) GTEST_SKIP() << "no usable GPU: " << gpu_info().reason;
  Case c{"nan_propagation", 128, 128, 4, 2, DType::BF16, true, -1, {40, 70, 33, 20}, {40, 70, 33, 5}};
  c.wgmma = GetParam() >= 1;
  c.warp_specialized = GetParam() == 2;
  c.pipelined = GetParam() >= 3;
  c.pingpong = GetParam() == 4 || GetParam() == 6;
  c.persistent = GetParam() >= 5 ? 2 : 0;
  const std::vector<int> cq = {0, 40, 110, 143, 163}, ck = {0, 40, 110, 143, 148};
  const int dv = c.dv, hq = c.hq;
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.f, 1.f);
  int which = 0;  // make_input is called for q, k, v in that order
  cuda::flash::DeviceRun run(c, [&](const Shape& shape) {
    Tensor t = Tensor::empty(shape, DType::F32);
    float* d = t.data<float>();
    for (int64_t i = 0; i < t.numel(); ++i) d[i] = dist(rng);
    auto at = [&](int64_t row, int64_t head, int64_t col) -> float& {
      return d[(row * shape[1] + head) * shape[2] + col];
    };
    if (which == 0) at(cq[0] + 5, 1, 3) = NAN;
    if (which == 1) at(ck[1] + 10, 0, 0) = NAN;
    if (which == 2) at(ck[2] + 0, 1, 7) = NAN, at(ck[3] + 0, 0, 2) = NAN;
    ++which;
    return t.to_dtype(c.dtype).to(Device::CUDA);
  });
  // Rows whose inputs hold no NaN they can see: compared with the references as usual.
  std::vector<std::pair<int, int>> clean;
  for (int i = 0; i < 40; ++i)
    if (i != 5) clean.push_back({0, i});
  for (int i = 0; i < 10; ++i) clean.push_back({1, i});
  for (int i = 0; i < 15; ++i) clean.push_back({3, i});
  const cuda::flash::Errors e = cuda::flash::validate(run, clean);
  EXPECT_TRUE(e.within_twice_plain()) << "max |kernel - fp32 ref| = " << e.kernel << ", plain " << e.plain;
  EXPECT_LE(e.lse, cuda::flash::kMaxLseError);

  // Where NaN must be, and nowhere else.
  auto out_nan = [&](int row, int h, int col) {
    if (row == cq[0] + 5) return h == 1;
    if (row >= cq[1] + 10 && row < cq[2]) return h < 2;
    if (row >= cq[2] && row < cq[3]) return h >= 2 && col == 7;
    if (row >= cq[3] + 15) return h < 2 && col == 2;
    return false;
  };
  auto lse_nan = [&](int row, int h) {
    return (row == cq[0] + 5 && h == 1) || (row >= cq[1] + 10 && row < cq[2] && h < 2);
  };
  const Tensor out = run.out.to(Device::CPU).to_dtype(DType::F32), lse = run.lse.to(Device::CPU);
  int64_t wrong = 0, nan_out = 0;
  for (int row = 0; row < cq[4]; ++row)
    for (int h = 0; h < hq; ++h) {
      for (int col = 0; col < dv; ++col) {
        const float got = out.data<float>()[(int64_t(row) * hq + h) * dv + col];
        nan_out += std::isnan(got);
        if (std::isnan(got) != out_nan(row, h, col) && wrong++ < 5)
          ADD_FAILURE() << "out row " << row << " head " << h << " col " << col << " = " << got;
        if (row >= cq[3] && row < cq[3] + 15 && got != 0.f && wrong++ < 5)
          ADD_FAILURE() << "out row " << row << " sees no key but holds " << got;
      }
      const float got = lse.data<float>()[int64_t(row) * hq + h];
      if (std::isnan(got) != lse_nan(row, h) && wrong++ < 5)
        ADD_FAILURE() << "lse row " << row << " head " << h << " = " << got;
      if (row >= cq[3] && row < cq[3] + 15 && got != -INFINITY && wrong++ < 5)
        ADD_FAILURE() << "lse row " << row << " sees no key but holds " << got;
    }
  EXPECT_EQ(wrong, 0) << "elements with NaN where none belongs, or none where one does";
  EXPECT_EQ(nan_out, int64_t(dv) + 60 * 2 * dv + 33 * 2 + 5 * 2);
}
INSTANTIATE_TEST_SUITE_P(Kernels, FlashPrefillNan, ::testing::Values(0, 1, 2, 3, 4, 5, 6),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return std::string(info.param == 0   ? "mma"
                                              : info.param == 1 ? "wgmma"
                                              : info.param == 2 ? "wgmma_ws"
                                              : info.param == 3 ? "wgmma_pipelined"
                                              : info.param == 4 ? "wgmma_pingpong"
                                              : info.param == 5 ? "wgmma_persistent"
                                                                : "wgmma_persistent_pingpong");
                         });

// ---- API boundary: no GPU needed ----------------------------------------------------------------------------

struct FlashPrefillBoundary : ::testing::Test {
  alignas(16) char fake[64] = {};  // stands in for device buffers: no test gets past the checks
  std::vector<int32_t> cu_q = {0, 3, 10}, cu_k = {0, 5, 12};
  FlashPrefillParams p;
  void SetUp() override {
    p.q = p.k = p.v = fake;
    p.out = fake;
    p.lse = reinterpret_cast<float*>(fake);
    p.cu_seqlens_q = p.cu_seqlens_k = reinterpret_cast<const int32_t*>(fake);
    p.cu_seqlens_q_host = cu_q.data(), p.cu_seqlens_k_host = cu_k.data();
    p.batch = 2, p.total_q = 10, p.total_k = 12;
    p.num_heads_q = 8, p.num_heads_kv = 2, p.head_dim_qk = 192, p.head_dim_v = 128;
    p.dtype = DType::BF16, p.softmax_scale = 0.07f;
  }
  void expect_error(const std::string& needle) {
    try {
      cuda::flash_prefill(p, nullptr);
      ADD_FAILURE() << "no error; expected one naming: " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what();
    }
  }
};

TEST_F(FlashPrefillBoundary, ValidParamsPassTheChecks) { EXPECT_NO_THROW(cuda::check_flash_prefill(p)); }

TEST_F(FlashPrefillBoundary, RejectsUnsupportedHeadDims) {
  p.head_dim_qk = 96, p.head_dim_v = 96;
  expect_error("head dims (qk 96, v 96) are not supported; supported (qk, v): (192, 128), (128, 128)");
  p.head_dim_qk = 192, p.head_dim_v = 192;
  expect_error("(qk 192, v 192)");
}

TEST_F(FlashPrefillBoundary, RejectsHeadRatios) {
  p.num_heads_q = 6, p.num_heads_kv = 4;
  expect_error("num_heads_q = 6 is not a multiple of num_heads_kv = 4");
  p.num_heads_kv = 0;
  expect_error("num_heads_kv = 0");
}

TEST_F(FlashPrefillBoundary, RejectsOtherDtypes) {
  p.dtype = DType::F32;
  expect_error("dtype f32 is not supported");
  p.dtype = DType::F8_E4M3;
  expect_error("is not supported (bf16 or f16)");
}

TEST_F(FlashPrefillBoundary, RejectsNullPointers) {
  p.q = nullptr;
  expect_error("q is null");
  SetUp();
  p.out = nullptr;
  expect_error("out is null");
  SetUp();
  p.cu_seqlens_k = nullptr;
  expect_error("cu_seqlens_k is null");
  SetUp();
  p.cu_seqlens_q_host = nullptr;
  expect_error("cu_seqlens_q_host is null");
}

TEST_F(FlashPrefillBoundary, RejectsBadCuSeqlens) {
  cu_q = {0, 5, 3};
  expect_error("cu_seqlens_q must be non-decreasing, but cu_seqlens_q[1] = 5 > cu_seqlens_q[2] = 3");
  cu_q = {2, 3, 10};
  expect_error("cu_seqlens_q[0] must be 0, got 2");
  cu_q = {0, 3, 10}, cu_k = {0, 5, 13};
  expect_error("cu_seqlens_k[2] = 13 exceeds total_k = 12");
}

TEST_F(FlashPrefillBoundary, RejectsScalarsOutOfRange) {
  p.softmax_scale = 0.f;
  expect_error("softmax_scale = 0 must be positive and finite");
  p.softmax_scale = NAN;
  expect_error("softmax_scale = nan");
  p.softmax_scale = 1.f, p.window_left = -2;
  expect_error("window_left = -2");
  p.window_left = -1, p.longest_first = 5;
  expect_error("longest_first = 5 must be -1 (the kernel's default), 0, 1, 2, 3 or 4");
  p.longest_first = -1, p.batch = 0;
  expect_error("batch = 0 must be in [1, 65535]");
}

TEST_F(FlashPrefillBoundary, TakesOneHopperVariantAtATime) {
  p.warp_specialized = true;
  EXPECT_NO_THROW(cuda::check_flash_prefill(p));
  p.pipelined = true;
  expect_error("warp_specialized and pipelined are both set");
  p.warp_specialized = false;
  EXPECT_NO_THROW(cuda::check_flash_prefill(p));
  p.pingpong = true, p.persistent = -1;
  EXPECT_NO_THROW(cuda::check_flash_prefill(p));
  p.persistent = -2;
  expect_error("persistent = -2 must be -1 (a CTA per SM), 0 (off) or a number of CTAs");
  p.persistent = 0, p.pipelined = false;
  expect_error("pingpong is set without pipelined");
  p.pingpong = false, p.persistent = 4;
  expect_error("persistent is set without pipelined");
}

TEST_F(FlashPrefillBoundary, RejectsMisalignedBuffers) {
  p.k = fake + 2;
  expect_error("must be 16-byte aligned (address mod 16 = 2)");
}

TEST_F(FlashPrefillBoundary, CausalOffsetsNeedACausalMask) {
  const int32_t offsets[2] = {0, 0};
  p.causal_offset = offsets;
  EXPECT_NO_THROW(cuda::check_flash_prefill(p));
  p.causal = false;
  expect_error("causal_offset is given without a causal mask");
}

}  // namespace

// The shared row check itself (host code, runs everywhere): an output equal to the fp32 reference scores zero,
// the plain bf16 implementation does not, and NaN poison is counted.
TEST(FlashPrefillReference, ExactOutputScoresZeroAndPoisonIsCounted) {
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.f, 1.f);
  auto make = [&](int64_t rows, int heads, int dim) {
    Tensor t = Tensor::empty({rows, heads, dim}, DType::F32);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
    return t;
  };
  const int lq = 5, lk = 9, hq = 4, hkv = 2, d = 16;
  const cuda::FlashPrefillShape shape{d, d, hq, hkv, DType::BF16, true, -1, 0.25f};
  Tensor q = make(lq, hq, d), k = make(lk, hkv, d), v = make(lk, hkv, d);
  Tensor lse;
  Tensor out = ops::attention(q, k, v, shape.scale, lk - lq, &lse);  // the fp32 reference, all rows at once
  cuda::FlashPrefillErrors all;
  for (int i = 0; i < lq; ++i) all.merge(cuda::flash_prefill_check_row(shape, q, k, v, out, lse, i, i, 0, lq, lk));
  EXPECT_EQ(all.rows, lq);
  EXPECT_EQ(all.unwritten, 0);
  EXPECT_LT(all.kernel, 1e-5);
  EXPECT_LT(all.lse, 1e-5);
  EXPECT_GT(all.plain, 1e-4) << "the plain bf16 yardstick must carry bf16 error";
  EXPECT_TRUE(all.within_twice_plain());
  out.data<float>()[3] = NAN;
  EXPECT_EQ(cuda::flash_prefill_check_row(shape, q, k, v, out, lse, 0, 0, 0, lq, lk).unwritten, 1);
  EXPECT_EQ(cuda::flash_prefill_visible_keys(true, 2, 4, lq, lk), std::make_pair(6, 9));
  EXPECT_EQ(cuda::flash_prefill_visible_keys(true, -1, 3, 10, 20, -5), std::make_pair(0, 0)) << "before every key";
  EXPECT_EQ(cuda::flash_prefill_visible_keys(true, -1, 3, 10, 20, 100), std::make_pair(0, 20)) << "past every key";
  EXPECT_EQ(cuda::flash_prefill_visible_keys(true, 2, 3, 10, 20, 4), std::make_pair(5, 8));
}
