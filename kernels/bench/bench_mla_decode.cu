// Workbench for the MLA decode kernel (kernels/cuda/mla_decode.h), in the llm.c way: first prove it computes the
// right function, then time it honestly. Validation: fresh random q and cache rows (never zeros), NaN in every
// unused cache slot, shuffled block tables with garbage past each sequence's blocks, mixed lengths including 0
// and 1, 1..4 query tokens, outputs poisoned before the run; compared per sequence with ops::mla_paged_attention
// on f32 copies of the bf16 data. Timing: the issue's shapes, CUDA events around each call after warm-up, median
// of many runs, input sets rotated when they would fit in L2; GB/s and TFLOP/s by FlashMLA's formulas
// (bytes = cache read once + q + out; FLOPs = 2 * H * s_q * (576 + 512) per cached token), kernel-only (attend)
// and whole call (schedule + attend + combine), next to the copy and GEMM ceilings measured here at run time and
// the PyTorch reference (--torch-anchors). Exit: 0 ok or no GPU ("no GPU" printed), 1 validation failed, 2 error.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "runtime/cuda_check.h"
#include "kernels/cuda/mla_decode.h"
#include "kernels/cuda/mla_decode_reference.h"
#include "kernels/ops.h"
#include "runtime/device.h"
#include "runtime/dtype.h"
#include "runtime/json.h"
#include "runtime/tensor.h"

using namespace mlarun;
using cuda::MlaDecodeParams;

namespace {

constexpr int kD = 576, kDv = 512;
constexpr float kScale = 0.0721687836f;  // 1/sqrt(192)

struct DevBuf {  // one cudaMalloc, freed on scope exit
  void* p = nullptr;
  explicit DevBuf(size_t n) { MLARUN_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(n, 256))); }
  ~DevBuf() { cudaFree(p); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
};
template <typename T>
std::unique_ptr<DevBuf> upload(const std::vector<T>& h) {
  auto b = std::make_unique<DevBuf>(h.size() * sizeof(T));
  MLARUN_CUDA_CHECK(cudaMemcpy(b->p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  return b;
}

struct SplitMix {  // fast enough to fill a 1 GB cache in about a second
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  uint16_t bf16() { return float_to_bf16(float(next() >> 40) * (2.0f / 16777216.0f) - 1.0f); }  // U(-1, 1)
};

// Host inputs of one case; see the header comment for what "random" guarantees.
struct HostCase {
  int heads = 0, block_size = 0, num_blocks = 0, max_blocks = 1, num_tokens = 0, max_q = 1;
  std::vector<int32_t> seq_lens, cu_q, tables;
  std::vector<uint16_t> q, pool;
};

HostCase build(const std::vector<int>& lens, const std::vector<int>& qlens, int heads, int bs, uint64_t seed) {
  HostCase c;
  c.heads = heads, c.block_size = bs;
  SplitMix rng{seed};
  int used = 0;
  for (size_t b = 0; b < lens.size(); ++b) {
    c.max_blocks = std::max(c.max_blocks, (lens[b] + bs - 1) / bs);
    c.max_q = std::max(c.max_q, qlens[b]);
    used += (lens[b] + bs - 1) / bs;
  }
  c.num_blocks = used + used / 50 + 3;  // spare blocks stay NaN
  std::vector<int32_t> ids(c.num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), std::mt19937_64(seed));
  c.pool.assign(size_t(c.num_blocks) * bs * kD, uint16_t(0x7fc0));
  c.tables.assign(lens.size() * c.max_blocks, 2147480000);
  c.cu_q.push_back(0);
  int next = 0;
  for (size_t b = 0; b < lens.size(); ++b) {
    int32_t* table = c.tables.data() + b * c.max_blocks;
    for (int j = 0; j < (lens[b] + bs - 1) / bs; ++j) table[j] = ids[next++];
    for (int t = 0; t < lens[b]; ++t) {
      uint16_t* row = c.pool.data() + (size_t(table[t / bs]) * bs + t % bs) * kD;
      for (int d = 0; d < kD; ++d) row[d] = rng.bf16();
    }
    c.seq_lens.push_back(lens[b]);
    c.cu_q.push_back(c.cu_q.back() + qlens[b]);
  }
  c.num_tokens = c.cu_q.back();
  c.q.resize(size_t(c.num_tokens) * heads * kD);
  for (auto& v : c.q) v = rng.bf16();
  return c;
}

struct DeviceCase {  // one input set on the device, with its outputs and workspace
  std::unique_ptr<DevBuf> q, pool, tables, lens, cu, out, lse, ws;
  MlaDecodeParams p;
  DeviceCase(const HostCase& c, int num_sms) {
    q = upload(c.q), pool = upload(c.pool), tables = upload(c.tables), lens = upload(c.seq_lens), cu = upload(c.cu_q);
    out = std::make_unique<DevBuf>(size_t(c.num_tokens) * c.heads * kDv * 2);
    lse = std::make_unique<DevBuf>(size_t(c.num_tokens) * c.heads * 4);
    p.q = static_cast<uint16_t*>(q->p), p.kv_cache = static_cast<uint16_t*>(pool->p);
    p.block_tables = static_cast<int32_t*>(tables->p), p.seq_lens = static_cast<int32_t*>(lens->p);
    p.cu_seqlens_q = static_cast<int32_t*>(cu->p);
    p.out = static_cast<uint16_t*>(out->p), p.lse = static_cast<float*>(lse->p);
    p.num_tokens = c.num_tokens, p.batch = int(c.seq_lens.size()), p.num_heads = c.heads;
    p.kv_lora_rank = 512, p.rope_dim = 64, p.num_blocks = c.num_blocks, p.block_size = c.block_size;
    p.max_blocks_per_seq = c.max_blocks, p.max_q_per_seq = c.max_q, p.num_sms = num_sms, p.softmax_scale = kScale;
    p.workspace_bytes = cuda::mla_decode_workspace_bytes(p.batch, p.num_heads, p.max_q_per_seq, num_sms);
    ws = std::make_unique<DevBuf>(p.workspace_bytes);
    p.workspace = ws->p;
  }
};

struct Check {
  double rel_l2 = 0, max_abs = 0, max_lse = 0;
  int64_t bad = 0;
  bool ok() const { return bad == 0 && rel_l2 < 5e-3; }
};

// Poisons the outputs, runs the whole call and compares sequences `seqs` with the CPU reference.
Check validate(const HostCase& c, DeviceCase& d, const std::vector<int>& seqs) {
  MLARUN_CUDA_CHECK(cudaMemset(d.out->p, 0xff, size_t(c.num_tokens) * c.heads * kDv * 2));
  MLARUN_CUDA_CHECK(cudaMemset(d.lse->p, 0xff, size_t(c.num_tokens) * c.heads * 4));
  cuda::mla_decode(d.p, nullptr);
  const cuda::MlaDecodeStatus status = cuda::mla_decode_status(d.p, nullptr);
  Check r;
  if (!status.ok()) {  // a device-side check fired: report it as a failed validation
    std::printf("device status: %s\n", status.message().c_str());
    r.bad = 1, r.rel_l2 = INFINITY;
    return r;
  }
  std::vector<uint16_t> out(size_t(c.num_tokens) * c.heads * kDv);
  std::vector<float> lse(size_t(c.num_tokens) * c.heads);
  MLARUN_CUDA_CHECK(cudaMemcpy(out.data(), d.out->p, out.size() * 2, cudaMemcpyDeviceToHost));
  MLARUN_CUDA_CHECK(cudaMemcpy(lse.data(), d.lse->p, lse.size() * 4, cudaMemcpyDeviceToHost));
  double err2 = 0, ref2 = 0;
  for (int b : seqs) {
    const int q0 = c.cu_q[b], n = c.cu_q[b + 1] - q0, len = c.seq_lens[b];
    const int nblk = (len + c.block_size - 1) / c.block_size;
    // The sequence's blocks gathered into a compact f32 pool (its table becomes 0..nblk-1).
    Tensor pool = Tensor::empty({std::max(nblk, 1), c.block_size, kD}, DType::F32);
    for (int j = 0; j < nblk; ++j)
      convert_to_f32(c.pool.data() + size_t(c.tables[size_t(b) * c.max_blocks + j]) * c.block_size * kD, DType::BF16,
                     pool.data<float>() + size_t(j) * c.block_size * kD, size_t(c.block_size) * kD);
    std::vector<int32_t> table(nblk);
    std::iota(table.begin(), table.end(), 0);
    Tensor ref, ref_lse;
    cuda::mla_decode_reference_one(c.q.data() + size_t(q0) * c.heads * kD, n, c.heads, len, pool, table, kScale,
                                   ref, ref_lse);
    for (int64_t i = 0; i < ref.numel(); ++i) {
      const double want = ref.data<float>()[i], got = bf16_to_float(out[size_t(q0) * c.heads * kDv + i]);
      const double e = std::fabs(got - want);
      err2 += e * e, ref2 += want * want;
      r.max_abs = std::max(r.max_abs, std::isnan(e) ? INFINITY : e);
      if (!(e <= 8e-3 * std::fabs(want) + 1e-4)) ++r.bad;
    }
    for (int64_t i = 0; i < ref_lse.numel(); ++i) {
      const float want = ref_lse.data<float>()[i], got = lse[size_t(q0) * c.heads + i];
      const double e = std::isinf(want) ? (got == want ? 0.0 : INFINITY) : std::fabs(double(got) - want);
      r.max_lse = std::max(r.max_lse, std::isnan(e) ? INFINITY : e);
      if (!(e <= 2e-4 + 2e-5 * std::fabs(want))) ++r.bad;
    }
  }
  r.rel_l2 = ref2 > 0 ? std::sqrt(err2 / ref2) : 0.0;
  return r;
}

template <typename F>
double median_ms(int reps, F&& fn) {  // events around each call; 3 warm-up calls first
  for (int i = 0; i < 3; ++i) fn(i);
  cudaEvent_t start, stop;
  MLARUN_CUDA_CHECK(cudaEventCreate(&start));
  MLARUN_CUDA_CHECK(cudaEventCreate(&stop));
  std::vector<float> ms(reps);
  for (int i = 0; i < reps; ++i) {
    MLARUN_CUDA_CHECK(cudaEventRecord(start));
    fn(i);
    MLARUN_CUDA_CHECK(cudaEventRecord(stop));
    MLARUN_CUDA_CHECK(cudaEventSynchronize(stop));
    MLARUN_CUDA_CHECK(cudaEventElapsedTime(&ms[i], start, stop));
  }
  MLARUN_CUDA_CHECK(cudaEventDestroy(start));
  MLARUN_CUDA_CHECK(cudaEventDestroy(stop));
  std::nth_element(ms.begin(), ms.begin() + reps / 2, ms.end());
  return ms[reps / 2];
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
  c.copy_gbps = 2.0 * n / median_ms(20, [&](int) { cudaMemcpyAsync(b.p, a.p, n, cudaMemcpyDeviceToDevice); }) / 1e6;
  const int m = 8192;  // bf16 GEMM m = n = k = 8192 through cuBLAS, random operands
  std::vector<uint16_t> host(size_t(m) * m);
  SplitMix rng{7};
  for (auto& v : host) v = rng.bf16();
  auto A = upload(host), B = upload(host);
  DevBuf C(size_t(m) * m * 2);
  cublasHandle_t handle;
  if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) fail("cublasCreate failed");
  const float one = 1.f, zero = 0.f;
  const double ms = median_ms(10, [&](int) {
    cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, m, m, m, &one, A->p, CUDA_R_16BF, m, B->p, CUDA_R_16BF, m, &zero,
                 C.p, CUDA_R_16BF, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
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
  const char* target;  // the issue's criterion for this shape
};

// PyTorch reference time (tools/torch_anchors.py) for this shape, or -1.
double torch_anchor_ms(const json::Value& anchors, const Shape& s) {
  if (!anchors.is_array() || s.q_per_seq != 1 || s.varlen) return -1;
  for (const auto& r : anchors.items()) {
    const json::Value *kind = r.find("kind"), *B = r.find("B"), *H = r.find("H"), *T = r.find("T"), *ms = r.find("ms");
    if (kind && kind->is_string() && kind->as_string() == "mla_decode_torch_ref" && B && H && T && ms &&
        B->as_int() == s.batch && H->as_int() == s.heads && T->as_int() == s.seq_len)
      return ms->as_double();
  }
  return -1;
}

int run(int argc, char** argv) {
  std::string json_path, anchors_path = "../shared/reference/h100_torch_anchors.json", only;
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
    else fail("usage: bench_mla_decode [--json FILE] [--reps N] [--only SHAPE] [--validate-seqs K] [--quick] "
              "[--torch-anchors FILE]; unknown argument ", a);
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
  report.set("device", std::string(prop.name));
  report.set("sms", sms);
  json::Value anchors;  // the given file, else the first default location that exists (repo root or build dir)
  for (const std::string& path : {anchors_path, std::string("shared/reference/h100_torch_anchors.json"),
                                  std::string("../../shared/reference/h100_torch_anchors.json")})
    if (std::ifstream(path).good()) {
      anchors = json::parse_file(path);
      report.set("torch_anchors", path);
      break;
    }

  // 1. Validation on mixed cases: every sequence checked.
  struct VCase { std::vector<int> lens, qlens; int heads, bs, sms; };
  const std::vector<VCase> vcases = {
      {{0, 1, 33, 257, 1000, 64, 5}, {1, 2, 3, 4, 1, 2, 4}, 16, 64, sms}, {{0, 1, 700, 31}, {1, 4, 2, 1}, 128, 1, sms},
      {{4000, 10, 1, 0, 2500}, {2, 1, 1, 3, 4}, 1, 16, 5},             {{3000, 2, 90}, {3, 2, 1}, 64, 256, 1024}};
  bool all_ok = true;
  json::Value vjson = json::Value::array();
  for (size_t i = 0; i < vcases.size(); ++i) {
    const VCase& v = vcases[i];
    const HostCase hc = build(v.lens, v.qlens, v.heads, v.bs, 100 + i);
    DeviceCase dc(hc, v.sms);
    std::vector<int> all(v.lens.size());
    std::iota(all.begin(), all.end(), 0);
    const Check r = validate(hc, dc, all);
    all_ok &= r.ok();
    std::printf("validate H=%-3d bs=%-3d sms=%-4d  rel_l2 %.2e  max|d out| %.2e  max|d lse| %.2e  %s\n", v.heads, v.bs,
                v.sms, r.rel_l2, r.max_abs, r.max_lse, r.ok() ? "ok" : "FAILED");
    json::Value j = json::Value::object();
    j.set("heads", v.heads), j.set("block_size", v.bs), j.set("rel_l2", r.rel_l2), j.set("ok", r.ok());
    vjson.push_back(j);
  }
  report.set("validation", vjson);

  // 2. The issue's shapes (H100, bf16 cache): validate a sample of sequences, then time.
  const Ceilings ceil = measure_ceilings(device);
  std::printf("\n%s, %d SMs: copy %.0f GB/s (datasheet %.0f), bf16 GEMM %.0f TFLOP/s (cuBLAS 8192^3); torch: %s\n",
              prop.name, sms, ceil.copy_gbps, ceil.datasheet_gbps, ceil.gemm_tflops,
              anchors.is_array() ? "anchors loaded" : "no anchors file");
  report.set("copy_GBps", ceil.copy_gbps), report.set("gemm_TFLOPs", ceil.gemm_tflops);
  const std::vector<Shape> shapes = {
      {"tp8_b128_s8192_h16", 128, 8192, 16, 1, 64, false, ">= 2600 GB/s whole call"},
      {"b64_s4096_h128", 64, 4096, 128, 1, 64, false, "<= 0.15 ms whole call"},
      {"mtp2_b128_s8192_h128", 128, 8192, 128, 2, 64, false, ">= 450 TFLOP/s whole call"},
      {"tp8_b128_s8192_h16_bs16", 128, 8192, 16, 1, 16, false, "within 10% of bs 64"},
      {"tp8_b128_s8192_h16_bs256", 128, 8192, 16, 1, 256, false, "within 10% of bs 64"},
      {"b64_s4096_h128_bs16", 64, 4096, 128, 1, 16, false, "within 10% of bs 64"},
      {"b64_s4096_h128_bs256", 64, 4096, 128, 1, 256, false, "within 10% of bs 64"},
      {"tp8_b128_varlen8192_h16", 128, 8192, 16, 1, 64, true, "(FlashMLA-style varlen, information)"}};
  std::printf("%-26s %9s %9s %9s %9s %8s %8s %9s %9s  %s\n", "shape", "call ms", "kern ms", "call GB/s", "kern GB/s",
              "call TF", "kern TF", "floor ms", "torch ms", "target");
  json::Value sjson = json::Value::array();
  for (const Shape& s : shapes) {
    if ((!only.empty() && only != s.name) || (quick && &s != &shapes[0])) continue;
    std::vector<int> lens(s.batch, s.seq_len), qlens(s.batch, s.q_per_seq);
    std::mt19937_64 lrng(5);
    if (s.varlen)
      for (int& l : lens)
        l = std::max(s.q_per_seq, int(std::normal_distribution<double>(s.seq_len, s.seq_len / 2.0)(lrng)));
    const HostCase hc = build(lens, qlens, s.heads, s.block_size, 1000 + s.block_size);
    double tokens = 0, flops = 0;
    for (int b = 0; b < s.batch; ++b) tokens += lens[b], flops += 2.0 * s.heads * qlens[b] * (kD + kDv) * lens[b];
    const double q_rows = double(hc.num_tokens) * s.heads;
    const double bytes = (tokens * kD + q_rows * kD + q_rows * kDv) * 2.0;
    // Rotate input sets when one set would sit in L2.
    const int n_rot = int(std::min<double>(4, std::max(1.0, std::ceil(2.0 * prop.l2CacheSize / bytes))));
    std::vector<std::unique_ptr<DeviceCase>> sets;
    for (int i = 0; i < n_rot; ++i) sets.push_back(std::make_unique<DeviceCase>(hc, sms));
    std::vector<int> sampled = {0, s.batch - 1};
    for (int k = 2; k < sample; ++k) sampled.push_back(k * s.batch / sample);
    const Check r = validate(hc, *sets[0], sampled);
    all_ok &= r.ok();
    for (auto& d : sets) cuda::mla_decode_schedule(d->p, nullptr);
    const double kern = median_ms(reps, [&](int i) { cuda::mla_decode_attend(sets[i % n_rot]->p, nullptr); });
    const double call = median_ms(reps, [&](int i) { cuda::mla_decode(sets[i % n_rot]->p, nullptr); });
    const double sched = median_ms(reps, [&](int i) { cuda::mla_decode_schedule(sets[i % n_rot]->p, nullptr); });
    const double comb = median_ms(reps, [&](int i) { cuda::mla_decode_combine(sets[i % n_rot]->p, nullptr); });
    MLARUN_CUDA_CHECK(cudaDeviceSynchronize());
    const double floor_ms = std::max(bytes / ceil.copy_gbps / 1e6, flops / ceil.gemm_tflops / 1e9);
    const double torch = torch_anchor_ms(anchors, s);
    char torch_txt[32] = "n/a";
    if (torch > 0) std::snprintf(torch_txt, sizeof(torch_txt), "%.3f", torch);
    std::printf("%-26s %9.3f %9.3f %9.0f %9.0f %8.1f %8.1f %9.3f %9s  %s%s\n", s.name, call, kern, bytes / call / 1e6,
                bytes / kern / 1e6, flops / call / 1e9, flops / kern / 1e9, floor_ms, torch_txt, s.target,
                r.ok() ? "" : "  [VALIDATION FAILED]");
    json::Value j = json::Value::object();
    j.set("name", s.name), j.set("batch", s.batch), j.set("seq_len", s.seq_len), j.set("heads", s.heads);
    j.set("q_per_seq", s.q_per_seq), j.set("block_size", s.block_size), j.set("varlen", s.varlen);
    j.set("bytes", bytes), j.set("flops", flops), j.set("rotated_sets", n_rot);
    j.set("call_ms", call), j.set("kernel_ms", kern), j.set("schedule_ms", sched), j.set("combine_ms", comb);
    j.set("call_GBps", bytes / call / 1e6), j.set("kernel_GBps", bytes / kern / 1e6);
    j.set("call_TFLOPs", flops / call / 1e9), j.set("kernel_TFLOPs", flops / kern / 1e9);
    j.set("floor_ms", floor_ms), j.set("torch_ms", torch > 0 ? json::Value(torch) : json::Value::null());
    j.set("validation_rel_l2", r.rel_l2), j.set("validation_ok", r.ok()), j.set("target", s.target);
    sjson.push_back(j);
  }
  report.set("shapes", sjson);
  report.set("ok", all_ok);
  if (!json_path.empty()) std::ofstream(json_path) << report.dump(1) << "\n";
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
