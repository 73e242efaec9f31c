// Workbench for the flash prefill kernel, in the llm.c way: validate on fresh random inputs, then time.
// Why: a kernel number means nothing unless the same binary just showed the output right, on data it had never
// seen. Every run (1) fills q/k/v with new random values (seed printed), poisons out/lse with NaN and checks that
// every element was written; (2) checks rows against the CPU reference (ops::attention, fp32, on the same
// rounded inputs) with the rule "error <= 2 x the error of a plain bf16/fp16 attention + one output rounding"
// (the case, its buffers and that check are kernels/cuda/flash_prefill/cases.h, shared with the GPU test);
// (3) times a fixed list of prefill shapes (bench/timing.h: CUDA events, warm-up, median) and prints TFLOP/s with
// FlashAttention's FLOP count (2*b*h*s_q*s_k*(d_qk+d_v), halved when causal), beside PyTorch's numbers for the
// same shapes when --anchors names a file of them (no file, no such column). Exit 1 on a validation failure;
// "no GPU" exits 0. Ceilings and contract: docs/kernels.md.
// Usage: bench_flash_prefill [--json FILE] [--anchors FILE] [--reps N] [--quick] [--only TEXT]
// (--only: the timed shapes whose name holds TEXT, nothing else: one kernel to put under a profiler)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "kernels/bench/timing.h"
#include "kernels/cuda/flash_prefill/cases.h"
#include "runtime/cuda_check.h"
#include "runtime/device.h"
#include "runtime/json.h"
#include "runtime/tensor.h"

using namespace mlarun;
namespace cuda = mlarun::ops::cuda;
using cuda::flash::Case;
using cuda::flash::DeviceRun;

namespace {

// The kernels the workbench times: stage A's, the Hopper one, its warp-specialized and pipelined variants (d_v up
// to 128), the last also with its warpgroups taking turns, and persistent (a CTA per SM) with and without them.
struct FlashKernel {
  bool wgmma, warp_specialized, pipelined, pingpong;
  int persistent;
  const char* suffix;  // of the row names
  const char* json;    // "kernel" in the JSON
  bool ring() const { return warp_specialized || pipelined; }  // (d_v up to 128: config.h WgmmaRingTile)
  void choose_in(Case& c) const {  // this kernel for the case
    c.wgmma = wgmma, c.warp_specialized = warp_specialized, c.pipelined = pipelined, c.pingpong = pingpong;
    c.persistent = persistent;
  }
};
constexpr FlashKernel kFlashKernels[] = {{false, false, false, false, 0, "", "mma"},
                                         {true, false, false, false, 0, " wg", "wgmma"},
                                         {true, true, false, false, 0, " ws", "wgmma_ws"},
                                         {true, false, true, false, 0, " pipe", "wgmma_pipelined"},
                                         {true, false, true, true, 0, " pp", "wgmma_pingpong"},
                                         {true, false, true, false, -1, " pers", "wgmma_persistent"},
                                         {true, false, true, true, -1, " perspp", "wgmma_persistent_pingpong"}};

// splitmix64 hash of (seed, index) -> two uniforms -> one normal sample (Box-Muller), rounded to the dtype.
__global__ void fill_normal(uint16_t* dst, int64_t n, uint64_t seed, bool bf16) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    uint64_t z = seed + uint64_t(i) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    const float u1 = (float(uint32_t(z >> 40)) + 1.0f) / 16777217.0f, u2 = float(uint32_t(z) >> 8) / 16777216.0f;
    const float x = sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
    dst[i] = bf16 ? __bfloat16_as_ushort(__float2bfloat16(x)) : __half_as_ushort(__float2half(x));
  }
}

// Device normal inputs (fill_normal with a seed derived from `seed`), one fresh seed per tensor.
DeviceRun make_run(const Case& c, uint64_t seed) {
  return DeviceRun(c, [&](const Shape& shape) {
    Tensor t = Tensor::empty(shape, c.dtype, Device::CUDA);
    fill_normal<<<1024, 256>>>(static_cast<uint16_t*>(t.raw()), t.numel(), seed++ * 0x2545f4914f6cdd1dull,
                               c.dtype == DType::BF16);
    MLARUN_CUDA_CHECK(cudaGetLastError());
    return t;
  });
}

// Rows to check: every row of a sequence up to rows_per_seq of them (or when rows_per_seq <= 0), else its first
// two, middle and last two rows and random others up to rows_per_seq.
std::vector<std::pair<int, int>> rows_to_check(const Case& c, int rows_per_seq, std::mt19937& rng) {
  std::vector<std::pair<int, int>> rows;  // (sequence, row in sequence)
  for (size_t b = 0; b < c.len_q.size(); ++b) {
    const int n = c.len_q[b];
    if (rows_per_seq <= 0 || n <= rows_per_seq) {
      for (int i = 0; i < n; ++i) rows.push_back({int(b), i});
    } else {
      for (int i : {0, 1, n / 2, n - 2, n - 1}) rows.push_back({int(b), i});
      for (int r = 5; r < rows_per_seq; ++r) rows.push_back({int(b), int(rng() % uint32_t(n))});
    }
  }
  return rows;
}

bool report(const char* what, const Case& pb, const cuda::flash::Errors& c) {
  std::printf("%-6s %-34s rows %6lld  err %.3e  plain %s %.3e  lse %.1e  unwritten %lld  %s\n", what,
              pb.name.c_str(), (long long)c.rows, c.kernel, dtype_name(pb.dtype), c.plain, c.lse,
              (long long)c.unwritten, c.ok() ? "ok" : "FAIL");
  return c.ok();
}

// PyTorch's number for the same shape from the --anchors file, a JSON array of records {backend ("flash" or
// "cudnn"), B, H, S, D, DV, causal, tflops} (0 when absent).
double anchor_tflops(const json::Value* anchors, const std::string& backend, int b, int h, int s, int d, int dv,
                     bool causal) {
  if (!anchors || !anchors->is_array()) return 0;
  for (const json::Value& r : *anchors) {
    auto num = [&](const char* key) {
      const json::Value* x = json::find(r, key);
      return x ? json::to_int64(*x) : std::nullopt;
    };
    const json::Value *be = json::find(r, "backend"), *c = json::find(r, "causal"), *tf = json::find(r, "tflops");
    if (be && be->is_string() && be->get<std::string>() == backend && tf && tf->is_number() && c && c->is_boolean() &&
        c->get<bool>() == causal && num("B") == b && num("H") == h && num("S") == s && num("D") == d && num("DV") == dv)
      return tf->get<double>();
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string json_path, anchors_path, only;
  int reps = 30;
  bool quick = false, no_pipelined = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json" && i + 1 < argc) json_path = argv[++i];
    else if (a == "--anchors" && i + 1 < argc) anchors_path = argv[++i];
    else if (a == "--reps" && i + 1 < argc) reps = std::max(1, std::atoi(argv[++i]));
    else if (a == "--quick") quick = true;
    else if (a == "--no-pipelined") no_pipelined = true;  // gpu_check: the pipelined kernel hung its smoke test
    else if (a == "--only" && i + 1 < argc) only = argv[++i];
    else {
      std::fprintf(stderr, "usage: %s [--json FILE] [--anchors FILE] [--reps N] [--quick] [--only TEXT]"
                   " [--no-pipelined]\n", argv[0]);
      return 2;
    }
  }
  if (!gpu_available()) {
    std::printf("no GPU: %s\n", gpu_info().reason.c_str());
    return 0;
  }
  try {
    cudaDeviceProp prop;
    MLARUN_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    std::printf("device: %s, %d SMs, %zu KB smem/SM; H100 SXM ceilings (docs/kernels.md): ~800 TFLOP/s bf16 dense, "
                "~3.0 TB/s HBM3\n",
                prop.name, prop.multiProcessorCount, prop.sharedMemPerMultiprocessor / 1024);
    json::Value anchors;
    if (!anchors_path.empty()) anchors = json::parse_file(anchors_path);
    const uint64_t seed = std::random_device{}() | (uint64_t(std::random_device{}()) << 32);
    std::mt19937 rng(static_cast<uint32_t>(seed));
    std::printf("seed %llu\n", (unsigned long long)seed);
    bool all_ok = true;

    // 1) Every row of mixed-length batches, every dim pair and dtype.
    const std::vector<int> mixed = {1, 17, 128, 1000};
    const int dims[4][2] = {{192, 128}, {128, 128}, {64, 64}, {256, 256}};
    std::vector<Case> checks;
    for (auto& d : dims)
      for (DType t : {DType::BF16, DType::F16})
        checks.push_back({std::to_string(d[0]) + "/" + std::to_string(d[1]) + " gqa 8:2 causal", d[0], d[1], 8, 2,
                          t, true, -1, mixed, mixed});
    checks.push_back({"192/128 mqa 16:1 causal chunked", 192, 128, 16, 1, DType::BF16, true, -1, mixed,
                      {65, 300, 128, 1064}});
    checks.push_back({"192/128 mha 4 noncausal", 192, 128, 4, 4, DType::BF16, false, -1, mixed, {7, 17, 200, 1000}});
    checks.push_back({"128/128 gqa 4:2 window 256", 128, 128, 4, 2, DType::BF16, true, 256, mixed, mixed});
    uint64_t salt = 0;
    if (!only.empty()) checks.clear();
    for (size_t i = 0, n = checks.size(); i < n; ++i) {  // each again on the Hopper kernels (ws, pipe: d_v <= 128)
      Case wg = checks[i];
      wg.name += " [wgmma]";
      wg.wgmma = true;
      checks.push_back(wg);
      if (wg.dv > 128) continue;
      Case ws = wg, pipe = wg;
      ws.name += " [ws]";
      ws.warp_specialized = true;
      checks.push_back(ws);
      if (no_pipelined) continue;
      pipe.name += " [pipe]";
      pipe.pipelined = true;
      checks.push_back(pipe);
      pipe.name += " [pp]";
      pipe.pingpong = true;
      checks.push_back(pipe);
      pipe.name += " [persistent]";
      pipe.persistent = -1;
      checks.push_back(pipe);
    }
    for (const Case& pb : checks) {
      DeviceRun run = make_run(pb, seed + 16 * salt++);
      all_ok &= report("check", pb, cuda::flash::validate(run, rows_to_check(pb, quick ? 16 : 0, rng)));
    }

    // 2) The anchor shapes: sampled rows checked, every element checked for writes, then timed.
    struct Timed { int b, h, s, d, dv; bool causal; };
    const std::vector<Timed> shapes = {{1, 16, 4096, 128, 128, true},  {1, 16, 8192, 128, 128, true},
                                       {1, 16, 16384, 128, 128, true}, {4, 16, 4096, 128, 128, false},
                                       {1, 128, 4096, 192, 128, true}, {1, 16, 8192, 192, 128, true},
                                       {1, 16, 8192, 64, 64, true},    {1, 16, 8192, 256, 256, true}};
    json::Value results = json::Value::array();
    std::printf("\n%-34s %9s %9s %11s %11s %8s\n", "shape (bf16, MHA)", "ms", "TFLOP/s", "torch FA2", "cuDNN",
                "x cuDNN");
    // Stage A's kernel, the Hopper one (rows ending in "wg") and its warp-specialized and pipelined variants ("ws",
    // "pipe", "pp" with turns, "pers" and "perspp" persistent; d_v up to 128).
    for (const Timed& t : shapes)
    for (const FlashKernel kernel : kFlashKernels) {
      if (quick && t.s > 8192) continue;
      if (kernel.ring() && t.dv > 128) continue;
      if (no_pipelined && kernel.pipelined) continue;
      char name[96];
      std::snprintf(name, sizeof name, "b%d h%d s%d d%d/%d %s%s", t.b, t.h, t.s, t.d, t.dv,
                    t.causal ? "causal" : "full", kernel.suffix);
      if (!only.empty() && std::string(name).find(only) == std::string::npos) continue;
      Case pb{name, t.d, t.dv, t.h, t.h, DType::BF16, t.causal, -1, std::vector<int>(size_t(t.b), t.s),
              std::vector<int>(size_t(t.b), t.s)};
      kernel.choose_in(pb);
      DeviceRun run = make_run(pb, seed + 16 * salt++);
      const cuda::flash::Errors c = cuda::flash::validate(run, rows_to_check(pb, quick ? 4 : 12, rng));
      all_ok &= report("sample", pb, c);
      const double ms = cuda::bench::median_ms(3, quick ? 5 : reps, [&](int) { run.launch(); });
      const double flops = 2.0 * t.b * t.h * double(t.s) * t.s * (t.d + t.dv) / (t.causal ? 2 : 1);
      const double tflops = flops / (ms * 1e-3) / 1e12;
      const json::Value* anc = anchors_path.empty() ? nullptr : &anchors;
      const double fa2 = anchor_tflops(anc, "flash", t.b, t.h, t.s, t.d, t.dv, t.causal);
      const double cudnn = anchor_tflops(anc, "cudnn", t.b, t.h, t.s, t.d, t.dv, t.causal);
      std::printf("%-34s %9.3f %9.1f %11.1f %11.1f %8.2f\n", name, ms, tflops, fa2, cudnn,
                  cudnn > 0 ? tflops / cudnn : 0.0);
      json::Value r = json::Value::object();
      r["kind"] = "prefill", r["backend"] = "mlarun", r["B"] = t.b, r["H"] = t.h, r["S"] = t.s;
      r["D"] = t.d, r["DV"] = t.dv, r["causal"] = t.causal, r["ms"] = ms, r["kernel"] = kernel.json;
      r["tflops"] = tflops, r["max_err"] = c.kernel, r["plain_err"] = c.plain, r["valid"] = c.ok();
      results.push_back(r);
    }
    // 3) Varlen against uniform (the goal: a mixed batch >= 90% of the uniform batch's TFLOP/s): 192/128, 16 heads,
    // causal, 16384 tokens either as 4 x 4096 or as lengths from 1 to 4096; the varlen batch also longest first
    // (FlashPrefillParams::longest_first 1), longest first one head after another (2), and in the plain order from
    // a list without the empty m-blocks, one head after another (3) or each tile's heads together (4), and in the
    // kernel's own order (-1: what FlashPrefillParams leaves it); the uniform batch also in order 3.
    const std::vector<int> varlen = {4096, 1, 2048, 17, 1024, 3000, 512, 2000, 1500, 128, 2058};
    struct Batch { const char* name; std::vector<int> lens; int lpt; };
    const std::vector<Batch> batches = {{"uniform 4 x 4096", std::vector<int>(4, 4096), 0},
                                        {"varlen 1..4096", varlen, 0},
                                        {"varlen 1..4096, longest first", varlen, 1},
                                        {"varlen 1..4096, by head", varlen, 2},
                                        {"varlen 1..4096, compact by head", varlen, 3},
                                        {"varlen 1..4096, compact", varlen, 4},
                                        {"varlen 1..4096, kernel's order", varlen, -1},
                                        {"uniform 4 x 4096, compact by head", std::vector<int>(4, 4096), 3}};
    std::printf("\n%-38s %9s %9s %11s\n", "batch (192/128 bf16, h16, causal)", "ms", "TFLOP/s", "x uniform");
    double uniform_tflops = 0;
    for (const FlashKernel kernel : kFlashKernels)  // each kernel against its own uniform batch
    for (const Batch& bt : batches) {
      if (!only.empty() || (no_pipelined && kernel.pipelined)) break;
      const std::string name = std::string(bt.name) + kernel.suffix;
      Case pb{name, 192, 128, 16, 16, DType::BF16, true, -1, bt.lens, bt.lens};
      pb.longest_first = bt.lpt;
      kernel.choose_in(pb);
      if (&bt == &batches[0]) uniform_tflops = 0;
      DeviceRun run = make_run(pb, seed + 16 * salt++);
      const cuda::flash::Errors c = cuda::flash::validate(run, rows_to_check(pb, quick ? 4 : 12, rng));
      all_ok &= report("sample", pb, c);
      const double ms = cuda::bench::median_ms(3, quick ? 5 : reps, [&](int) { run.launch(); });
      double flops = 0;
      for (int s : bt.lens) flops += 2.0 * 16 * double(s) * s * (192 + 128) / 2;
      const double tflops = flops / (ms * 1e-3) / 1e12;
      if (uniform_tflops == 0) uniform_tflops = tflops;
      std::printf("%-38s %9.3f %9.1f %11.2f\n", name.c_str(), ms, tflops, tflops / uniform_tflops);
      json::Value r = json::Value::object();
      r["kind"] = "prefill_varlen", r["backend"] = "mlarun", r["batch"] = bt.name, r["longest_first"] = bt.lpt;
      r["kernel"] = kernel.json;
      r["ms"] = ms, r["tflops"] = tflops, r["x_uniform"] = tflops / uniform_tflops, r["valid"] = c.ok();
      results.push_back(r);
    }
    if (!json_path.empty()) {
      std::ofstream(json_path) << json::dump(results, 1) << "\n";
      std::printf("wrote %s\n", json_path.c_str());
    }
    std::printf("%s\n", all_ok ? "all checks passed" : "VALIDATION FAILED");
    return all_ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
