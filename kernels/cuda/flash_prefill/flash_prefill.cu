// Flash prefill: argument checks and dispatch to the one instantiation per (d_qk, d_v, dtype). Every check runs
// before the first CUDA call, so a wrong call is the same mlarun::Error with or without a GPU (and is tested
// without one). The kernels themselves live in kernel.cuh, instantiated by the
// instantiations/flash_prefill_<qk>_<v>_<dtype>.cu files so that the eight variants compile in parallel.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>

#include "kernels/cuda/flash_prefill/flash_prefill.h"
#include "kernels/cuda/flash_prefill/config.h"
#include "kernels/cuda/wgmma_device.h"
#include "runtime/error.h"

namespace mlarun::ops::cuda {
namespace {

std::string supported_pairs() {
  std::ostringstream os;
  const char* sep = "";
  for (const flash::HeadDims& d : flash::kSupportedHeadDims) {
    os << sep << "(" << d.qk << ", " << d.v << ")";
    sep = ", ";
  }
  return os.str();
}

void check_aligned(const void* ptr, size_t alignment, const char* name) {
  const auto addr = reinterpret_cast<uintptr_t>(ptr);
  MLARUN_CHECK(addr % alignment == 0, "flash_prefill: ", name, " = ", ptr, " must be ", alignment,
               "-byte aligned (address mod ", alignment, " = ", addr % alignment, ")");
}

// cu_seqlens must start at 0, never decrease (a zero-length sequence is allowed) and end inside the buffer.
void check_cu_seqlens(const int32_t* cu, int batch, int64_t total, const char* name, const char* total_name) {
  MLARUN_CHECK(cu[0] == 0, "flash_prefill: ", name, "[0] must be 0, got ", cu[0]);
  for (int b = 0; b < batch; ++b)
    MLARUN_CHECK(cu[b + 1] >= cu[b], "flash_prefill: ", name, " must be non-decreasing, but ", name, "[", b,
                 "] = ", cu[b], " > ", name, "[", b + 1, "] = ", cu[b + 1]);
  MLARUN_CHECK(cu[batch] <= total, "flash_prefill: ", name, "[", batch, "] = ", cu[batch], " exceeds ",
               total_name, " = ", total, " rows");
}

using LaunchFn = void (*)(const FlashPrefillParams&, int, cudaStream_t);

template <int kQK, int kV>
LaunchFn pick(bool bf16, bool wgmma, bool warp_specialized, bool pipelined) {
  if constexpr (kV <= 128) {  // (config.h WgmmaRingTile: d_v 256 keeps the wgmma kernel)
    if (wgmma && warp_specialized)
      return bf16 ? flash::launch_flash_prefill_wgmma_ws<kQK, kV, DType::BF16>
                  : flash::launch_flash_prefill_wgmma_ws<kQK, kV, DType::F16>;
    if (wgmma && pipelined)
      return bf16 ? flash::launch_flash_prefill_wgmma_pipelined<kQK, kV, DType::BF16>
                  : flash::launch_flash_prefill_wgmma_pipelined<kQK, kV, DType::F16>;
  }
  if (wgmma)
    return bf16 ? flash::launch_flash_prefill_wgmma<kQK, kV, DType::BF16>
                : flash::launch_flash_prefill_wgmma<kQK, kV, DType::F16>;
  return bf16 ? flash::launch_flash_prefill<kQK, kV, DType::BF16> : flash::launch_flash_prefill<kQK, kV, DType::F16>;
}

int max_length(const int32_t* cu, int batch) {
  int m = 0;
  for (int b = 0; b < batch; ++b) m = std::max(m, cu[b + 1] - cu[b]);
  return m;
}

}  // namespace

void check_flash_prefill(const FlashPrefillParams& p) {
  MLARUN_CHECK(p.dtype == DType::BF16 || p.dtype == DType::F16, "flash_prefill: dtype ", dtype_name(p.dtype),
               " is not supported (bf16 or f16)");
  bool dims_ok = false;
  for (const flash::HeadDims& d : flash::kSupportedHeadDims) dims_ok |= d.qk == p.head_dim_qk && d.v == p.head_dim_v;
  MLARUN_CHECK(dims_ok, "flash_prefill: head dims (qk ", p.head_dim_qk, ", v ", p.head_dim_v,
               ") are not supported; supported (qk, v): ", supported_pairs());
  MLARUN_CHECK(p.num_heads_q > 0 && p.num_heads_kv > 0, "flash_prefill: head counts must be positive, got ",
               "num_heads_q = ", p.num_heads_q, ", num_heads_kv = ", p.num_heads_kv);
  MLARUN_CHECK(p.num_heads_q % p.num_heads_kv == 0, "flash_prefill: num_heads_q = ", p.num_heads_q,
               " is not a multiple of num_heads_kv = ", p.num_heads_kv);
  MLARUN_CHECK(p.num_heads_q <= 65535, "flash_prefill: num_heads_q = ", p.num_heads_q,
               " exceeds the grid's limit of 65535");
  MLARUN_CHECK(p.batch > 0 && p.batch <= 65535, "flash_prefill: batch = ", p.batch, " must be in [1, 65535]");
  MLARUN_CHECK(std::isfinite(p.softmax_scale) && p.softmax_scale > 0.0f, "flash_prefill: softmax_scale = ",
               p.softmax_scale, " must be positive and finite");
  MLARUN_CHECK(p.window_left >= -1, "flash_prefill: window_left = ", p.window_left,
               " must be -1 (no window) or >= 0");
  MLARUN_CHECK(p.longest_first >= -1 && p.longest_first <= 4, "flash_prefill: longest_first = ", p.longest_first,
               " must be -1 (the kernel's default), 0, 1, 2, 3 or 4");
  MLARUN_CHECK(!(p.warp_specialized && p.pipelined),
               "flash_prefill: warp_specialized and pipelined are both set; they name two different kernels");
  MLARUN_CHECK(!p.pingpong || p.pipelined, "flash_prefill: pingpong is set without pipelined (it is that kernel's)");
  MLARUN_CHECK(p.persistent >= -1, "flash_prefill: persistent = ", p.persistent,
               " must be -1 (a CTA per SM), 0 (off) or a number of CTAs");
  MLARUN_CHECK(p.persistent == 0 || p.pipelined,
               "flash_prefill: persistent is set without pipelined (it is that kernel's)");
  MLARUN_CHECK(p.total_q >= 0 && p.total_q <= std::numeric_limits<int32_t>::max() && p.total_k >= 0 &&
                   p.total_k <= std::numeric_limits<int32_t>::max(),
               "flash_prefill: total_q = ", p.total_q, " and total_k = ", p.total_k, " must be in [0, 2^31)");

  const struct {
    const void* ptr;
    const char* name;
  } required[] = {{p.q, "q"},
                  {p.k, "k"},
                  {p.v, "v"},
                  {p.out, "out"},
                  {p.cu_seqlens_q, "cu_seqlens_q"},
                  {p.cu_seqlens_k, "cu_seqlens_k"},
                  {p.cu_seqlens_q_host, "cu_seqlens_q_host"},
                  {p.cu_seqlens_k_host, "cu_seqlens_k_host"}};
  for (const auto& r : required) MLARUN_CHECK(r.ptr != nullptr, "flash_prefill: ", r.name, " is null");
  check_aligned(p.q, 16, "q");
  check_aligned(p.k, 16, "k");
  check_aligned(p.v, 16, "v");
  check_aligned(p.out, 16, "out");
  check_aligned(p.cu_seqlens_q, 4, "cu_seqlens_q");
  check_aligned(p.cu_seqlens_k, 4, "cu_seqlens_k");
  if (p.lse != nullptr) check_aligned(p.lse, 4, "lse");
  if (p.causal_offset != nullptr) {
    MLARUN_CHECK(p.causal, "flash_prefill: causal_offset is given without a causal mask");
    check_aligned(p.causal_offset, 4, "causal_offset");
  }

  check_cu_seqlens(p.cu_seqlens_q_host, p.batch, p.total_q, "cu_seqlens_q", "total_q");
  check_cu_seqlens(p.cu_seqlens_k_host, p.batch, p.total_k, "cu_seqlens_k", "total_k");
}

void flash_prefill(const FlashPrefillParams& p, cudaStream_t stream) {
  check_flash_prefill(p);
  const int max_q = max_length(p.cu_seqlens_q_host, p.batch);
  if (max_q == 0) return;  // no query rows: nothing to write

  const bool bf16 = p.dtype == DType::BF16;
  const bool wgmma = p.wgmma && device_runs_wgmma();  // elsewhere the Hopper kernel would trap: stage A's
  const bool ws = p.warp_specialized, pipe = p.pipelined;
  LaunchFn launch = nullptr;
  if (p.head_dim_qk == 192 && p.head_dim_v == 128) launch = pick<192, 128>(bf16, wgmma, ws, pipe);
  if (p.head_dim_qk == 128 && p.head_dim_v == 128) launch = pick<128, 128>(bf16, wgmma, ws, pipe);
  if (p.head_dim_qk == 64 && p.head_dim_v == 64) launch = pick<64, 64>(bf16, wgmma, ws, pipe);
  if (p.head_dim_qk == 256 && p.head_dim_v == 256) launch = pick<256, 256>(bf16, wgmma, ws, pipe);
  MLARUN_CHECK(launch != nullptr, "flash_prefill: no kernel for head dims (qk ", p.head_dim_qk, ", v ",
               p.head_dim_v, ") although they passed the check");
  launch(p, max_q, stream);
}

}  // namespace mlarun::ops::cuda
