// Flash prefill attention: the forward pass of attention over a variable-length batch (cu_seqlens), in bf16 or
// fp16 with fp32 softmax and accumulation, writing the output and the fp32 log-sum-exp. It is the kernel behind
// MLA's naive prefill (d_qk 192 = 128 nope + 64 rope, d_v 128) and the MHA/GQA/MQA baselines (64/128/256).
// Every argument is checked here, before any CUDA call, with messages that name the offending value; so a
// bad call fails the same way on a machine without a GPU. Plain C++ header: usable from .cpp files.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cuda/flash_prefill/config.h"
#include "runtime/dtype.h"

namespace mlarun::ops::cuda {

struct FlashPrefillParams {
  // Device tensors, contiguous, 16-byte aligned, all of `dtype` (BF16 or F16) unless noted.
  const void* q = nullptr;  // [total_q, num_heads_q, head_dim_qk]
  const void* k = nullptr;  // [total_k, num_heads_kv, head_dim_qk]
  const void* v = nullptr;  // [total_k, num_heads_kv, head_dim_v]
  void* out = nullptr;      // [total_q, num_heads_q, head_dim_v]
  float* lse = nullptr;     // [total_q, num_heads_q] fp32, natural log; optional (nullptr: not written)

  // Sequence b owns query rows [cu_seqlens_q[b], cu_seqlens_q[b+1]) and key rows [cu_seqlens_k[b], ...).
  const int32_t* cu_seqlens_q = nullptr;       // device, int32 [batch + 1], read by the kernel
  const int32_t* cu_seqlens_k = nullptr;       // device, int32 [batch + 1]
  const int32_t* cu_seqlens_q_host = nullptr;  // host copy of the same values: validation and grid size
  const int32_t* cu_seqlens_k_host = nullptr;  // host copy
  int batch = 0;
  int64_t total_q = 0;  // rows allocated in q/out/lse (>= cu_seqlens_q[batch])
  int64_t total_k = 0;  // rows allocated in k/v (>= cu_seqlens_k[batch])

  int num_heads_q = 0;
  int num_heads_kv = 0;  // num_heads_q % num_heads_kv == 0; q head h reads kv head h / (num_heads_q / num_heads_kv)
  int head_dim_qk = 0;   // supported (qk, v): (192, 128), (128, 128), (64, 64), (256, 256)
  int head_dim_v = 0;
  DType dtype = DType::BF16;

  float softmax_scale = 0.0f;  // scores = q.k * softmax_scale (DeepSeek: 1/sqrt(192) times YaRN's mscale^2)
  // Causal masks are bottom-right aligned: with off = len_k - len_q, query i sees keys j <= off + i (the
  // chunked-prefill convention of ops::attention's q_offset). A row that sees no key (len_k < len_q) writes
  // zeros and lse = -inf, whatever k and v hold. NaN propagates as in softmax(S) @ V: a NaN in a q row, or in
  // the k row of a key a row sees, makes that row's out and lse NaN; a NaN in a v row makes that column NaN in
  // the rows that see it (and may reach rows of the same 64/128-key tile that do not: 0 x NaN in the MMA).
  bool causal = true;
  // Per-sequence causal offsets instead of the bottom-right one: query i of sequence b sees keys
  // j <= causal_offset[b] + i (any value: a negative one leaves rows that see nothing, one past len_k - 1 lets every
  // row see all keys). Device int32 [batch], causal only; nullptr: off = len_k - len_q. The pieces of a chunked
  // prefill over a long prefix attend with it (ops::varlen_attention's OffsetVarlen form).
  const int32_t* causal_offset = nullptr;
  // Sliding window: query i also needs j >= off + i - window_left (window_left + 1 keys including its own when
  // causal); -1 = no window. Without causal the right side stays unbounded.
  int window_left = -1;
  // Launch the query tiles longest first over all sequences and heads (tile_order.cuh: a device-side counting
  // sort by key blocks) instead of m-blocks x heads x sequences: 1 on, 0 off, -1 (the default) the kernel's own
  // default, which is what measured faster on the varlen workbench batch (config.h: kLongestFirst for stage A's
  // kernel, on; kLongestFirstWgmma for the wgmma one, off; kPipelinedVarlenOrder, 4, for the pipelined one where
  // the query lengths differ, else 0). 2: longest first within each head, one head after
  // another (every sequence's keys of one head stay in L2 together, and no CTA is launched for an empty m-block).
  // 3: the plain grid's order (sequence by sequence, the heaviest causal m-block first) from a list without the
  // empty m-blocks, one head after another; 4: the same list with every head of a tile launched together. The
  // workbench's varlen rows time each against 0.
  int longest_first = -1;
  // The Hopper kernel (kernel_wgmma.cuh: wgmma) instead of stage A's mma.sync one, where the device runs it
  // (kernels/cuda/wgmma_device.h: an sm_90a build on a compute capability 9.0 device; elsewhere stage A's kernel
  // serves the call). On by default (config.h kWgmmaPrefill).
  bool wgmma = flash::kWgmmaPrefill;
  // With `wgmma`: its warp-specialized variant (kernel_wgmma_ws.cuh: a loading warpgroup and a two-stage K/V ring on
  // mbarriers), for d_v up to 128 (256/256 keeps the wgmma kernel). Off by default (config.h
  // kWarpSpecializedPrefill): on an H200 it ran 0.90-0.97x the wgmma kernel.
  bool warp_specialized = flash::kWarpSpecializedPrefill;
  // With `wgmma`: its pipelined variant (kernel_wgmma_pipelined.cuh: two warpgroups that load their own ring of K/V
  // tiles and keep the next tile's scores and this one's P V in flight together), for d_v up to 128 (256/256 keeps
  // the wgmma kernel). Off here (config.h kPipelinedPrefill); the model's default choice takes it, with turns, for
  // MLA's 192/128 (cuda_ops.h resolve_flash_prefill_kernel). Not together with warp_specialized.
  bool pipelined = flash::kPipelinedPrefill;
  // With `pipelined`: its two warpgroups take turns at issuing their MMAs (FlashAttention-3's ping-pong: one's
  // softmax under the other's MMAs). Off here (config.h kPingPongPrefill), on in the model's default choice.
  bool pingpong = flash::kPingPongPrefill;
  // With `pipelined`: CTAs that each walk many of the launch's tiles, each tile's first loads going out under the
  // tile before it (kernel_wgmma_pipelined.cuh): -1 one CTA per SM, N > 0 at most N CTAs (the tests use few, so
  // that every CTA takes many tiles), 0 off: a CTA per tile. Default config.h kPersistentPrefill (0).
  int persistent = flash::kPersistentPrefill;
};

// Checks every field (throws mlarun::Error naming the value) without touching CUDA.
void check_flash_prefill(const FlashPrefillParams& p);

// Checks, then launches on `stream`. Asynchronous: errors of the launch itself are reported (mlarun::Error),
// errors during execution surface at the next synchronising call.
void flash_prefill(const FlashPrefillParams& p, cudaStream_t stream);

namespace flash {
// One instantiation per (d_qk, d_v, dtype) in instantiations/flash_prefill_<qk>_<v>_<dtype>.cu; `p` is already checked.
template <int kHeadDimQK, int kHeadDimV, DType kDType>
void launch_flash_prefill(const FlashPrefillParams& p, int max_seqlen_q, cudaStream_t stream);
// The same for the Hopper kernel and its warp-specialized and pipelined variants, in
// instantiations/flash_prefill_wgmma_<qk>_<v>_<dtype>.cu.
template <int kHeadDimQK, int kHeadDimV, DType kDType>
void launch_flash_prefill_wgmma(const FlashPrefillParams& p, int max_seqlen_q, cudaStream_t stream);
template <int kHeadDimQK, int kHeadDimV, DType kDType>
void launch_flash_prefill_wgmma_ws(const FlashPrefillParams& p, int max_seqlen_q, cudaStream_t stream);
template <int kHeadDimQK, int kHeadDimV, DType kDType>
void launch_flash_prefill_wgmma_pipelined(const FlashPrefillParams& p, int max_seqlen_q, cudaStream_t stream);
}  // namespace flash

}  // namespace mlarun::ops::cuda
