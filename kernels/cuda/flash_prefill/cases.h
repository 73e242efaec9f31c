// One flash prefill case as its GPU test (tests/kernels/test_gpu_flash_prefill.cpp) and its workbench
// (kernels/bench/bench_flash_prefill.cu) both run it, so the two cannot drift apart: the case (shape, dtype,
// mask, per-sequence lengths), its device buffers and params, and the validation (outputs poisoned with NaN,
// one call, every element checked for writes, chosen rows compared with reference.h's fp32 and plain
// low-precision references on all cores). Where the inputs come from is the caller's choice (host or device
// random numbers). Plain C++: the test is a .cpp file.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "kernels/cuda/flash_prefill/flash_prefill.h"
#include "kernels/cuda/flash_prefill/reference.h"
#include "runtime/cuda_check.h"
#include "runtime/device.h"
#include "runtime/tensor.h"

namespace mlarun::ops::cuda::flash {

struct Case {
  std::string name;
  int dqk, dv, hq, hkv;
  DType dtype;
  bool causal;
  int window;                      // window_left; -1 = none
  std::vector<int> len_q, len_k;   // per sequence
  std::vector<int> offset = {};    // per sequence causal offsets (FlashPrefillParams::causal_offset); empty: none
  int longest_first = 0;           // FlashPrefillParams::longest_first (0, or a tile order of tile_order.cuh)
  bool wgmma = false;              // FlashPrefillParams::wgmma (the Hopper kernel, kernel_wgmma.cuh)
  bool warp_specialized = false;   // FlashPrefillParams::warp_specialized (with wgmma: kernel_wgmma_ws.cuh)
  bool pipelined = false;          // FlashPrefillParams::pipelined (with wgmma: kernel_wgmma_pipelined.cuh)
  bool pingpong = false;           // FlashPrefillParams::pingpong (with pipelined: turns at the tensor cores)
  int persistent = 0;              // FlashPrefillParams::persistent (with pipelined: CTAs that walk the tiles)
};

// A validation passes when nothing is left unwritten, the output error is within twice the plain
// low-precision implementation's (plus one output rounding) and the lse within this of the fp32 reference.
constexpr double kMaxLseError = 2e-3;

struct Errors : FlashPrefillErrors {
  bool ok() const { return unwritten == 0 && within_twice_plain() && lse <= kMaxLseError; }
};

// Runs fn(worker, i) for i in [0, n) on all cores (the references are O(n^2) per row).
template <typename Fn>
void parallel_for(int n, Fn fn, int workers = std::max(1u, std::thread::hardware_concurrency())) {
  std::vector<std::thread> pool;
  for (int w = 0; w < workers; ++w)
    pool.emplace_back([&, w] {
      for (int i = w; i < n; i += workers) fn(w, i);
    });
  for (auto& t : pool) t.join();
}

// The device buffers of one case and the params that point at them (scale 1/sqrt(d_qk)). make_input(shape)
// returns a device tensor of the case's dtype; it is called for q, k and v in that order.
struct DeviceRun {
  Case c;
  std::vector<int32_t> cu_q{0}, cu_k{0};
  Tensor q, k, v, out, lse, dcu_q, dcu_k, doffset;
  FlashPrefillParams p;

  template <typename MakeInput>
  DeviceRun(const Case& kase, MakeInput&& make_input) : c(kase) {
    for (size_t b = 0; b < c.len_q.size(); ++b) {
      cu_q.push_back(cu_q.back() + c.len_q[b]);
      cu_k.push_back(cu_k.back() + c.len_k[b]);
    }
    const int64_t tq = cu_q.back(), tk = cu_k.back();
    q = make_input(Shape{tq, c.hq, c.dqk});
    k = make_input(Shape{tk, c.hkv, c.dqk});
    v = make_input(Shape{tk, c.hkv, c.dv});
    out = Tensor::empty({tq, c.hq, c.dv}, c.dtype, Device::CUDA);
    lse = Tensor::empty({tq, c.hq}, DType::F32, Device::CUDA);
    dcu_q = int_tensor(cu_q), dcu_k = int_tensor(cu_k);
    p.q = q.raw(), p.k = k.raw(), p.v = v.raw(), p.out = out.raw(), p.lse = lse.data<float>();
    p.cu_seqlens_q = dcu_q.data<int32_t>(), p.cu_seqlens_k = dcu_k.data<int32_t>();
    p.cu_seqlens_q_host = cu_q.data(), p.cu_seqlens_k_host = cu_k.data();
    p.batch = int(c.len_q.size()), p.total_q = tq, p.total_k = tk;
    p.num_heads_q = c.hq, p.num_heads_kv = c.hkv, p.head_dim_qk = c.dqk, p.head_dim_v = c.dv;
    p.dtype = c.dtype, p.softmax_scale = 1.0f / std::sqrt(float(c.dqk)), p.causal = c.causal;
    p.window_left = c.window;
    p.longest_first = c.longest_first;
    p.wgmma = c.wgmma;
    p.warp_specialized = c.warp_specialized;
    p.pipelined = c.pipelined;
    p.pingpong = c.pingpong;
    p.persistent = c.persistent;
    if (!c.offset.empty()) {
      doffset = int_tensor(std::vector<int32_t>(c.offset.begin(), c.offset.end()));
      p.causal_offset = doffset.data<int32_t>();
    }
  }
  DeviceRun(const DeviceRun&) = delete;  // p points into cu_q / cu_k
  DeviceRun& operator=(const DeviceRun&) = delete;
  void launch() { flash_prefill(p, nullptr); }

  static Tensor int_tensor(const std::vector<int32_t>& values) {
    Tensor t = Tensor::empty({int64_t(values.size())}, DType::I32);
    std::copy(values.begin(), values.end(), t.data<int32_t>());
    return t.to(Device::CUDA);
  }
};

// Every (sequence, query row) of the case.
inline std::vector<std::pair<int, int>> every_row(const Case& c) {
  std::vector<std::pair<int, int>> rows;
  for (size_t b = 0; b < c.len_q.size(); ++b)
    for (int i = 0; i < c.len_q[b]; ++i) rows.push_back({int(b), i});
  return rows;
}

// Poisons out and lse with NaN, runs the kernel once, counts the NaN left anywhere, and compares `rows`
// ((sequence, row in sequence), every head) with the fp32 CPU reference and the plain low-precision one.
inline Errors validate(DeviceRun& run, const std::vector<std::pair<int, int>>& rows) {
  const Case& c = run.c;
  MLARUN_CUDA_CHECK(cudaMemset(run.out.raw(), 0xff, run.out.nbytes()));  // NaN in bf16, fp16 and f32
  MLARUN_CUDA_CHECK(cudaMemset(run.lse.raw(), 0xff, run.lse.nbytes()));
  run.launch();
  MLARUN_CUDA_CHECK(cudaDeviceSynchronize());
  const Tensor out = run.out.to(Device::CPU).to_dtype(DType::F32), lse = run.lse.to(Device::CPU);
  const Tensor q = run.q.to(Device::CPU).to_dtype(DType::F32), k = run.k.to(Device::CPU).to_dtype(DType::F32),
               v = run.v.to(Device::CPU).to_dtype(DType::F32);
  int64_t unwritten = 0;
  for (int64_t i = 0; i < out.numel(); ++i) unwritten += std::isnan(out.data<float>()[i]);
  for (int64_t i = 0; i < lse.numel(); ++i) unwritten += std::isnan(lse.data<float>()[i]);

  const FlashPrefillShape shape{c.dqk, c.dv, c.hq, c.hkv, c.dtype, c.causal, c.window, run.p.softmax_scale};
  const int workers = std::max(1u, std::thread::hardware_concurrency());
  std::vector<FlashPrefillErrors> part(static_cast<size_t>(workers));
  parallel_for(
      int(rows.size()),
      [&](int w, int idx) {
        const int b = rows[size_t(idx)].first, i = rows[size_t(idx)].second;
        part[size_t(w)].merge(flash_prefill_check_row(shape, q, k, v, out, lse, run.cu_q[size_t(b)] + i, i,
                                                      run.cu_k[size_t(b)], c.len_q[size_t(b)], c.len_k[size_t(b)],
                                                      c.offset.empty() ? kBottomRight : c.offset[size_t(b)]));
      },
      workers);
  Errors total;
  for (const FlashPrefillErrors& e : part) total.merge(e);
  total.unwritten = unwritten;  // counted over every element above; the rows recount some of them
  return total;
}

}  // namespace mlarun::ops::cuda::flash
