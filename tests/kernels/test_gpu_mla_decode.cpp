// MLA decode kernel (kernels/cuda/mla_decode/mla_decode.h) against the CPU reference ops::mla_paged_attention,
// inputs built and compared by kernels/cuda/mla_decode/cases.h (shared with the workbench): block sizes
// 1/16/64/256, 1/16/128 heads, 1..4 query tokens per sequence mixed in one batch, zero-length and one-token
// sequences, shuffled block tables with garbage in unused entries, NaN in every unused cache slot, outputs
// poisoned before each run (so an unwritten element fails), a split schedule from 1 to 1024 parts; invalid
// device-side metadata gives NaN in every row concerned (never stale data).
// The API-boundary tests run everywhere (checks happen before any CUDA call); the GPU cases skip without a GPU.
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/cuda/mla_decode/cases.h"
#include "kernels/cuda/mla_decode/mla_decode.h"
#include "kernels/cuda/wgmma_device.h"
#include "kernels/ops.h"
#include "runtime/device.h"
#include "runtime/dtype.h"
#include "runtime/error.h"
#include "runtime/tensor.h"
#include "tests/kernels/mla_decode_gpu_checks.h"

using namespace mlarun;
namespace cuda = mlarun::ops::cuda;
using cuda::MlaDecodeParams;
using cuda::MlaDecodeStatus;

namespace {

using cuda::mla::Case;
using cuda::mla::DeviceRun;
using cuda::mla::Inputs;
using cuda::mla::make_inputs;
using cuda::mla_test::expect_matches_reference;
using cuda::mla_test::fake_params;
using cuda::mla_test::g_fake;
using cuda::mla_test::kLens;
using cuda::mla_test::kQLens;
using cuda::mla_test::run_and_check;
constexpr float kScale = cuda::mla::kCaseScale;

// ---- API boundary: no GPU needed --------------------------------------------------------------------------

TEST(MlaDecodeApi, ValidParamsPassTheChecks) { EXPECT_NO_THROW(cuda::check_mla_decode(fake_params())); }

TEST(MlaDecodeApi, SequencesUpTo2To30TokensPass) {
  MlaDecodeParams p = fake_params();
  p.block_size = 256, p.max_blocks_per_seq = 1 << 22;
  EXPECT_NO_THROW(cuda::check_mla_decode(p));
  p.block_size = 1, p.max_blocks_per_seq = 1 << 30;
  EXPECT_NO_THROW(cuda::check_mla_decode(p));
  EXPECT_EQ(cuda::mla::kMaxSeqLen / cuda::mla::kBlockN + cuda::mla::kFixedCostTiles, (1 << 25) + 2)
      << "tiles of one sequence: int32 in the pieces; their batch-wide sum is int64 in the scheduler";
}

TEST(MlaDecodeApi, EveryBadFieldIsNamedWithItsValue) {
  struct Bad {
    std::function<void(MlaDecodeParams&)> mutate;
    std::string expect;
  };
  const std::vector<Bad> cases = {
      {[](auto& p) { p.l2_prefetch_tiles = -1; }, "l2_prefetch_tiles -1 is outside 0..8"},
      {[](auto& p) { p.l2_prefetch_tiles = 9; }, "l2_prefetch_tiles 9 is outside 0..8"},
      {[](auto& p) { p.block_size = 0; }, "block_size 0 is outside 1..256"},
      {[](auto& p) { p.block_size = 257; }, "block_size 257 is outside 1..256"},
      {[](auto& p) { p.num_heads = 0; }, "num_heads 0 is outside 1..128"},
      {[](auto& p) { p.num_heads = 129; }, "num_heads 129 is outside 1..128"},
      {[](auto& p) { p.max_q_per_seq = 5; }, "max_q_per_seq (query tokens per sequence) 5 is outside 1..4"},
      {[](auto& p) { p.max_q_per_seq = 0; }, "max_q_per_seq (query tokens per sequence) 0"},
      {[](auto& p) { p.kv_lora_rank = 256; }, "kv_lora_rank 256 and rope_dim 64 are not supported"},
      {[](auto& p) { p.rope_dim = 32; }, "rope_dim 32 are not supported"},
      {[](auto& p) { p.batch = 0; }, "batch 0 is outside 1..8192"},
      {[](auto& p) { p.batch = 9000; }, "batch 9000 is outside 1..8192"},
      {[](auto& p) { p.num_tokens = 3; }, "num_tokens 3 does not fit 4 sequences of 1..2 query tokens"},
      {[](auto& p) { p.num_tokens = 9; }, "num_tokens 9 does not fit"},
      {[](auto& p) { p.num_blocks = 0; }, "num_blocks 0 is outside"},
      {[](auto& p) { p.max_blocks_per_seq = 0; }, "max_blocks_per_seq 0 is outside"},
      // At most 2^30 tokens a sequence (config.h kMaxSeqLen): token and tile indices stay in int32.
      {[](auto& p) { p.block_size = 256, p.max_blocks_per_seq = (1 << 22) + 1; },
       "max_blocks_per_seq 4194305 is outside 1..4194304"},
      {[](auto& p) { p.block_size = 1, p.max_blocks_per_seq = (1 << 30) + 1; },
       "max_blocks_per_seq 1073741825 is outside 1..1073741824"},
      {[](auto& p) { p.num_sms = 0; }, "num_sms 0 is outside 1..1024"},
      {[](auto& p) { p.softmax_scale = 0.f; }, "softmax_scale 0 must be positive"},
      {[](auto& p) { p.softmax_scale = NAN; }, "softmax_scale nan must be positive"},
      {[](auto& p) { p.q = nullptr; }, "q is null"},
      {[](auto& p) { p.kv_cache = nullptr; }, "kv_cache is null"},
      {[](auto& p) { p.block_tables = nullptr; }, "block_tables is null"},
      {[](auto& p) { p.seq_lens = nullptr; }, "seq_lens is null"},
      {[](auto& p) { p.cu_seqlens_q = nullptr; }, "cu_seqlens_q is null"},
      {[](auto& p) { p.out = nullptr; }, "out is null"},
      {[](auto& p) { p.lse = nullptr; }, "lse is null"},
      {[](auto& p) { p.workspace = nullptr; }, "workspace is null"},
      {[](auto& p) { p.kv_cache = g_fake + 2; }, "is not 16-byte aligned"},
      {[](auto& p) { p.kv_format = cuda::MlaKvFormat(3); }, "kv_format 3 is not bf16 (0), fp8 (1) or int8 (2)"},
      {[](auto& p) { p.out = reinterpret_cast<uint16_t*>(g_fake + 8); }, "is not 16-byte aligned"},
      {[](auto& p) { p.workspace = g_fake + 16; }, "is not 256-byte aligned"},
      {[](auto& p) { p.workspace_bytes -= 1; }, " bytes needed for batch 4, 16 heads, max_q_per_seq 2 and 132 SMs"},
      {[](auto& p) { p.attend = cuda::mla::AttendKernel(8); },
       "attend 8 is not simt (0), tensor cores (1), fitted tensor cores (2), wgmma (3), wgmma split (4), auto (5), "
       "wgmma warp-specialized (6) or wgmma seesaw (7)"},
      {[](auto& p) { p.attend = cuda::mla::AttendKernel(-1); }, "attend -1 is not simt (0)"},
  };
  for (const Bad& bad : cases) {
    SCOPED_TRACE(bad.expect);
    MlaDecodeParams p = fake_params();
    bad.mutate(p);
    // The whole call and each stage reject it before touching CUDA.
    for (auto call : {cuda::mla_decode, cuda::mla_decode_schedule, cuda::mla_decode_attend, cuda::mla_decode_combine}) {
      try {
        call(p, nullptr);
        ADD_FAILURE() << "accepted";
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(bad.expect), std::string::npos) << e.what();
      }
    }
  }
}

TEST(MlaDecodeApi, QuantizedRowsAreTheCpuCacheRows) {
  // The kernel reads the rows the CPU writes (kernels/kv_quant.h): 512 codes, 4 scales, 64 bf16 k_pe.
  const KvCacheFormat f = kv_cache_format(DType::F8_E4M3, DType::BF16, 512, 64);
  ASSERT_EQ(f.quant, KvQuant::Fp8);
  EXPECT_EQ(cuda::mla_kv_row_bytes(cuda::MlaKvFormat::Fp8), f.row_bytes());
  EXPECT_EQ(cuda::mla_kv_row_bytes(cuda::MlaKvFormat::Int8), 656);
  EXPECT_EQ(cuda::mla_kv_row_bytes(cuda::MlaKvFormat::Bf16), 1152);
  EXPECT_EQ(cuda::mla::kQuantScalesOffset, f.scales_offset());
  EXPECT_EQ(cuda::mla::kQuantRopeOffset, f.rope_offset());
  EXPECT_STREQ(cuda::mla_kv_format_name(cuda::MlaKvFormat::Int8), "int8");
}

TEST(MlaDecodeApi, WorkspaceAndPartsFollowTheConfig) {
  constexpr auto kMma = cuda::mla::AttendKernel::TensorCores;     // 32-row tiles (the fitted ones: kernels test)
  EXPECT_EQ(cuda::mla_decode_num_parts(16, 1, 132, kMma), 132);  // 16 rows: one M tile, one part per SM
  EXPECT_EQ(cuda::mla_decode_num_parts(128, 1, 132, kMma), 33);  // 128 rows: 4 M tiles share each part
  EXPECT_EQ(cuda::mla_decode_num_parts(128, 4, 132, kMma), 8);   // 512 rows: 16 M tiles
  EXPECT_EQ(cuda::mla_decode_num_parts(128, 4, 4, kMma), 1);
  const size_t small = cuda::mla_decode_workspace_bytes(8, 16, 1, 132);
  EXPECT_GT(cuda::mla_decode_workspace_bytes(64, 16, 1, 132), small);
  EXPECT_GT(cuda::mla_decode_workspace_bytes(8, 16, 2, 132), small);
  EXPECT_THROW(cuda::mla_decode_workspace_bytes(0, 16, 1, 132), Error);
  EXPECT_THROW(cuda::mla_decode_num_parts(16, 1, 0), Error);
}

// ---- GPU cases ---------------------------------------------------------------------------------------------
class MlaDecodeBlockSize : public ::testing::TestWithParam<int> {};
TEST_P(MlaDecodeBlockSize, MatchesReference) { run_and_check({kLens, kQLens, 16, GetParam(), 0, 11}); }
INSTANTIATE_TEST_SUITE_P(Gpu, MlaDecodeBlockSize, ::testing::Values(1, 16, 64, 256));

class MlaDecodeHeads : public ::testing::TestWithParam<int> {};
TEST_P(MlaDecodeHeads, MatchesReference) {
  run_and_check({{0, 1, 100, 700, 31}, {1, 4, 2, 3, 1}, GetParam(), 64, 0, 12});
}
INSTANTIATE_TEST_SUITE_P(Gpu, MlaDecodeHeads, ::testing::Values(1, 16, 128));

class MlaDecodeQueryTokens : public ::testing::TestWithParam<int> {};
TEST_P(MlaDecodeQueryTokens, MatchesReference) {
  const int n = GetParam();
  run_and_check({{513, 2048, 90, n}, {n, n, n, n}, 16, 64, 0, 13});
}
INSTANTIATE_TEST_SUITE_P(Gpu, MlaDecodeQueryTokens, ::testing::Values(1, 2, 3, 4));

// 1 part (nothing split), a few parts (long sequences cut into several pieces), 1024 parts (one tile each).
class MlaDecodeSplits : public ::testing::TestWithParam<int> {};
TEST_P(MlaDecodeSplits, MatchesReference) {
  run_and_check({{4000, 10, 1, 0, 2500, 77}, {2, 1, 1, 3, 4, 2}, 16, 16, GetParam(), 14});
}
INSTANTIATE_TEST_SUITE_P(Gpu, MlaDecodeSplits, ::testing::Values(1, 5, 1024));

// The quantized caches (fp8 and int8 rows, dequantized in the kernel) against the CPU reading the same rows:
// block sizes, head counts and query tokens mixed as in the bf16 cases.
class MlaDecodeQuantized : public ::testing::TestWithParam<std::tuple<cuda::MlaKvFormat, int, int>> {};
TEST_P(MlaDecodeQuantized, MatchesReference) {
  const auto [format, heads, block_size] = GetParam();
  Case c{kLens, kQLens, heads, block_size, 0, 21};
  c.format = format;
  run_and_check(c);
}
INSTANTIATE_TEST_SUITE_P(Gpu, MlaDecodeQuantized,
                         ::testing::Combine(::testing::Values(cuda::MlaKvFormat::Fp8, cuda::MlaKvFormat::Int8),
                                            ::testing::Values(16, 128), ::testing::Values(1, 64, 256)));

TEST(MlaDecodeGpu, QuantizedSplitScheduleMatchesReference) {
  for (auto format : {cuda::MlaKvFormat::Fp8, cuda::MlaKvFormat::Int8}) {
    Case c{{4000, 10, 1, 0, 2500, 77}, {2, 1, 1, 3, 4, 2}, 16, 16, 5, 22};
    c.format = format;
    SCOPED_TRACE(cuda::mla_kv_format_name(format));
    run_and_check(c);
  }
}

// A tile holding NaN was stored with a NaN scale: every query that sees that token gets NaN, as on the CPU;
// the other sequences are untouched. The SIMT kernel and the fitted one (codes widened or in registers).
TEST(MlaDecodeGpu, QuantizedNanTileReadsNaN) {
  if (!gpu_available()) GTEST_SKIP() << "no usable GPU: " << gpu_info().reason;
  using K = cuda::mla::AttendKernel;
  for (auto format : {cuda::MlaKvFormat::Fp8, cuda::MlaKvFormat::Int8})
    for (auto [kernel, in_registers] :
         {std::pair{K::Simt, false}, std::pair{K::TensorCoresFitted, false}, std::pair{K::TensorCoresFitted, true}}) {
      SCOPED_TRACE(std::string(cuda::mla_kv_format_name(format)) + ", kernel " + std::to_string(int(kernel)) +
                   (in_registers ? ", codes in registers" : ""));
      Case c{{40, 70}, {1, 1}, 16, 16, 0, 23};
      c.format = format, c.attend = kernel, c.codes_in_registers = in_registers;
      Inputs in = make_inputs(c);
      // Token 5 of sequence 1: its second tile's scale becomes NaN (what quantize_row writes for a NaN value).
      const int words = cuda::mla::row_words(format);
      const size_t slot = size_t(in.tables[size_t(in.max_blocks) + 0]) * c.block_size + 5;
      auto* row = reinterpret_cast<uint8_t*>(in.pool.data() + slot * words);
      const float nan = NAN;
      std::memcpy(row + cuda::mla::kQuantScalesOffset + 4, &nan, 4);
      DeviceRun run(in, c);
      ASSERT_TRUE(run.run_whole_call().ok());
      expect_matches_reference(in, c, run, {0});
      const std::vector<float> lse = DeviceRun::flat(run.lse);
      for (int h = 0; h < c.heads; ++h) EXPECT_TRUE(std::isnan(lse[size_t(in.cu_q[1]) * c.heads + h])) << "head " << h;
    }
}

// The attend kernel on tensor cores (attend_mma.cu, MlaDecodeParams::attend = TensorCores) over the bf16 cases above:
// block sizes, head counts (1: one m16 tile mostly empty; 128: four M tiles), query tokens, splits, empty and
// one-token sequences; P in bf16 widens the absolute tolerance by kOutAbsBf16P (cases.h).
class MlaDecodeTensorCores : public ::testing::TestWithParam<std::tuple<int, int, int>> {};
TEST_P(MlaDecodeTensorCores, MatchesReference) {
  const auto [heads, block_size, num_sms] = GetParam();  // num_sms 0: the device's; 5: long sequences split
  Case c{kLens, kQLens, heads, block_size, num_sms, 31};
  c.attend = cuda::mla::AttendKernel::TensorCores;
  run_and_check(c);
}
INSTANTIATE_TEST_SUITE_P(Gpu, MlaDecodeTensorCores,
                         ::testing::Combine(::testing::Values(1, 16, 128), ::testing::Values(1, 64, 256),
                                            ::testing::Values(0, 5)));

// The tensor-core kernel over fp8 and int8 rows: codes widened to bf16 exactly, scores scaled per 128-value tile,
// P times the token's scale per column tile.
class MlaDecodeTensorCoresQuantized : public ::testing::TestWithParam<std::tuple<cuda::MlaKvFormat, int, int>> {};
TEST_P(MlaDecodeTensorCoresQuantized, MatchesReference) {
  const auto [format, heads, block_size] = GetParam();
  Case c{kLens, kQLens, heads, block_size, 0, 33};
  c.format = format;
  c.attend = cuda::mla::AttendKernel::TensorCores;
  run_and_check(c);
}
INSTANTIATE_TEST_SUITE_P(Gpu, MlaDecodeTensorCoresQuantized,
                         ::testing::Combine(::testing::Values(cuda::MlaKvFormat::Fp8, cuda::MlaKvFormat::Int8),
                                            ::testing::Values(16, 128), ::testing::Values(1, 64)));

// Two runs give the same bits (a moving result is a race), and NaN-free sequences stay so next to long ones.
void expect_identical_runs(cuda::mla::AttendKernel attend) {
  SCOPED_TRACE("attend " + std::to_string(int(attend)));
  Case c{{4000, 10, 1, 0, 2500, 77}, {2, 1, 1, 3, 4, 2}, 16, 16, 1024, 32};
  c.attend = attend;
  const Inputs in = make_inputs(c);
  DeviceRun run(in, c);
  ASSERT_TRUE(run.run_whole_call().ok());
  const std::vector<float> once = DeviceRun::flat(run.out);
  ASSERT_TRUE(run.run_whole_call().ok());
  const std::vector<float> twice = DeviceRun::flat(run.out);
  EXPECT_EQ(std::memcmp(once.data(), twice.data(), once.size() * 4), 0) << "a moving result is a race";
  std::vector<int> all(in.seq_lens.size());
  std::iota(all.begin(), all.end(), 0);
  expect_matches_reference(in, c, run, all);
}

TEST(MlaDecodeGpu, TensorCoreRunsAreIdenticalAndKeepNanOutOfOtherSequences) {
  if (!gpu_available()) GTEST_SKIP() << "no usable GPU: " << gpu_info().reason;
  for (auto attend : {cuda::mla::AttendKernel::TensorCores, cuda::mla::AttendKernel::TensorCoresFitted,
                      cuda::mla::AttendKernel::Wgmma, cuda::mla::AttendKernel::WgmmaSplit})
    expect_identical_runs(attend);
}
// The warp-specialized kernel in tests of its own name (here and below), so a run can take it alone or leave it
// out: a kernel that faults ends its process's CUDA context.
TEST(MlaDecodeGpu, WarpSpecializedRunsAreIdenticalAndKeepNanOutOfOtherSequences) {
  if (!gpu_available()) GTEST_SKIP() << "no usable GPU: " << gpu_info().reason;
  expect_identical_runs(cuda::mla::AttendKernel::WgmmaWarpSpecialized);
}
TEST(MlaDecodeGpu, SeesawRunsAreIdenticalAndKeepNanOutOfOtherSequences) {
  if (!gpu_available()) GTEST_SKIP() << "no usable GPU: " << gpu_info().reason;
  expect_identical_runs(cuda::mla::AttendKernel::WgmmaSeesaw);
}

// Sized for compute-sanitizer's racecheck, which takes minutes on the split cases above: a schedule for 5 SMs over
// short sequences (so they are split and combined), on every attend kernel (the fitted one at 16, 32 and 64 rows,
// over fp8 rows too).
void check_sanitizer_sized(cuda::mla::AttendKernel attend) {
  using cuda::mla::AttendKernel;
  for (const std::vector<int>& q_lens : {std::vector<int>{2, 1, 1, 3, 1}, std::vector<int>{1, 1, 1, 1, 1}}) {
    for (int heads : {16, 4}) {
      if (attend != AttendKernel::TensorCoresFitted && (q_lens[0] == 1 || heads == 4)) continue;
      SCOPED_TRACE("attend " + std::to_string(int(attend)) + ", max_q " + std::to_string(q_lens[3]) + ", heads " +
                   std::to_string(heads));
      Case c{{300, 5, 1, 0, 130}, q_lens, heads, 16, 5, 41};
      c.attend = attend;
      run_and_check(c);
      if (attend != AttendKernel::TensorCoresFitted) continue;
      c.format = cuda::MlaKvFormat::Fp8;  // the fitted kernel's quantized path too, codes widened and in registers
      run_and_check(c);
      c.codes_in_registers = true;
      run_and_check(c);
    }
  }
}

TEST(MlaDecodeGpu, SanitizerSizedSplitsOnEveryKernel) {
  using cuda::mla::AttendKernel;
  for (AttendKernel attend : {AttendKernel::Simt, AttendKernel::TensorCores, AttendKernel::TensorCoresFitted,
                              AttendKernel::Wgmma, AttendKernel::WgmmaSplit})
    check_sanitizer_sized(attend);
}
// The warp-specialized kernel also over 128 heads and 1 or 2 query tokens: four 64-row CTAs per part, the last two
// skipping the one-query pieces (the loading and computing warpgroups must skip the same ones), several pieces
// per CTA (the barriers' phases run on across them).
void check_sanitizer_sized_128_heads(cuda::mla::AttendKernel attend) {
  check_sanitizer_sized(attend);
  Case c{{300, 5, 1, 0, 130}, {2, 1, 1, 2, 1}, 128, 16, 5, 43};
  c.attend = attend;
  run_and_check(c);
}
TEST(MlaDecodeGpu, SanitizerSizedSplitsOnWarpSpecializedKernel) {
  check_sanitizer_sized_128_heads(cuda::mla::AttendKernel::WgmmaWarpSpecialized);
}
// The seesaw kernel over the same: pieces of one step (B scores nothing), of an odd count (a last step of A's alone)
// and of an even one.
TEST(MlaDecodeGpu, SanitizerSizedSplitsOnSeesawKernel) {
  check_sanitizer_sized_128_heads(cuda::mla::AttendKernel::WgmmaSeesaw);
}

TEST(MlaDecodeGpu, EmptySequencesGiveZerosAndMinusInfinity) { run_and_check({{0, 0, 0}, {1, 2, 4}, 8, 64, 0, 15}); }

TEST(MlaDecodeGpu, ScheduleIsReusedAcrossLayersAndRunsAreIdentical) {
  if (!gpu_available()) GTEST_SKIP() << "no usable GPU: " << gpu_info().reason;
  const Case c{{300, 5000, 2, 64}, {2, 1, 3, 1}, 32, 64, 0, 16};
  Inputs in = make_inputs(c);
  DeviceRun run(in, c);
  cuda::mla_decode_schedule(run.p, nullptr);
  std::vector<int> all = {0, 1, 2, 3};
  for (int layer = 0; layer < 2; ++layer) {  // same schedule, new q (another layer)
    cuda::mla::SplitMix rng{uint64_t(100 + layer)};
    for (auto& v : in.q) v = rng.bf16();
    copy_bytes(run.q.raw(), Device::CUDA, in.q.data(), Device::CPU, in.q.size() * 2);
    run.poison();
    cuda::mla_decode_attend(run.p, nullptr);
    cuda::mla_decode_combine(run.p, nullptr);
    ASSERT_TRUE(cuda::mla_decode_status(run.p, nullptr).ok());
    SCOPED_TRACE("layer " + std::to_string(layer));
    expect_matches_reference(in, c, run, all);
  }
  // A second full call on the same inputs must give the same bits (a moving result is a race).
  const std::vector<float> once = DeviceRun::flat(run.out);
  cuda::mla_decode(run.p, nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<float> twice = DeviceRun::flat(run.out);
  EXPECT_EQ(std::memcmp(once.data(), twice.data(), once.size() * 4), 0);
}

// On the default kernel and on the wgmma ones (whose loaders fill a bad block's rows with NaN in shared memory:
// in the warp-specialized kernel, the loading warpgroup with plain stores behind its mbarrier).
void expect_bad_metadata_reported(cuda::mla::AttendKernel attend) {
  SCOPED_TRACE("attend " + std::to_string(int(attend)));
  Case c{{200, 100, 50}, {1, 2, 1}, 16, 16, 0, 17};
  c.attend = attend;
  Inputs in = make_inputs(c);
  in.tables[size_t(1) * in.max_blocks + 2] = in.num_blocks + 5;  // sequence 1 needs its third block
  DeviceRun run(in, c);
  MlaDecodeStatus s = run.run_whole_call();
  EXPECT_EQ(s.code, MlaDecodeStatus::kBadBlockId) << s.message();
  EXPECT_EQ(s.sequence, 1);
  EXPECT_EQ(s.value, in.num_blocks + 5);
  expect_matches_reference(in, c, run, {0, 2});
  const std::vector<float> lse1 = DeviceRun::flat(run.lse);
  for (int r = 0; r < 2 * c.heads; ++r) EXPECT_TRUE(std::isnan(lse1[size_t(in.cu_q[1]) * c.heads + r]));

  in.tables[size_t(1) * in.max_blocks + 2] = 0;  // back in range (what it holds does not matter below)

  in.seq_lens[2] = in.max_blocks * c.block_size + 1;  // longer than its block table
  DeviceRun run2(in, c);
  s = run2.run_whole_call();
  EXPECT_EQ(s.code, MlaDecodeStatus::kBadSeqLen) << s.message();
  EXPECT_EQ(s.sequence, 2);
  EXPECT_NE(s.message().find("seq_len"), std::string::npos);
  const std::vector<float> lse = DeviceRun::flat(run2.lse);
  for (int h = 0; h < c.heads; ++h) EXPECT_TRUE(std::isnan(lse[size_t(in.cu_q[2]) * c.heads + h]));
}

TEST(MlaDecodeGpu, BadDeviceMetadataIsReportedAndPoisonsOnlyThatSequence) {
  if (!gpu_available()) GTEST_SKIP() << "no usable GPU: " << gpu_info().reason;
  using cuda::mla::AttendKernel;
  for (AttendKernel attend : {AttendKernel::Auto, AttendKernel::Wgmma, AttendKernel::WgmmaSplit})
    if (attend == AttendKernel::Auto || cuda::device_runs_wgmma()) expect_bad_metadata_reported(attend);
}
TEST(MlaDecodeGpu, WarpSpecializedKernelReportsBadMetadataAndPoisonsOnlyThatSequence) {
  if (!gpu_available()) GTEST_SKIP() << "no usable GPU: " << gpu_info().reason;
  if (!cuda::device_runs_wgmma()) GTEST_SKIP() << "this device or build runs no wgmma";
  expect_bad_metadata_reported(cuda::mla::AttendKernel::WgmmaWarpSpecialized);
}
TEST(MlaDecodeGpu, SeesawKernelReportsBadMetadataAndPoisonsOnlyThatSequence) {
  if (!gpu_available()) GTEST_SKIP() << "no usable GPU: " << gpu_info().reason;
  if (!cuda::device_runs_wgmma()) GTEST_SKIP() << "this device or build runs no wgmma";
  expect_bad_metadata_reported(cuda::mla::AttendKernel::WgmmaSeesaw);
}

// Every out/lse element of query tokens [t0, t1) is NaN. Outputs are zeroed before the run (not NaN-poisoned),
// so a row the combine skipped shows up as stale zeros.
void expect_nan_rows(const DeviceRun& run, int heads, int t0, int t1) {
  const std::vector<float> out = DeviceRun::flat(run.out), lse = DeviceRun::flat(run.lse);
  int64_t not_nan = 0;
  for (size_t i = size_t(t0) * heads * cuda::mla::kHeadDimV; i < size_t(t1) * heads * cuda::mla::kHeadDimV; ++i)
    not_nan += !std::isnan(out[i]);
  for (size_t i = size_t(t0) * heads; i < size_t(t1) * heads; ++i) not_nan += !std::isnan(lse[i]);
  EXPECT_EQ(not_nan, 0) << "elements of query tokens " << t0 << ".." << t1 - 1 << " that are not NaN";
}

MlaDecodeStatus run_over_zeros(DeviceRun& run) {
  EXPECT_EQ(cudaMemset(run.out.raw(), 0, run.out.nbytes()), cudaSuccess);
  EXPECT_EQ(cudaMemset(run.lse.raw(), 0, run.lse.nbytes()), cudaSuccess);
  cuda::mla_decode(run.p, nullptr);
  return cuda::mla_decode_status(run.p, nullptr);
}

TEST(MlaDecodeGpu, InvalidSequencesGetNanInEveryRowNotStaleData) {
  if (!gpu_available()) GTEST_SKIP() << "no usable GPU: " << gpu_info().reason;
  const Case c{{200, 100, 50}, {1, 3, 1}, 16, 16, 0, 18};
  Inputs in = make_inputs(c);  // query tokens: seq 0 [0, 1), seq 1 [1, 4), seq 2 [4, 5)
  {
    // Sequence 1 has 3 query tokens where max_q_per_seq says 2: all 3 x 16 rows are NaN, also the 16 past
    // max_q * H that the combine's grid does not reach in one pass; the others still match the reference.
    DeviceRun run(in, c);
    // Fewer query rows per sequence can mean more splits (and a larger workspace) on a GPU of many SMs: size it
    // for the claimed 2 as a caller would.
    run.p.max_q_per_seq = 2;
    run.p.workspace_bytes = std::max(run.p.workspace_bytes, cuda::mla_decode_workspace_bytes(
                                                                run.p.batch, run.p.num_heads, 2, run.p.num_sms));
    run.workspace = Tensor::empty({int64_t(run.p.workspace_bytes / 4 + 1)}, DType::F32, Device::CUDA);
    run.p.workspace = run.workspace.raw();
    const MlaDecodeStatus s = run_over_zeros(run);
    EXPECT_EQ(s.code, MlaDecodeStatus::kBadQueryCount) << s.message();
    EXPECT_EQ(s.sequence, 1);
    EXPECT_EQ(s.value, 3);
    expect_nan_rows(run, c.heads, 1, 4);
    expect_matches_reference(in, c, run, {0, 2});
  }
  // Offsets that cannot place the rows (going down, not starting at 0, not ending at num_tokens): no row can
  // be trusted, every one is NaN (tokens no sequence claims included).
  const std::vector<std::vector<int32_t>> broken = {{0, 3, 2, 5}, {1, 2, 4, 5}, {0, 1, 4, 4}};
  const MlaDecodeStatus::Code codes[] = {MlaDecodeStatus::kBadQueryCount, MlaDecodeStatus::kBadCuSeqlensQ,
                                         MlaDecodeStatus::kBadCuSeqlensQ};
  for (size_t i = 0; i < broken.size(); ++i) {
    SCOPED_TRACE("cu_seqlens_q case " + std::to_string(i));
    Inputs bad = in;
    bad.cu_q = broken[i];
    DeviceRun run(bad, c);
    const MlaDecodeStatus s = run_over_zeros(run);
    EXPECT_EQ(s.code, codes[i]) << s.message();
    expect_nan_rows(run, c.heads, 0, in.num_tokens);
  }
}

}  // namespace
