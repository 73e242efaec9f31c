// Workbench for the MLA decode kernel (kernels/cuda/mla_decode/mla_decode.h), in the llm.c way: first prove it
// computes the right function, then time it honestly. Validation: the inputs and the comparison of
// kernels/cuda/mla_decode/cases.h (shared with the GPU test: fresh random q and cache rows, NaN in every unused
// cache slot, shuffled block tables with garbage past each sequence's blocks, mixed lengths including 0 and 1,
// 1..4 query tokens, outputs poisoned before the run, compared per sequence with ops::mla_paged_attention on f32
// copies of the bf16 data). Timing: a fixed list of decode shapes, bench/timing.h (CUDA events around each call
// after warm-up, median of many runs), input sets rotated when they would fit in L2; GB/s and TFLOP/s by
// FlashMLA's formulas (bytes = cache read once + q + out; FLOPs = 2 * H * s_q * (576 + 512) per cached token),
// kernel-only (attend) and whole call (schedule + attend + combine), next to the copy and GEMM ceilings measured
// here at run time, and to PyTorch reference times when --torch-anchors names a file of them (no file, no such
// column). The TP 8 shape also runs over fp8 and int8 caches (656-byte rows dequantized in the kernel; bytes
// count the rows as stored) with their speed-up over bf16 printed; rows named "_pf<N>" ask L2 to prefetch N
// tiles ahead of the ring (MlaDecodeParams::l2_prefetch_tiles) and print their speed-up over the same row
// without; rows named "_reg" read the quantized codes into registers (MlaDecodeParams::codes_in_registers) and print
// their speed-up over the same row with the codes widened in shared memory. Ceilings and contract: docs/kernels.md.
// Exit: 0 ok or no GPU ("no GPU" printed), 1 validation failed, 2 error.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/bench/timing.h"
#include "kernels/cuda/mla_decode/cases.h"
#include "kernels/cuda/mla_decode/mla_decode.h"
#include "runtime/cuda_check.h"
#include "runtime/device.h"
#include "runtime/dtype.h"
#include "runtime/json.h"
#include "runtime/tensor.h"

using namespace mlarun;
namespace cuda = mlarun::ops::cuda;
using cuda::bench::median_ms;
using cuda::bench::median_ms_interleaved;
using cuda::mla::Case;
using cuda::mla::Comparison;
using cuda::mla::DeviceRun;
using cuda::mla::Inputs;

namespace {

constexpr int kD = cuda::mla::kHeadDimQK, kDv = cuda::mla::kHeadDimV;
using AttendKernel = cuda::mla::AttendKernel;
constexpr AttendKernel kMma = AttendKernel::TensorCores, kFit = AttendKernel::TensorCoresFitted;
constexpr AttendKernel kWg = AttendKernel::Wgmma, kWgs = AttendKernel::WgmmaSplit;
constexpr AttendKernel kWgws = AttendKernel::WgmmaWarpSpecialized, kWgss = AttendKernel::WgmmaSeesaw;
constexpr cuda::MlaKvFormat kBf16 = cuda::MlaKvFormat::Bf16, kFp8 = cuda::MlaKvFormat::Fp8;
constexpr cuda::MlaKvFormat kInt8 = cuda::MlaKvFormat::Int8;
// Per AttendKernel: the name in the JSON, the tag in the validation lines, the suffix of its shape names.
// (5 is Auto, which no row asks for: each row names its kernel.)
constexpr const char* kAttendName[8] = {"simt",        "tensor_cores", "tensor_cores_fitted",    "wgmma",
                                        "wgmma_split", "auto",         "wgmma_warp_specialized", "wgmma_seesaw"};
constexpr const char* kAttendTag[8] = {"    ", " mma", " fit", "  wg", " wgs", "auto", "wgws", "wgss"};
constexpr const char* kAttendSuffix[8] = {"", "_mma", "_fit", "_wg", "_wgs", "_auto", "_wgws", "_wgss"};

struct DevBuf {  // one cudaMalloc, freed on scope exit (the ceiling measurements' scratch)
  void* p = nullptr;
  explicit DevBuf(size_t n) { MLARUN_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(n, 256))); }
  ~DevBuf() { cudaFree(p); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
};

// Runs the whole call on poisoned outputs and compares sequences `seqs` with the CPU reference; a device-side
// status other than ok counts as a failed validation.
Comparison validate(const Inputs& in, const Case& c, DeviceRun& d, const std::vector<int>& seqs) {
  const cuda::MlaDecodeStatus status = d.run_whole_call();
  if (!status.ok()) {
    std::printf("device status: %s\n", status.message().c_str());
    Comparison r;
    r.bad = 1, r.rel_l2 = INFINITY;
    return r;
  }
  return cuda::mla::compare_with_reference(in, c, d, seqs);
}

struct Ceilings {
  double copy_gbps = 0, gemm_tflops = 0, datasheet_gbps = 0;
};

Ceilings measure_ceilings(int device) {
  Ceilings c;
  int mem_khz = 0, bus_bits = 0;
  cudaDeviceGetAttribute(&mem_khz, cudaDevAttrMemoryClockRate, device);
  cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device);
  c.datasheet_gbps = 2.0 * mem_khz * 1e3 * (bus_bits / 8) / 1e9;  // double data rate
  const size_t n = size_t(1) << 30;                                // copy 1 GiB: bytes read + bytes written
  DevBuf a(n), b(n);
  MLARUN_CUDA_CHECK(cudaMemset(a.p, 0x5a, n));
  c.copy_gbps =
      2.0 * n / median_ms(3, 20, [&](int) { cudaMemcpyAsync(b.p, a.p, n, cudaMemcpyDeviceToDevice); }) / 1e6;
  const int m = 8192;  // bf16 GEMM m = n = k = 8192 through cuBLAS, random operands
  std::vector<uint16_t> host(size_t(m) * m);
  cuda::mla::SplitMix rng{7};
  for (auto& v : host) v = rng.bf16();
  const Tensor A = cuda::mla::upload(host, DType::BF16), B = cuda::mla::upload(host, DType::BF16);
  DevBuf C(size_t(m) * m * 2);
  cublasHandle_t handle;
  if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) fail("cublasCreate failed");
  const float one = 1.f, zero = 0.f;
  const double ms = median_ms(3, 10, [&](int) {
    cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, m, m, m, &one, A.raw(), CUDA_R_16BF, m, B.raw(), CUDA_R_16BF, m,
                 &zero, C.p, CUDA_R_16BF, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  });
  cublasDestroy(handle);
  MLARUN_CUDA_CHECK(cudaGetLastError());
  c.gemm_tflops = 2.0 * m * m * double(m) / ms / 1e9;
  return c;
}

struct Shape {
  const char* name;
  int batch, seq_len, heads, q_per_seq, block_size;
  bool varlen;         // lengths ~ N(seq_len, seq_len / 2), clipped at q_per_seq (FlashMLA's varlen)
  const char* target;  // the criterion this shape is held to (docs/kernels.md)
  cuda::MlaKvFormat format = cuda::MlaKvFormat::Bf16;
  AttendKernel attend = AttendKernel::Simt;  // MlaDecodeParams::attend
  int l2_prefetch_tiles = 0;                 // MlaDecodeParams::l2_prefetch_tiles (rows named "..._pf<N>")
  bool codes_in_registers = false;           // MlaDecodeParams::codes_in_registers (rows named "..._reg")
};

// PyTorch reference time for this shape from the --torch-anchors file, a JSON array of records {kind
// "mla_decode_torch_ref", B, H, T, ms}; -1 when absent.
double torch_anchor_ms(const json::Value& anchors, const Shape& s) {
  if (!anchors.is_array() || s.q_per_seq != 1 || s.varlen || s.format != cuda::MlaKvFormat::Bf16 ||
      s.attend != AttendKernel::Simt)
    return -1;
  for (const json::Value& r : anchors) {
    const json::Value *kind = json::find(r, "kind"), *B = json::find(r, "B"), *H = json::find(r, "H"),
                      *T = json::find(r, "T"), *ms = json::find(r, "ms");
    if (kind && kind->is_string() && kind->get<std::string>() == "mla_decode_torch_ref" && B && H && T && ms &&
        ms->is_number() && json::to_int64(*B) == s.batch && json::to_int64(*H) == s.heads &&
        json::to_int64(*T) == s.seq_len)
      return ms->get<double>();
  }
  return -1;
}

int run(int argc, char** argv) {
  std::string json_path, anchors_path, only;
  int reps = 50, sample = 2;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) fail("missing value after ", a);
      return argv[++i];
    };
    if (a == "--json") json_path = value();
    else if (a == "--torch-anchors") anchors_path = value();
    else if (a == "--only") only = value();
    else if (a == "--reps") reps = std::max(1, std::stoi(value()));
    else if (a == "--validate-seqs") sample = std::max(1, std::stoi(value()));
    else if (a == "--quick") quick = true;
    else fail("usage: bench_mla_decode [--json FILE] [--reps N] [--only SHAPE[,SHAPE...]] [--validate-seqs K] "
              "[--quick] [--torch-anchors FILE]; unknown argument ", a);
  }
  if (!gpu_available()) {
    std::printf("no GPU (%s): nothing to validate or time\n", gpu_info().reason.c_str());
    return 0;
  }
  int device = 0;
  MLARUN_CUDA_CHECK(cudaGetDevice(&device));
  cudaDeviceProp prop;
  MLARUN_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  const int sms = prop.multiProcessorCount;
  json::Value report = json::Value::object();
  report["device"] = std::string(prop.name);
  report["sms"] = sms;
  json::Value anchors;  // only the file --torch-anchors names; none, no torch column
  if (!anchors_path.empty()) {
    anchors = json::parse_file(anchors_path);
    report["torch_anchors"] = anchors_path;
  }

  // 1. Validation on mixed cases: every sequence checked.
  std::vector<Case> vcases = {{{0, 1, 33, 257, 1000, 64, 5}, {1, 2, 3, 4, 1, 2, 4}, 16, 64, 0, 100},
                                    {{0, 1, 700, 31}, {1, 4, 2, 1}, 128, 1, 0, 101},
                                    {{4000, 10, 1, 0, 2500}, {2, 1, 1, 3, 4}, 1, 16, 5, 102},
                                    {{3000, 2, 90}, {3, 2, 1}, 64, 256, 1024, 103},
                                    {{0, 1, 33, 257, 1000}, {1, 2, 3, 4, 1}, 16, 64, 0, 104, cuda::MlaKvFormat::Fp8},
                                    {{0, 1, 700, 31}, {1, 4, 2, 1}, 128, 16, 0, 105, cuda::MlaKvFormat::Int8}};
  for (Case c : {vcases[0], vcases[1], vcases[3], vcases[4], vcases[5]}) {  // again on tensor cores
    c.attend = AttendKernel::TensorCores;
    vcases.push_back(c);
  }
  // The fitted kernel at each of its M tiles: 16 rows (16 heads, one query), 32 (two), 64 (four; 128 heads), and
  // over fp8 and int8 rows; the wgmma kernels over the same cases (quantized ones run the 32-row kernel there).
  for (Case c : {Case{{0, 1, 33, 257, 1000, 64, 5}, {1, 1, 1, 1, 1, 1, 1}, 16, 64, 0, 106},
                 Case{{0, 1, 33, 257, 1000, 64, 5}, {1, 2, 2, 1, 2, 1, 2}, 16, 16, 0, 107}, vcases[0], vcases[1],
                 vcases[3], vcases[4], vcases[5]}) {
    c.attend = AttendKernel::TensorCoresFitted;
    vcases.push_back(c);
    c.attend = kWg;
    vcases.push_back(c);
    c.attend = kWgs;
    vcases.push_back(c);
    c.attend = kWgws;
    vcases.push_back(c);
    c.attend = kWgss;
    vcases.push_back(c);
  }
  bool all_ok = true;
  json::Value vjson = json::Value::array();
  for (const Case& v : vcases) {
    const Inputs in = cuda::mla::make_inputs(v);
    DeviceRun dc(in, v);
    std::vector<int> all(v.seq_lens.size());
    std::iota(all.begin(), all.end(), 0);
    const Comparison r = validate(in, v, dc, all);
    all_ok &= r.ok();
    std::printf("validate %-4s%s H=%-3d bs=%-3d sms=%-4d  rel_l2 %.2e  max|d out| %.2e  max|d lse| %.2e  %s\n",
                cuda::mla_kv_format_name(v.format), kAttendTag[int(v.attend)], v.heads, v.block_size,
                dc.p.num_sms, r.rel_l2, r.max_abs, r.max_lse, r.ok() ? "ok" : "FAILED");
    json::Value j = json::Value::object();
    j["kv_format"] = cuda::mla_kv_format_name(v.format);
    j["attend"] = kAttendName[int(v.attend)];
    j["heads"] = v.heads, j["block_size"] = v.block_size, j["rel_l2"] = r.rel_l2, j["ok"] = r.ok();
    vjson.push_back(j);
  }
  report["validation"] = vjson;

  // 2. The target shapes (H100, bf16 cache): validate a sample of sequences, then time.
  const Ceilings ceil = measure_ceilings(device);
  std::printf("\n%s, %d SMs: copy %.0f GB/s (datasheet %.0f), bf16 GEMM %.0f TFLOP/s (cuBLAS 8192^3); torch: %s\n",
              prop.name, sms, ceil.copy_gbps, ceil.datasheet_gbps, ceil.gemm_tflops,
              anchors.is_array() ? "anchors loaded" : "no anchors file");
  report["copy_GBps"] = ceil.copy_gbps, report["gemm_TFLOPs"] = ceil.gemm_tflops;
  json::Value resident = json::Value::object();  // the fitted kernel's CTAs per SM: held against its geometry
  std::printf("fitted kernel, CTAs per SM (bf16 rows, quantized rows, their codes in registers / planned):");
  for (int m : cuda::mla::kFitRows) {
    const int held = cuda::mla::fitted_attend_resident_ctas(m);
    const int held_q = cuda::mla::fitted_attend_resident_ctas(m, true);
    const int held_r = cuda::mla::fitted_attend_resident_ctas(m, true, true);
    std::printf("  %d rows %d, %d, %d / %d", m, held, held_q, held_r, cuda::mla::fit_ctas_per_sm(m));
    resident[std::to_string(m)] = held, resident[std::to_string(m) + "_quantized"] = held_q;
    resident[std::to_string(m) + "_codes_in_registers"] = held_r;
  }
  std::printf("\n");
  report["fitted_resident_ctas_per_sm"] = resident;
  const std::vector<Shape> shapes = {
      {"tp8_b128_s8192_h16", 128, 8192, 16, 1, 64, false, ">= 2600 GB/s whole call"},
      {"b64_s4096_h128", 64, 4096, 128, 1, 64, false, "<= 0.15 ms whole call"},
      {"mtp2_b128_s8192_h128", 128, 8192, 128, 2, 64, false, ">= 450 TFLOP/s whole call"},
      {"tp8_b128_s8192_h16_bs16", 128, 8192, 16, 1, 16, false, "within 10% of bs 64"},
      {"tp8_b128_s8192_h16_bs256", 128, 8192, 16, 1, 256, false, "within 10% of bs 64"},
      {"b64_s4096_h128_bs16", 64, 4096, 128, 1, 16, false, "within 10% of bs 64"},
      {"b64_s4096_h128_bs256", 64, 4096, 128, 1, 256, false, "within 10% of bs 64"},
      {"tp8_b128_varlen8192_h16", 128, 8192, 16, 1, 64, true, "(FlashMLA-style varlen, information)"},
      {"tp8_b128_s8192_h16_fp8", 128, 8192, 16, 1, 64, false, ">= 1.7x bf16 tokens/s", cuda::MlaKvFormat::Fp8},
      {"tp8_b128_s8192_h16_int8", 128, 8192, 16, 1, 64, false, "(information)", cuda::MlaKvFormat::Int8},
      // The first three again with the attend kernel on tensor cores (MlaDecodeParams::attend), 32-row tiles...
      {"tp8_b128_s8192_h16_mma", 128, 8192, 16, 1, 64, false, ">= 2600 GB/s whole call", kBf16, kMma},
      {"b64_s4096_h128_mma", 64, 4096, 128, 1, 64, false, "<= 0.15 ms whole call", kBf16, kMma},
      {"mtp2_b128_s8192_h128_mma", 128, 8192, 128, 2, 64, false, ">= 450 TFLOP/s whole call", kBf16, kMma},
      {"tp8_b128_s8192_h16_fp8_mma", 128, 8192, 16, 1, 64, false, ">= 1.7x bf16 tokens/s", kFp8, kMma},
      {"tp8_b128_s8192_h16_bs16_mma", 128, 8192, 16, 1, 16, false, "within 10% of bs 64", kBf16, kMma},
      {"tp8_b128_s8192_h16_bs256_mma", 128, 8192, 16, 1, 256, false, "within 10% of bs 64", kBf16, kMma},
      // ... and with the M tile fitted to the rows (attend_mma_fitted.cu; bf16 rows).
      {"tp8_b128_s8192_h16_fit", 128, 8192, 16, 1, 64, false, ">= 2600 GB/s whole call", kBf16, kFit},
      {"b64_s4096_h128_fit", 64, 4096, 128, 1, 64, false, "<= 0.15 ms whole call", kBf16, kFit},
      {"mtp2_b128_s8192_h128_fit", 128, 8192, 128, 2, 64, false, ">= 450 TFLOP/s whole call", kBf16, kFit},
      {"tp8_b128_s8192_h16_bs16_fit", 128, 8192, 16, 1, 16, false, "within 10% of bs 64", kBf16, kFit},
      {"tp8_b128_s8192_h16_bs256_fit", 128, 8192, 16, 1, 256, false, "within 10% of bs 64", kBf16, kFit},
      {"b64_s4096_h128_bs16_fit", 64, 4096, 128, 1, 16, false, "within 10% of bs 64", kBf16, kFit},
      {"b64_s4096_h128_bs256_fit", 64, 4096, 128, 1, 256, false, "within 10% of bs 64", kBf16, kFit},
      {"tp8_b128_s8192_h16_fp8_fit", 128, 8192, 16, 1, 64, false, ">= 1.7x bf16 tokens/s", kFp8, kFit},
      {"tp8_b128_s8192_h16_int8_fit", 128, 8192, 16, 1, 64, false, "(information)", kInt8, kFit},
      {"b64_s4096_h128_fp8_fit", 64, 4096, 128, 1, 64, false, "(information)", kFp8, kFit},
      // ... the quantized rows again with the codes read into registers, each against its row above.
      {"tp8_b128_s8192_h16_fp8_fit_reg", 128, 8192, 16, 1, 64, false, ">= 1.7x bf16 tokens/s", kFp8, kFit, 0, true},
      {"tp8_b128_s8192_h16_int8_fit_reg", 128, 8192, 16, 1, 64, false, "(information)", kInt8, kFit, 0, true},
      {"b64_s4096_h128_fp8_fit_reg", 64, 4096, 128, 1, 64, false, "(information)", kFp8, kFit, 0, true},
      // ... and on Hopper's wgmma with 64-row tiles (attend_wgmma.cu; bf16 rows).
      {"tp8_b128_s8192_h16_wg", 128, 8192, 16, 1, 64, false, ">= 2600 GB/s whole call", kBf16, kWg},
      {"b64_s4096_h128_wg", 64, 4096, 128, 1, 64, false, "<= 0.15 ms whole call", kBf16, kWg},
      {"mtp2_b128_s8192_h128_wg", 128, 8192, 128, 2, 64, false, ">= 450 TFLOP/s whole call", kBf16, kWg},
      {"b64_s4096_h128_bs16_wg", 64, 4096, 128, 1, 16, false, "within 10% of bs 64", kBf16, kWg},
      {"b64_s4096_h128_bs256_wg", 64, 4096, 128, 1, 256, false, "within 10% of bs 64", kBf16, kWg},
      {"b64_s4096_h128_wgs", 64, 4096, 128, 1, 64, false, "<= 0.15 ms whole call", kBf16, kWgs},
      {"mtp2_b128_s8192_h128_wgs", 128, 8192, 128, 2, 64, false, ">= 450 TFLOP/s whole call", kBf16, kWgs},
      {"tp8_b128_s8192_h16_wgs", 128, 8192, 16, 1, 64, false, ">= 2600 GB/s whole call", kBf16, kWgs},
      // ... with a loading warpgroup and an mbarrier ring (attend_wgmma_ws.cu), each against the split row above.
      {"b64_s4096_h128_wgws", 64, 4096, 128, 1, 64, false, "<= 0.15 ms whole call", kBf16, kWgws},
      {"mtp2_b128_s8192_h128_wgws", 128, 8192, 128, 2, 64, false, ">= 450 TFLOP/s whole call", kBf16, kWgws},
      {"tp8_b128_s8192_h16_wgws", 128, 8192, 16, 1, 64, false, ">= 2600 GB/s whole call", kBf16, kWgws},
      {"b64_s4096_h128_bs16_wgws", 64, 4096, 128, 1, 16, false, "within 10% of bs 64", kBf16, kWgws},
      // ... and with the steps split between the computing warpgroups (attend_wgmma_seesaw.cu), likewise.
      {"b64_s4096_h128_wgss", 64, 4096, 128, 1, 64, false, "<= 0.15 ms whole call", kBf16, kWgss},
      {"mtp2_b128_s8192_h128_wgss", 128, 8192, 128, 2, 64, false, ">= 450 TFLOP/s whole call", kBf16, kWgss},
      {"tp8_b128_s8192_h16_wgss", 128, 8192, 16, 1, 64, false, ">= 2600 GB/s whole call", kBf16, kWgss},
      {"b64_s4096_h128_bs16_wgss", 64, 4096, 128, 1, 16, false, "within 10% of bs 64", kBf16, kWgss},
      {"b64_s4096_h128_bs256_wgss", 64, 4096, 128, 1, 256, false, "within 10% of bs 64", kBf16, kWgss},
      // Where AttendKernel::Auto switches from the fitted kernel to the split wgmma one (config.h auto_attend: 64
      // rows): 32 rows (TP 8 with two query tokens), 48 (three) and 64 (TP 2: 64 heads), each kernel side by side.
      {"tp8_mtp2_b128_s8192_h16_mma", 128, 8192, 16, 2, 64, false, "(Auto's switch)", kBf16, kMma},
      {"tp8_mtp2_b128_s8192_h16_fit", 128, 8192, 16, 2, 64, false, "(Auto's switch)", kBf16, kFit},
      {"tp8_mtp2_b128_s8192_h16_wgs", 128, 8192, 16, 2, 64, false, "(Auto's switch)", kBf16, kWgs},
      {"tp8_mtp3_b128_s8192_h16_fit", 128, 8192, 16, 3, 64, false, "(Auto's switch)", kBf16, kFit},
      {"tp8_mtp3_b128_s8192_h16_wgs", 128, 8192, 16, 3, 64, false, "(Auto's switch)", kBf16, kWgs},
      {"tp2_b128_s8192_h64_mma", 128, 8192, 64, 1, 64, false, "(Auto's switch)", kBf16, kMma},
      {"tp2_b128_s8192_h64_fit", 128, 8192, 64, 1, 64, false, "(Auto's switch)", kBf16, kFit},
      {"tp2_b128_s8192_h64_wgs", 128, 8192, 64, 1, 64, false, "(Auto's switch)", kBf16, kWgs},
      // At 64 heads one CTA reads each cache tile (at 128 two do, through L2): the ring kernels' time per tile
      // there, against the split kernel's row above.
      {"tp2_b128_s8192_h64_wgws", 128, 8192, 64, 1, 64, false, "(one CTA per tile)", kBf16, kWgws},
      {"tp2_b128_s8192_h64_wgss", 128, 8192, 64, 1, 64, false, "(one CTA per tile)", kBf16, kWgss},
      // L2 prefetch ahead of the ring (MlaDecodeParams::l2_prefetch_tiles), each against its row without it.
      {"tp8_b128_s8192_h16_fit_pf2", 128, 8192, 16, 1, 64, false, ">= 2600 GB/s whole call", kBf16, kFit, 2},
      {"tp8_b128_s8192_h16_fit_pf4", 128, 8192, 16, 1, 64, false, ">= 2600 GB/s whole call", kBf16, kFit, 4},
      {"tp8_b128_s8192_h16_fp8_fit_pf2", 128, 8192, 16, 1, 64, false, ">= 1.7x bf16 tokens/s", kFp8, kFit, 2},
      {"b64_s4096_h128_wgs_pf2", 64, 4096, 128, 1, 64, false, "<= 0.15 ms whole call", kBf16, kWgs, 2},
      {"mtp2_b128_s8192_h128_wgs_pf2", 128, 8192, 128, 2, 64, false, ">= 450 TFLOP/s whole call", kBf16, kWgs, 2}};
  std::map<std::string, double> call_ms;  // each shape's whole call so far: the baselines of later rows
  const auto fixed2 = [](double v) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.2f", v);
    return std::string(buf);
  };
  std::printf("%-30s %9s %9s %9s %9s %9s %8s %8s %9s %9s  %s\n", "shape", "call ms", "kern ms", "sched ms",
              "call GB/s", "kern GB/s", "call TF", "kern TF", "floor ms", "torch ms", "target");
  json::Value sjson = json::Value::array();
  for (const Shape& s : shapes) {
    // --quick: the TP 8 shape, and the same over fp8 rows (the quantized cache's speed-up over bf16).
    const std::string shape_name = s.name;
    const bool quick_shape = &s == &shapes[0] || shape_name == "tp8_b128_s8192_h16_fp8" ||
                             shape_name == "tp8_b128_s8192_h16_mma" || shape_name == "tp8_b128_s8192_h16_fp8_mma" ||
                             shape_name == "tp8_b128_s8192_h16_fit" || shape_name == "tp8_b128_s8192_h16_wg";
    if ((!only.empty() && ("," + only + ",").find("," + shape_name + ",") == std::string::npos) ||
        (quick && !quick_shape))
      continue;
    std::vector<int> lens(size_t(s.batch), s.seq_len), qlens(size_t(s.batch), s.q_per_seq);
    std::mt19937_64 lrng(5);
    if (s.varlen)
      for (int& l : lens)
        l = std::max(s.q_per_seq, int(std::normal_distribution<double>(s.seq_len, s.seq_len / 2.0)(lrng)));
    Case c{lens, qlens, s.heads, s.block_size, sms, uint64_t(1000 + s.block_size), s.format};
    c.attend = s.attend;
    c.l2_prefetch_tiles = s.l2_prefetch_tiles;
    c.codes_in_registers = s.codes_in_registers;
    const Inputs in = cuda::mla::make_inputs(c);
    double tokens = 0, flops = 0;
    for (int b = 0; b < s.batch; ++b) tokens += lens[b], flops += 2.0 * s.heads * qlens[b] * (kD + kDv) * lens[b];
    const double q_rows = double(in.num_tokens) * s.heads;
    const double bytes = tokens * cuda::mla_kv_row_bytes(s.format) + (q_rows * kD + q_rows * kDv) * 2.0;
    // Rotate input sets when one set would sit in L2.
    const int n_rot = int(std::min<double>(4, std::max(1.0, std::ceil(2.0 * prop.l2CacheSize / bytes))));
    std::vector<std::unique_ptr<DeviceRun>> sets;
    for (int i = 0; i < n_rot; ++i) sets.push_back(std::make_unique<DeviceRun>(in, c));
    std::vector<int> sampled = {0, s.batch - 1};
    for (int k = 2; k < sample; ++k) sampled.push_back(k * s.batch / sample);
    const Comparison r = validate(in, c, *sets[0], sampled);
    all_ok &= r.ok();
    for (auto& d : sets) cuda::mla_decode_schedule(d->p, nullptr);
    // The attend kernel, the whole call, the schedule and the combine, timed in turn within each repetition: at the
    // MTP shape an H200 timed the whole call 0.14 ms slower than the kernel when each was timed in a run of its own.
    auto stage = [&](void (*fn)(const cuda::MlaDecodeParams&, cudaStream_t)) {
      return [&, fn](int i) { fn(sets[size_t(i % n_rot)]->p, nullptr); };
    };
    const std::vector<double> ms =
        median_ms_interleaved(3, reps, {stage(cuda::mla_decode_attend), stage(cuda::mla_decode),
                                        stage(cuda::mla_decode_schedule), stage(cuda::mla_decode_combine)});
    const double kern = ms[0], call = ms[1], sched = ms[2], comb = ms[3];
    MLARUN_CUDA_CHECK(cudaDeviceSynchronize());
    const double floor_ms = std::max(bytes / ceil.copy_gbps / 1e6, flops / ceil.gemm_tflops / 1e9);
    const double torch = torch_anchor_ms(anchors, s);
    char torch_txt[32] = "n/a";
    if (torch > 0) std::snprintf(torch_txt, sizeof(torch_txt), "%.3f", torch);
    call_ms[s.name] = call;
    // A quantized row against the bf16 row of the same shape and kernel; a 32-row tensor-core row against its SIMT
    // twin, a fitted row against its 32-row twin; an L2-prefetch or codes-in-registers row against its row without.
    const std::string full_name = s.name;
    const std::string reg_twin = s.codes_in_registers ? full_name.substr(0, full_name.rfind("_reg")) : "";
    const std::string pf_twin = s.l2_prefetch_tiles > 0 ? full_name.substr(0, full_name.rfind("_pf")) : "";
    const std::string name = !reg_twin.empty() ? reg_twin : !pf_twin.empty() ? pf_twin : full_name;
    std::string bf16_twin = name;  // "..._fp8_fit" -> "..._fit"
    for (const char* tag : {"_fp8", "_int8"})
      if (const size_t at = bf16_twin.find(tag); at != std::string::npos) bf16_twin.erase(at, std::string(tag).size());
    const double bf16_ms = s.format != cuda::MlaKvFormat::Bf16 && call_ms.count(bf16_twin) ? call_ms[bf16_twin] : -1;
    const std::string suffix = kAttendSuffix[int(s.attend)];
    const std::string base = name.substr(0, name.size() - suffix.size());  // "..._mma" -> "...", and so on
    const double simt = s.attend == kMma && call_ms.count(base) ? call_ms[base] : -1;
    const bool faster_kind =
        pf_twin.empty() && reg_twin.empty() && (s.attend == kFit || s.attend == kWg || s.attend == kWgs);
    const double mma32 = faster_kind && call_ms.count(base + "_mma") ? call_ms[base + "_mma"] : -1;
    const double split =
        (s.attend == kWgws || s.attend == kWgss) && call_ms.count(base + "_wgs") ? call_ms[base + "_wgs"] : -1;
    std::string bs_twin;  // "..._bs16[_mma]" -> "...[_mma]": the same shape in blocks of 64
    if (const size_t at = name.find("_bs"); at != std::string::npos) {
      const size_t end = name.find('_', at + 3);
      bs_twin = name.substr(0, at) + (end == std::string::npos ? "" : name.substr(end));
    }
    const double bs64 = !bs_twin.empty() && call_ms.count(bs_twin) ? call_ms[bs_twin] : -1;
    const double no_pf = !pf_twin.empty() && call_ms.count(pf_twin) ? call_ms[pf_twin] : -1;
    const double widened = !reg_twin.empty() && call_ms.count(reg_twin) ? call_ms[reg_twin] : -1;
    std::string speedup;
    if (no_pf > 0) speedup += " [" + fixed2(no_pf / call) + "x without L2 prefetch]";
    if (widened > 0) speedup += " [" + fixed2(widened / call) + "x the codes widened in shared memory]";
    if (bf16_ms > 0) speedup += " [" + fixed2(bf16_ms / call) + "x the bf16 tokens/s]";
    if (bs64 > 0) speedup += " [" + fixed2(call / bs64) + "x the block-64 time]";
    if (simt > 0) speedup += " [" + fixed2(simt / call) + "x the SIMT kernel]";
    if (mma32 > 0) speedup += " [" + fixed2(mma32 / call) + "x the 32-row kernel]";
    if (split > 0) speedup += " [" + fixed2(split / call) + "x the split wgmma kernel]";
    std::printf("%-30s %9.3f %9.3f %9.3f %9.0f %9.0f %8.1f %8.1f %9.3f %9s  %s%s%s\n", s.name, call, kern, sched,
                bytes / call / 1e6, bytes / kern / 1e6, flops / call / 1e9, flops / kern / 1e9, floor_ms, torch_txt,
                s.target, speedup.c_str(), r.ok() ? "" : "  [VALIDATION FAILED]");
    json::Value j = json::Value::object();
    j["name"] = s.name, j["batch"] = s.batch, j["seq_len"] = s.seq_len, j["heads"] = s.heads;
    j["q_per_seq"] = s.q_per_seq, j["block_size"] = s.block_size, j["varlen"] = s.varlen;
    j["kv_format"] = cuda::mla_kv_format_name(s.format);
    if (bf16_ms > 0) j["speedup_vs_bf16"] = bf16_ms / call;
    j["attend"] = kAttendName[int(s.attend)];
    if (simt > 0) j["speedup_vs_simt"] = simt / call;
    if (mma32 > 0) j["speedup_vs_32_row_kernel"] = mma32 / call;
    if (split > 0) j["speedup_vs_wgmma_split"] = split / call;
    if (bs64 > 0) j["time_vs_block64"] = call / bs64;
    if (s.l2_prefetch_tiles > 0) j["l2_prefetch_tiles"] = s.l2_prefetch_tiles;
    if (no_pf > 0) j["speedup_vs_no_prefetch"] = no_pf / call;
    if (s.codes_in_registers) j["codes_in_registers"] = true;
    if (widened > 0) j["speedup_vs_codes_widened"] = widened / call;
    j["bytes"] = bytes, j["flops"] = flops, j["rotated_sets"] = n_rot;
    j["call_ms"] = call, j["kernel_ms"] = kern, j["schedule_ms"] = sched, j["combine_ms"] = comb;
    j["call_GBps"] = bytes / call / 1e6, j["kernel_GBps"] = bytes / kern / 1e6;
    j["call_TFLOPs"] = flops / call / 1e9, j["kernel_TFLOPs"] = flops / kern / 1e9;
    j["floor_ms"] = floor_ms, j["torch_ms"] = torch > 0 ? json::Value(torch) : json::Value(nullptr);
    j["validation_rel_l2"] = r.rel_l2, j["validation_ok"] = r.ok(), j["target"] = s.target;
    sjson.push_back(j);
  }
  report["shapes"] = sjson;
  report["ok"] = all_ok;
  if (!json_path.empty()) std::ofstream(json_path) << json::dump(report, 1) << "\n";
  std::printf("\n%s\n", all_ok ? "validation ok" : "VALIDATION FAILED");
  return all_ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_mla_decode: %s\n", e.what());
    return 2;
  }
}
