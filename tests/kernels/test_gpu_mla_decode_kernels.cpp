// The MLA decode attend kernels written after the first GPU run (kernels/cuda/mla_decode/NOTES.md): the fitted
// tensor-core kernel (attend_mma_fitted.cu, every cache format) and the wgmma ones (attend_wgmma.cu, _ws.cu), each
// against the CPU reference with tests/kernels/mla_decode_gpu_checks.h; their geometry and workspace at the API
// boundary, and the model's choice of kernel (kernels/cuda/cuda_ops.h). The cases common to every kernel
// (splits, invalid metadata, sanitizer-sized runs) are in test_gpu_mla_decode.cpp. GPU cases skip without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/mla_decode/cases.h"
#include "kernels/cuda/mla_decode/mla_decode.h"
#include "kernels/cuda/wgmma_device.h"
#include "runtime/device.h"
#include "runtime/error.h"
#include "tests/kernels/mla_decode_gpu_checks.h"

using namespace mlarun;
namespace cuda = mlarun::ops::cuda;
using cuda::MlaDecodeParams;

namespace {

using cuda::mla::Case;
using cuda::mla_test::fake_params;
using cuda::mla_test::kLens;
using cuda::mla_test::kQLens;
using cuda::mla_test::run_and_check;

// Query tokens for kLens's seven sequences: 1 + (i + 1) % max_q for sequence i, so every count 1..max_q occurs.
std::vector<int> q_lens_up_to(int max_q) {
  std::vector<int> q_lens(kLens.size());
  for (size_t i = 0; i < q_lens.size(); ++i) q_lens[i] = 1 + int(i + 1) % max_q;
  return q_lens;
}

}  // namespace

// The model's choice of kernels by environment variable (kernels/cuda/cuda_ops.h): names, defaults, bad values.
TEST(MlaDecodeApi, KernelChoicesByEnvironmentParseAndNameBadValues) {
  using cuda::mla::AttendKernel;
  EXPECT_EQ(cuda::parse_mla_decode_kernel(nullptr), int32_t(cuda::mla::kDefaultAttend));
  EXPECT_EQ(cuda::parse_mla_decode_kernel(""), int32_t(cuda::mla::kDefaultAttend));
  EXPECT_EQ(cuda::parse_mla_decode_kernel("simt"), int32_t(AttendKernel::Simt));
  EXPECT_EQ(cuda::parse_mla_decode_kernel("mma"), int32_t(AttendKernel::TensorCores));
  EXPECT_EQ(cuda::parse_mla_decode_kernel("fitted"), int32_t(AttendKernel::TensorCoresFitted));
  EXPECT_EQ(cuda::parse_mla_decode_kernel("wgmma"), int32_t(AttendKernel::Wgmma));
  EXPECT_EQ(cuda::parse_mla_decode_kernel("wgmma-split"), int32_t(AttendKernel::WgmmaSplit));
  EXPECT_EQ(cuda::parse_mla_decode_kernel("wgmma-ws"), int32_t(AttendKernel::WgmmaWarpSpecialized));
  EXPECT_EQ(cuda::parse_mla_decode_kernel("wgmma-seesaw"), int32_t(AttendKernel::WgmmaSeesaw));
  EXPECT_EQ(cuda::parse_mla_decode_kernel("auto"), int32_t(AttendKernel::Auto));
  EXPECT_EQ(cuda::mla::kDefaultAttend, AttendKernel::Auto);
  try {
    cuda::parse_mla_decode_kernel("WGMMA");
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("MLARUN_MLA_DECODE_KERNEL = 'WGMMA' is not one of simt, mma, fitted, "
                                         "wgmma, wgmma-split, wgmma-ws, wgmma-seesaw, auto"),
              std::string::npos)
        << e.what();
  }
  // What a test or benchmark sets wins over the environment until it gives the choice back (-1).
  cuda::set_mla_decode_kernel(int32_t(AttendKernel::Wgmma));
  EXPECT_EQ(cuda::mla_decode_kernel(), int32_t(AttendKernel::Wgmma));
  cuda::set_mla_decode_kernel(-1);
  if (std::getenv("MLARUN_MLA_DECODE_KERNEL") == nullptr) {
    EXPECT_EQ(cuda::mla_decode_kernel(), int32_t(cuda::mla::kDefaultAttend));
  }
  cuda::set_mla_decode_kernel(int32_t(AttendKernel::WgmmaWarpSpecialized));
  EXPECT_EQ(cuda::mla_decode_kernel(), int32_t(AttendKernel::WgmmaWarpSpecialized));
  cuda::set_mla_decode_kernel(-1);
  cuda::set_mla_decode_kernel(int32_t(AttendKernel::WgmmaSeesaw));
  EXPECT_EQ(cuda::mla_decode_kernel(), int32_t(AttendKernel::WgmmaSeesaw));
  cuda::set_mla_decode_kernel(-1);
  EXPECT_THROW(cuda::set_mla_decode_kernel(8), Error);
  EXPECT_THROW(cuda::set_mla_decode_kernel(-2), Error);
  EXPECT_THROW(cuda::set_flash_prefill_kernel(8), Error);
  EXPECT_THROW(cuda::set_flash_prefill_kernel(-2), Error);
  cuda::set_flash_prefill_kernel(6);
  EXPECT_EQ(cuda::flash_prefill_kernel(), 6);
  cuda::set_flash_prefill_kernel(-1);
  EXPECT_EQ(cuda::parse_flash_prefill_kernel(nullptr), cuda::kFlashPrefillAuto);
  EXPECT_EQ(cuda::parse_flash_prefill_kernel(""), cuda::kFlashPrefillAuto);
  EXPECT_EQ(cuda::parse_flash_prefill_kernel("auto"), 7);
  // auto: the pipelined kernel with turns for MLA's 192/128 (and any q/k dim above 128 with d_v up to 128), the
  // wgmma kernel for the pairs where it measured faster; a named kernel stays itself whatever the dims.
  EXPECT_EQ(cuda::resolve_flash_prefill_kernel(7, 192, 128), 4);
  EXPECT_EQ(cuda::resolve_flash_prefill_kernel(7, 128, 128), 1);
  EXPECT_EQ(cuda::resolve_flash_prefill_kernel(7, 64, 64), 1);
  EXPECT_EQ(cuda::resolve_flash_prefill_kernel(7, 256, 256), 1);
  for (int32_t k = 0; k < 7; ++k) EXPECT_EQ(cuda::resolve_flash_prefill_kernel(k, 192, 128), k);
  cuda::set_flash_prefill_kernel(7);
  EXPECT_EQ(cuda::flash_prefill_kernel(), 7);
  cuda::set_flash_prefill_kernel(-1);
  EXPECT_EQ(cuda::parse_flash_prefill_kernel("mma"), 0);
  EXPECT_EQ(cuda::parse_flash_prefill_kernel("wgmma"), 1);
  EXPECT_EQ(cuda::parse_flash_prefill_kernel("wgmma-ws"), 2);
  EXPECT_EQ(cuda::parse_flash_prefill_kernel("wgmma-pipelined"), 3);
  EXPECT_EQ(cuda::parse_flash_prefill_kernel("wgmma-pingpong"), 4);
  EXPECT_EQ(cuda::parse_flash_prefill_kernel("wgmma-persistent"), 5);
  EXPECT_EQ(cuda::parse_flash_prefill_kernel("wgmma-persistent-pingpong"), 6);
  try {
    cuda::parse_flash_prefill_kernel("fa3");
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(
                  "MLARUN_FLASH_PREFILL_KERNEL = 'fa3' is not one of mma, wgmma, wgmma-ws, wgmma-pipelined, "
                  "wgmma-pingpong, wgmma-persistent, wgmma-persistent-pingpong, auto"),
              std::string::npos)
        << e.what();
  }
}

TEST(MlaDecodeApi, FittedKernelFitsItsTileToTheRowsAndTheWorkspaceFitsEveryKernel) {
  using cuda::mla::AttendKernel;
  constexpr AttendKernel kFit = AttendKernel::TensorCoresFitted;
  EXPECT_EQ(cuda::mla_decode_num_parts(16, 1, 132, kFit), 264);  // 16 rows: one 16-row tile, two CTAs per SM
  EXPECT_EQ(cuda::mla_decode_num_parts(1, 4, 132, kFit), 264);   // 4 rows: still one 16-row tile
  EXPECT_EQ(cuda::mla_decode_num_parts(16, 2, 132, kFit), 132);  // 32 rows: one 32-row tile
  EXPECT_EQ(cuda::mla_decode_num_parts(128, 1, 132, kFit), 66);  // 128 rows: two 64-row tiles
  EXPECT_EQ(cuda::mla_decode_num_parts(128, 4, 132, kFit), 16);  // 512 rows: eight
  EXPECT_EQ(cuda::mla_decode_num_parts(24, 3, 132, kFit), 66);   // 72 rows: two, the second mostly empty
  EXPECT_EQ(cuda::mla_decode_num_parts(16, 1, 132, AttendKernel::Simt), 132);
  EXPECT_EQ(cuda::mla_decode_num_parts(16, 1, 132, AttendKernel::Wgmma), 132);   // one 64-row tile
  EXPECT_EQ(cuda::mla_decode_num_parts(128, 1, 132, AttendKernel::Wgmma), 66);   // two
  EXPECT_EQ(cuda::mla_decode_num_parts(128, 2, 132, AttendKernel::Wgmma), 33);   // four
  EXPECT_EQ(cuda::mla_decode_num_parts(128, 2, 132, AttendKernel::WgmmaSplit), 33);
  EXPECT_EQ(cuda::mla_decode_num_parts(128, 2, 132, AttendKernel::WgmmaWarpSpecialized), 33);
  EXPECT_EQ(cuda::mla_decode_num_parts(16, 1, 132, AttendKernel::WgmmaWarpSpecialized), 132);
  EXPECT_EQ(cuda::mla_decode_num_parts(128, 1, 132, AttendKernel::WgmmaSeesaw), 66);
  // Every kernel's layout fits mla_decode_workspace_bytes, so the checks pass whichever one a call picks.
  for (AttendKernel k : {AttendKernel::Simt, AttendKernel::TensorCores, kFit, AttendKernel::Wgmma,
                         AttendKernel::WgmmaSplit, AttendKernel::WgmmaWarpSpecialized, AttendKernel::WgmmaSeesaw})
    for (cuda::MlaKvFormat f : {cuda::MlaKvFormat::Bf16, cuda::MlaKvFormat::Fp8})
      for (int heads : {1, 16, 128}) {
        MlaDecodeParams p = fake_params();
        p.attend = k, p.kv_format = f, p.num_heads = heads;
        p.workspace_bytes = cuda::mla_decode_workspace_bytes(p.batch, p.num_heads, p.max_q_per_seq, p.num_sms);
        EXPECT_NO_THROW(cuda::check_mla_decode(p)) << int(k) << " " << int(f) << " " << heads;
      }
  // The 16-row tile takes the most parts, so the most partials: the shared size is the fitted one there.
  EXPECT_EQ(cuda::mla_decode_workspace_bytes(8, 16, 1, 132),
            cuda::mla::workspace_layout(8, 16, 1, 132, cuda::mla::attend_geometry(kFit, false, 16, 1)).total);
}

// AttendKernel::Auto: the fitted kernel up to 63 rows and over quantized rows, the split wgmma kernel from 64 bf16
// rows up on a device that runs it, the fitted one on any other; explicit kernels are kept as asked.
TEST(MlaDecodeApi, AutoTakesTheKernelMeasuredFastestForTheRows) {
  using cuda::mla::AttendKernel;
  using cuda::mla::auto_attend;
  constexpr AttendKernel kFit = AttendKernel::TensorCoresFitted, kWgs = AttendKernel::WgmmaSplit;
  EXPECT_EQ(auto_attend(false, 16, 1, true), kFit);    // TP 8: 16 rows
  EXPECT_EQ(auto_attend(false, 16, 3, true), kFit);    // 48 rows
  EXPECT_EQ(auto_attend(false, 16, 4, true), kWgs);    // 64 rows
  EXPECT_EQ(auto_attend(false, 128, 1, true), kWgs);   // no TP: 128 rows
  EXPECT_EQ(auto_attend(false, 128, 2, true), kWgs);   // MTP
  EXPECT_EQ(auto_attend(true, 128, 2, true), kFit);    // fp8/int8 rows: the fitted kernel reads them
  EXPECT_EQ(auto_attend(false, 128, 1, false), kFit);  // no wgmma on this device or in this build
  for (AttendKernel k : {AttendKernel::Simt, AttendKernel::TensorCores, kFit, AttendKernel::Wgmma, kWgs,
                         AttendKernel::WgmmaWarpSpecialized, AttendKernel::WgmmaSeesaw})
    EXPECT_EQ(cuda::resolve_attend(k, false, 128, 1), k);
  // Auto resolves once per call shape, so the schedule and the attend kernel agree: its parts are its kernel's.
  const AttendKernel r = cuda::resolve_attend(AttendKernel::Auto, false, 128, 1);
  EXPECT_TRUE(r == kFit || r == kWgs) << int(r);
  EXPECT_EQ(cuda::mla_decode_num_parts(128, 1, 132, AttendKernel::Auto), cuda::mla_decode_num_parts(128, 1, 132, r));
  EXPECT_EQ(cuda::resolve_attend(AttendKernel::Auto, false, 16, 1), kFit);
  EXPECT_EQ(cuda::resolve_attend(AttendKernel::Auto, true, 128, 1), kFit);
}

// The fitted tensor-core kernel (attend_mma_fitted.cu) at each of its M tiles, chosen by heads x query tokens:
// 16 rows (two warps share each score tile's 576 values; 4, 8 or 16 heads), 32, and 64 (one or more tiles, the
// last one partly empty at 72 rows); block sizes 1, 64 and 256; the device's SMs or a 5-part split schedule.
// Rows that see nothing: sequence 0 holds no cached token, sequence 1 one token under 3 queries where max_q > 2.
class MlaDecodeFitted : public ::testing::TestWithParam<std::tuple<std::pair<int, int>, int, int>> {};
TEST_P(MlaDecodeFitted, MatchesReference) {
  const auto [heads_q, block_size, num_sms] = GetParam();
  const auto [heads, max_q] = heads_q;
  const std::vector<int> q_lens = q_lens_up_to(max_q);
  Case c{kLens, q_lens, heads, block_size, num_sms, 37};
  c.attend = cuda::mla::AttendKernel::TensorCoresFitted;
  run_and_check(c);
}
INSTANTIATE_TEST_SUITE_P(Gpu, MlaDecodeFitted,
                         ::testing::Combine(::testing::Values(std::pair{16, 1}, std::pair{4, 4}, std::pair{8, 2},
                                                              std::pair{16, 2}, std::pair{32, 1}, std::pair{16, 4},
                                                              std::pair{128, 1}, std::pair{24, 3},
                                                              std::pair{128, 4}),
                                            ::testing::Values(1, 64, 256), ::testing::Values(0, 5)));

// The geometry's CTAs per SM (which sizes the schedule) must be what the device can hold at once.
TEST(MlaDecodeGpu, FittedKernelHoldsItsCtasPerSm) {
  if (!gpu_available()) GTEST_SKIP() << "no usable GPU: " << gpu_info().reason;
  for (int m : cuda::mla::kFitRows)
    for (bool quantized : {false, true})
      for (bool in_registers : {false, true})
        EXPECT_GE(cuda::mla::fitted_attend_resident_ctas(m, quantized, in_registers), cuda::mla::fit_ctas_per_sm(m))
            << m << " rows per CTA" << (quantized ? ", quantized rows" : "")
            << (in_registers ? ", codes in registers" : "");
}

// The fitted kernel over fp8 and int8 rows at each of its M tiles (16 rows: the 576 values split between two
// warps cross a scale tile), block sizes 1 and 64, the device's SMs or a 5-part split; the codes widened in shared
// memory or read into registers (MlaDecodeParams::codes_in_registers).
class MlaDecodeFittedQuantized
    : public ::testing::TestWithParam<std::tuple<cuda::MlaKvFormat, std::pair<int, int>, int, int, bool>> {};
TEST_P(MlaDecodeFittedQuantized, MatchesReference) {
  const auto [format, heads_q, block_size, num_sms, in_registers] = GetParam();
  const auto [heads, max_q] = heads_q;
  const std::vector<int> q_lens = q_lens_up_to(max_q);
  Case c{kLens, q_lens, heads, block_size, num_sms, 47};
  c.format = format;
  c.attend = cuda::mla::AttendKernel::TensorCoresFitted;
  c.codes_in_registers = in_registers;
  run_and_check(c);
}
INSTANTIATE_TEST_SUITE_P(Gpu, MlaDecodeFittedQuantized,
                         ::testing::Combine(::testing::Values(cuda::MlaKvFormat::Fp8, cuda::MlaKvFormat::Int8),
                                            ::testing::Values(std::pair{16, 1}, std::pair{8, 2}, std::pair{16, 2},
                                                              std::pair{16, 4}, std::pair{128, 1}),
                                            ::testing::Values(1, 64), ::testing::Values(0, 5),
                                            ::testing::Bool()));

// Quantized rows far from 1 (Case::magnitude_exp: sequences' values times 2^-30, 1 or 2^30, tiles of one sequence
// 16x apart, q the inverse): the fitted kernel with the codes in registers keeps its f16 operands in range with its
// power-of-two units (q per row, P per tile, the accumulators carried across tiles), as the widening one does in
// bf16. 16, 32 and 64-row tiles (16 heads x 1 and 2 queries, 128 heads), a 5-part split.
TEST(MlaDecodeGpu, FittedKernelKeepsQuantizedRowsFarFromOneInRange) {
  const std::vector<int> lens = {300, 97, 1000, 64, 33, 530};
  for (cuda::MlaKvFormat format : {cuda::MlaKvFormat::Fp8, cuda::MlaKvFormat::Int8})
    for (auto [heads, max_q] : {std::pair{16, 1}, std::pair{16, 2}, std::pair{128, 1}})
      for (bool in_registers : {false, true}) {
        SCOPED_TRACE(std::string(cuda::mla_kv_format_name(format)) + ", " + std::to_string(heads) + " heads, " +
                     std::to_string(max_q) + " queries" + (in_registers ? ", codes in registers" : ""));
        Case c{lens, std::vector<int>(lens.size(), max_q), heads, 64, 5, 61};
        c.format = format, c.attend = cuda::mla::AttendKernel::TensorCoresFitted;
        c.codes_in_registers = in_registers, c.magnitude_exp = 30;
        run_and_check(c);
      }
}

// Quantized rows: the fitted kernel reads them itself, the wgmma kernels hand them to the 32-row kernel with its
// geometry.
TEST(MlaDecodeGpu, FittedAndWgmmaKernelsOverQuantizedRowsMatchReference) {
  for (auto attend : {cuda::mla::AttendKernel::TensorCoresFitted, cuda::mla::AttendKernel::Wgmma,
                      cuda::mla::AttendKernel::WgmmaSplit, cuda::mla::AttendKernel::WgmmaWarpSpecialized,
                      cuda::mla::AttendKernel::WgmmaSeesaw})
    for (cuda::MlaKvFormat format : {cuda::MlaKvFormat::Fp8, cuda::MlaKvFormat::Int8}) {
      SCOPED_TRACE(std::string(cuda::mla_kv_format_name(format)) + ", attend " + std::to_string(int(attend)));
      Case c{kLens, kQLens, 16, 64, 0, 39};
      c.format = format;
      c.attend = attend;
      run_and_check(c);
    }
}

// The default (AttendKernel::Auto) on this GPU, on both sides of its switch (16 and 128 heads, 1 and 2 query
// tokens), over bf16 and fp8 rows, with the device's SMs: the kernel it resolves to matches the reference.
TEST(MlaDecodeGpu, AutoKernelMatchesReferenceOnBothSidesOfItsSwitch) {
  for (int heads : {16, 128})
    for (int max_q : {1, 2})
      for (cuda::MlaKvFormat format : {cuda::MlaKvFormat::Bf16, cuda::MlaKvFormat::Fp8}) {
        const auto k = cuda::resolve_attend(cuda::mla::AttendKernel::Auto, format != cuda::MlaKvFormat::Bf16,
                                            heads, max_q);
        SCOPED_TRACE(std::to_string(heads) + " heads, " + std::to_string(max_q) + " queries, " +
                     cuda::mla_kv_format_name(format) + ": auto resolves to " + std::to_string(int(k)));
        Case c{kLens, q_lens_up_to(max_q), heads, 64, 0, 47};
        c.format = format;
        c.attend = cuda::mla::AttendKernel::Auto;
        run_and_check(c);
      }
}

// L2 prefetch (MlaDecodeParams::l2_prefetch_tiles) is a hint: the kernels that take it give the same bits with
// it as without, at 1, 3 and 8 tiles ahead, with the device's SMs and over a 5-part split schedule, at block
// sizes 1 and 64 (the wgmma kernels on a device that runs them, bf16 rows; the fitted one over fp8 rows too).
TEST(MlaDecodeGpu, EveryKernelGivesTheSameBitsWithL2Prefetch) {
  if (!gpu_available()) GTEST_SKIP() << gpu_info().reason;
  using K = cuda::mla::AttendKernel;
  for (K kernel : {K::TensorCoresFitted, K::Wgmma, K::WgmmaSplit})
    for (cuda::MlaKvFormat format : {cuda::MlaKvFormat::Bf16, cuda::MlaKvFormat::Fp8})
      for (int block_size : {1, 64})
        for (int num_sms : {0, 5}) {
          if (kernel != K::TensorCoresFitted && (format != cuda::MlaKvFormat::Bf16 || !cuda::device_runs_wgmma()))
            continue;
          Case c{kLens, q_lens_up_to(2), 16, block_size, num_sms, 53};
          c.format = format, c.attend = kernel;
          const cuda::mla::Inputs in = cuda::mla::make_inputs(c);
          cuda::mla::DeviceRun plain(in, c);
          ASSERT_TRUE(plain.run_whole_call().ok());
          const std::vector<float> out = cuda::mla::DeviceRun::flat(plain.out);
          const std::vector<float> lse = cuda::mla::DeviceRun::flat(plain.lse);
          for (int ahead : {1, 3, 8}) {
            SCOPED_TRACE("kernel " + std::to_string(int(kernel)) + ", " + cuda::mla_kv_format_name(format) +
                         ", block " + std::to_string(block_size) + ", sms " + std::to_string(num_sms) + ", " +
                         std::to_string(ahead) + " tiles ahead");
            c.l2_prefetch_tiles = ahead;
            cuda::mla::DeviceRun hinted(in, c);
            ASSERT_TRUE(hinted.run_whole_call().ok());
            const std::vector<float> out_h = cuda::mla::DeviceRun::flat(hinted.out);
            const std::vector<float> lse_h = cuda::mla::DeviceRun::flat(hinted.lse);
            ASSERT_EQ(out_h.size(), out.size());
            for (size_t i = 0; i < out.size(); ++i)  // NaN where the reference run has NaN (invalid rows: none here)
              ASSERT_TRUE(out_h[i] == out[i] || (std::isnan(out_h[i]) && std::isnan(out[i]))) << "out " << i;
            for (size_t i = 0; i < lse.size(); ++i)
              ASSERT_TRUE(lse_h[i] == lse[i] || (std::isnan(lse_h[i]) && std::isnan(lse[i]))) << "lse " << i;
          }
        }
}

// The Hopper kernels (attend_wgmma.cu; every warpgroup scoring all tokens, or half of them each): 64-row tiles
// (one mostly empty at 4 or 16 rows, several at 128 heads and 2 or 4 query tokens, the last partly empty at 72
// rows), 64-token steps over the scheduler's 32-token tiles (odd tile counts end in a half-empty step), block sizes
// 1, 64 and 256, the device's SMs or a 5-part split schedule.
class MlaDecodeWgmma
    : public ::testing::TestWithParam<std::tuple<cuda::mla::AttendKernel, std::pair<int, int>, int, int>> {};
TEST_P(MlaDecodeWgmma, MatchesReference) {
  const auto [attend, heads_q, block_size, num_sms] = GetParam();
  const auto [heads, max_q] = heads_q;
  const std::vector<int> q_lens = q_lens_up_to(max_q);
  Case c{kLens, q_lens, heads, block_size, num_sms, 43};
  c.attend = attend;
  run_and_check(c);
}
INSTANTIATE_TEST_SUITE_P(Gpu, MlaDecodeWgmma,
                         ::testing::Combine(::testing::Values(cuda::mla::AttendKernel::Wgmma,
                                                              cuda::mla::AttendKernel::WgmmaSplit),
                                            ::testing::Values(std::pair{16, 1}, std::pair{4, 4}, std::pair{64, 1},
                                                              std::pair{128, 1}, std::pair{24, 3}, std::pair{128, 2}),
                                            ::testing::Values(1, 64, 256), ::testing::Values(0, 5)));
// The warp-specialized kernels (attend_wgmma_ws.cu, attend_wgmma_seesaw.cu) over the same cases, each under a name
// of its own so a run can take it alone or leave it out (test_gpu_mla_decode.cpp has their other tests).
INSTANTIATE_TEST_SUITE_P(WarpSpecialized, MlaDecodeWgmma,
                         ::testing::Combine(::testing::Values(cuda::mla::AttendKernel::WgmmaWarpSpecialized),
                                            ::testing::Values(std::pair{16, 1}, std::pair{4, 4}, std::pair{64, 1},
                                                              std::pair{128, 1}, std::pair{24, 3}, std::pair{128, 2}),
                                            ::testing::Values(1, 64, 256), ::testing::Values(0, 5)));
INSTANTIATE_TEST_SUITE_P(Seesaw, MlaDecodeWgmma,
                         ::testing::Combine(::testing::Values(cuda::mla::AttendKernel::WgmmaSeesaw),
                                            ::testing::Values(std::pair{16, 1}, std::pair{4, 4}, std::pair{64, 1},
                                                              std::pair{128, 1}, std::pair{24, 3}, std::pair{128, 2}),
                                            ::testing::Values(1, 64, 256), ::testing::Values(0, 5)));
