// Workbench for the flash prefill kernel, in the llm.c way: validate on fresh random inputs, then time.
// Why: a kernel number means nothing unless the same binary just showed the output right, on data it had never
// seen. Every run (1) fills q/k/v with new random values (seed printed), poisons out/lse with NaN and checks that
// every element was written; (2) checks rows against the CPU reference (ops::attention, fp32, on the same
// rounded inputs) with the rule "error <= 2 x the error of a plain bf16/fp16 attention + one output rounding";
// (3) times the shapes of shared/reference/h100_torch_anchors.json (CUDA events, warm-up, median) and prints
// TFLOP/s with FlashAttention's FLOP count (2*b*h*s_q*s_k*(d_qk+d_v), halved when causal), beside PyTorch's
// numbers when --anchors gives that file. Exit 1 on a validation failure; "no GPU" exits 0.
// Usage: bench_flash_prefill [--json FILE] [--anchors h100_torch_anchors.json] [--reps N] [--quick]
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "runtime/cuda_check.h"
#include "kernels/cuda/flash_prefill.h"
#include "kernels/cuda/flash_prefill_reference.h"
#include "kernels/ops.h"
#include "runtime/device.h"
#include "runtime/json.h"
#include "runtime/tensor.h"

using namespace mlarun;

namespace {

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

struct Problem {
  std::string name;
  int dqk, dv, hq, hkv;
  DType dtype;
  bool causal;
  int window;
  std::vector<int> len_q, len_k;
};

struct Run {
  Problem pb;
  std::vector<int32_t> cu_q{0}, cu_k{0};
  Tensor q, k, v, out, lse, dcu_q, dcu_k;  // device
  cuda::FlashPrefillParams p;

  Run(const Problem& problem, uint64_t seed) : pb(problem) {
    for (size_t b = 0; b < pb.len_q.size(); ++b) {
      cu_q.push_back(cu_q.back() + pb.len_q[b]);
      cu_k.push_back(cu_k.back() + pb.len_k[b]);
    }
    const int64_t tq = cu_q.back(), tk = cu_k.back();
    q = random_tensor({tq, pb.hq, pb.dqk}, seed);
    k = random_tensor({tk, pb.hkv, pb.dqk}, seed + 1);
    v = random_tensor({tk, pb.hkv, pb.dv}, seed + 2);
    out = Tensor::empty({tq, pb.hq, pb.dv}, pb.dtype, Device::CUDA);
    lse = Tensor::empty({tq, pb.hq}, DType::F32, Device::CUDA);
    dcu_q = int_tensor(cu_q), dcu_k = int_tensor(cu_k);
    p.q = q.raw(), p.k = k.raw(), p.v = v.raw(), p.out = out.raw(), p.lse = lse.data<float>();
    p.cu_seqlens_q = dcu_q.data<int32_t>(), p.cu_seqlens_k = dcu_k.data<int32_t>();
    p.cu_seqlens_q_host = cu_q.data(), p.cu_seqlens_k_host = cu_k.data();
    p.batch = int(pb.len_q.size()), p.total_q = tq, p.total_k = tk;
    p.num_heads_q = pb.hq, p.num_heads_kv = pb.hkv, p.head_dim_qk = pb.dqk, p.head_dim_v = pb.dv;
    p.dtype = pb.dtype, p.softmax_scale = 1.0f / std::sqrt(float(pb.dqk)), p.causal = pb.causal;
    p.window_left = pb.window;
  }
  Tensor random_tensor(const Shape& shape, uint64_t seed) const {
    Tensor t = Tensor::empty(shape, pb.dtype, Device::CUDA);
    fill_normal<<<1024, 256>>>(static_cast<uint16_t*>(t.raw()), t.numel(), seed * 0x2545f4914f6cdd1dull,
                               pb.dtype == DType::BF16);
    MLARUN_CUDA_CHECK(cudaGetLastError());
    return t;
  }
  static Tensor int_tensor(const std::vector<int32_t>& values) {
    Tensor t = Tensor::empty({int64_t(values.size())}, DType::I32);
    std::copy(values.begin(), values.end(), t.data<int32_t>());
    return t.to(Device::CUDA);
  }
  void launch() { cuda::flash_prefill(p, nullptr); }
};

struct Check : cuda::FlashPrefillErrors {
  bool ok() const { return unwritten == 0 && within_twice_plain() && lse <= 2e-3; }
};

// Poisons out/lse, runs once, counts NaN left anywhere, and compares the given rows (every head) with the
// fp32 CPU reference and the plain low-precision one. rows_per_seq <= 0: every row.
Check validate(Run& run, int rows_per_seq, std::mt19937& rng) {
  const Problem& pb = run.pb;
  MLARUN_CUDA_CHECK(cudaMemset(run.out.raw(), 0xff, run.out.nbytes()));  // NaN in bf16, fp16 and f32
  MLARUN_CUDA_CHECK(cudaMemset(run.lse.raw(), 0xff, run.lse.nbytes()));
  run.launch();
  MLARUN_CUDA_CHECK(cudaDeviceSynchronize());
  Tensor out = run.out.to(Device::CPU).to_dtype(DType::F32), lse = run.lse.to(Device::CPU);
  Tensor q = run.q.to(Device::CPU).to_dtype(DType::F32), k = run.k.to(Device::CPU).to_dtype(DType::F32),
         v = run.v.to(Device::CPU).to_dtype(DType::F32);
  Check total;
  for (int64_t i = 0; i < out.numel(); ++i) total.unwritten += std::isnan(out.data<float>()[i]);
  for (int64_t i = 0; i < lse.numel(); ++i) total.unwritten += std::isnan(lse.data<float>()[i]);

  std::vector<std::pair<int, int>> rows;  // (sequence, row in sequence)
  for (size_t b = 0; b < pb.len_q.size(); ++b) {
    const int n = pb.len_q[b];
    if (rows_per_seq <= 0 || n <= rows_per_seq) {
      for (int i = 0; i < n; ++i) rows.push_back({int(b), i});
    } else {
      for (int i : {0, 1, n / 2, n - 2, n - 1}) rows.push_back({int(b), i});
      for (int r = 5; r < rows_per_seq; ++r) rows.push_back({int(b), int(rng() % uint32_t(n))});
    }
  }
  const cuda::FlashPrefillShape shape{pb.dqk, pb.dv, pb.hq, pb.hkv, pb.dtype, pb.causal, pb.window,
                                      run.p.softmax_scale};
  const int workers = std::max(1u, std::thread::hardware_concurrency());
  std::vector<cuda::FlashPrefillErrors> part(static_cast<size_t>(workers));
  std::vector<std::thread> pool;
  for (int w = 0; w < workers; ++w)
    pool.emplace_back([&, w] {
      for (size_t idx = size_t(w); idx < rows.size(); idx += size_t(workers)) {
        const int b = rows[idx].first, i = rows[idx].second;
        part[size_t(w)].merge(cuda::flash_prefill_check_row(shape, q, k, v, out, lse, run.cu_q[b] + i, i,
                                                            run.cu_k[b], pb.len_q[b], pb.len_k[b]));
      }
    });
  for (auto& t : pool) t.join();
  const int64_t unwritten = total.unwritten;  // counted over every element above; the rows recount some
  for (const cuda::FlashPrefillErrors& c : part) total.merge(c);
  total.unwritten = unwritten;
  return total;
}

bool report(const char* what, const Problem& pb, const Check& c) {
  std::printf("%-6s %-34s rows %6lld  err %.3e  plain %s %.3e  lse %.1e  unwritten %lld  %s\n", what,
              pb.name.c_str(), (long long)c.rows, c.kernel, dtype_name(pb.dtype), c.plain, c.lse,
              (long long)c.unwritten, c.ok() ? "ok" : "FAIL");
  return c.ok();
}

float median_ms(Run& run, int warmup, int reps) {
  for (int i = 0; i < warmup; ++i) run.launch();
  cudaEvent_t a, b;
  MLARUN_CUDA_CHECK(cudaEventCreate(&a));
  MLARUN_CUDA_CHECK(cudaEventCreate(&b));
  std::vector<float> ms(static_cast<size_t>(reps));
  for (int i = 0; i < reps; ++i) {
    MLARUN_CUDA_CHECK(cudaEventRecord(a));
    run.launch();
    MLARUN_CUDA_CHECK(cudaEventRecord(b));
    MLARUN_CUDA_CHECK(cudaEventSynchronize(b));
    MLARUN_CUDA_CHECK(cudaEventElapsedTime(&ms[size_t(i)], a, b));
  }
  MLARUN_CUDA_CHECK(cudaEventDestroy(a));
  MLARUN_CUDA_CHECK(cudaEventDestroy(b));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// PyTorch's number for the same shape from torch_anchors.py output (0 when absent).
double anchor_tflops(const json::Value* anchors, const std::string& backend, int b, int h, int s, int d, int dv,
                     bool causal) {
  if (!anchors) return 0;
  for (const json::Value& r : anchors->items()) {
    auto num = [&](const char* key) { const json::Value* x = r.find(key); return x ? x->as_int() : -1; };
    const json::Value *be = r.find("backend"), *c = r.find("causal"), *tf = r.find("tflops");
    if (be && be->as_string() == backend && tf && c && c->as_bool() == causal && num("B") == b && num("H") == h &&
        num("S") == s && num("D") == d && num("DV") == dv)
      return tf->as_double();
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string json_path, anchors_path;
  int reps = 30;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json" && i + 1 < argc) json_path = argv[++i];
    else if (a == "--anchors" && i + 1 < argc) anchors_path = argv[++i];
    else if (a == "--reps" && i + 1 < argc) reps = std::max(1, std::atoi(argv[++i]));
    else if (a == "--quick") quick = true;
    else {
      std::fprintf(stderr, "usage: %s [--json FILE] [--anchors FILE] [--reps N] [--quick]\n", argv[0]);
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
    std::printf("device: %s, %d SMs, %zu KB smem/SM; ceilings (DESIGN.md, H100): ~800 TFLOP/s bf16 dense, 3.0 TB/s\n",
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
    std::vector<Problem> checks;
    for (auto& d : dims)
      for (DType t : {DType::BF16, DType::F16})
        checks.push_back({std::to_string(d[0]) + "/" + std::to_string(d[1]) + " gqa 8:2 causal", d[0], d[1], 8, 2,
                          t, true, -1, mixed, mixed});
    checks.push_back({"192/128 mqa 16:1 causal chunked", 192, 128, 16, 1, DType::BF16, true, -1, mixed,
                      {65, 300, 128, 1064}});
    checks.push_back({"192/128 mha 4 noncausal", 192, 128, 4, 4, DType::BF16, false, -1, mixed, {7, 17, 200, 1000}});
    checks.push_back({"128/128 gqa 4:2 window 256", 128, 128, 4, 2, DType::BF16, true, 256, mixed, mixed});
    uint64_t salt = 0;
    for (const Problem& pb : checks) {
      Run run(pb, seed + 16 * salt++);
      all_ok &= report("check", pb, validate(run, quick ? 16 : 0, rng));
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
    for (const Timed& t : shapes) {
      if (quick && t.s > 8192) continue;
      char name[96];
      std::snprintf(name, sizeof name, "b%d h%d s%d d%d/%d %s", t.b, t.h, t.s, t.d, t.dv,
                    t.causal ? "causal" : "full");
      Problem pb{name, t.d, t.dv, t.h, t.h, DType::BF16, t.causal, -1, std::vector<int>(size_t(t.b), t.s),
                 std::vector<int>(size_t(t.b), t.s)};
      Run run(pb, seed + 16 * salt++);
      const Check c = validate(run, quick ? 4 : 12, rng);
      all_ok &= report("sample", pb, c);
      const float ms = median_ms(run, 3, quick ? 5 : reps);
      const double flops = 2.0 * t.b * t.h * double(t.s) * t.s * (t.d + t.dv) / (t.causal ? 2 : 1);
      const double tflops = flops / (ms * 1e-3) / 1e12;
      const json::Value* anc = anchors_path.empty() ? nullptr : &anchors;
      const double fa2 = anchor_tflops(anc, "flash", t.b, t.h, t.s, t.d, t.dv, t.causal);
      const double cudnn = anchor_tflops(anc, "cudnn", t.b, t.h, t.s, t.d, t.dv, t.causal);
      std::printf("%-34s %9.3f %9.1f %11.1f %11.1f %8.2f\n", name, ms, tflops, fa2, cudnn,
                  cudnn > 0 ? tflops / cudnn : 0.0);
      json::Value r = json::Value::object();
      r.set("kind", "prefill"), r.set("backend", "mlarun"), r.set("B", t.b), r.set("H", t.h), r.set("S", t.s);
      r.set("D", t.d), r.set("DV", t.dv), r.set("causal", t.causal), r.set("ms", double(ms));
      r.set("tflops", tflops), r.set("max_err", c.kernel), r.set("plain_err", c.plain), r.set("valid", c.ok());
      results.push_back(r);
    }
    if (!json_path.empty()) {
      std::ofstream(json_path) << results.dump(1) << "\n";
      std::printf("wrote %s\n", json_path.c_str());
    }
    std::printf("%s\n", all_ok ? "all checks passed" : "VALIDATION FAILED");
    return all_ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
