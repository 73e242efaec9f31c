// Absorbed MLA decode over the paged latent cache: the kernel MLA exists for. Every query row is
// q = [q_nope . W_UK | q_pe] (576 values); every cached token is one 576-value row [c (512) | k_pe (64)] shared
// by all heads, so one pass over a sequence's latents serves all of its heads and query tokens:
//   out[t, h] = sum_j softmax_j(scale * q[t, h] . row_j) * row_j[:512],  lse[t, h] = log sum_j exp(...).
// Three stages on one stream (mla_decode runs them in order): a device-side scheduler cuts every sequence's
// cache into chunks balanced by work over the SMs (graph-safe: it reads seq_lens on the device), the attend
// kernel writes one partial (o, lse) per chunk, and the combine kernel merges the partials by log-sum-exp.
// Every argument is checked here, before any CUDA call, with messages that name the offending value; so a bad
// call fails the same way on a machine without a GPU. Plain C++ header: usable from .cpp files.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/cuda/cuda_common.h"  // current_device_sm_count, which MlaDecodeParams::num_sms comes from
#include "kernels/cuda/mla_decode/config.h"

namespace mlarun::ops::cuda {

// How the cache stores a row: bf16 values (1152 bytes), or the quantized 656-byte rows of kernels/kv_quant.h
// (512 codes, 4 f32 tile scales, 64 bf16 k_pe) with e4m3 or int8 codes, dequantized inside the attend kernel.
enum class MlaKvFormat : int32_t { Bf16 = 0, Fp8 = 1, Int8 = 2 };
const char* mla_kv_format_name(MlaKvFormat f);
// Bytes of one cached row in format `f` (1152 or 656).
int mla_kv_row_bytes(MlaKvFormat f);

struct MlaDecodeParams {
  // Device memory. bf16 tensors are raw 16-bit patterns; q, kv_cache and out are 16-byte aligned.
  const uint16_t* q = nullptr;            // bf16 [num_tokens, num_heads, kv_lora_rank + rope_dim]
  const void* kv_cache = nullptr;         // [num_blocks, block_size] rows of mla_kv_row_bytes(kv_format) bytes
  MlaKvFormat kv_format = MlaKvFormat::Bf16;
  const int32_t* block_tables = nullptr;  // [batch, max_blocks_per_seq]; token j of b sits in block
                                          // block_tables[b][j / block_size] at offset j % block_size
  const int32_t* seq_lens = nullptr;      // [batch]: cached tokens of each sequence, its new tokens included
  const int32_t* cu_seqlens_q = nullptr;  // [batch + 1]: sequence b owns query rows [cu[b], cu[b+1]),
                                          // cu[0] = 0, cu[batch] = num_tokens, 1..max_q_per_seq rows each
  uint16_t* out = nullptr;                // bf16 [num_tokens, num_heads, kv_lora_rank]: o_lat
  float* lse = nullptr;                   // f32 [num_tokens, num_heads]: natural-log log-sum-exp of the scores
  void* workspace = nullptr;              // 256-byte aligned, mla_decode_workspace_bytes(...) bytes at least
  size_t workspace_bytes = 0;

  int num_tokens = 0;          // query rows in q/out/lse
  int batch = 0;               // sequences, 1..8192
  int num_heads = 0;           // 1..128
  int kv_lora_rank = 0;        // must be 512
  int rope_dim = 0;            // must be 64
  int num_blocks = 0;          // blocks in the pool
  int block_size = 0;          // 1..256
  int max_blocks_per_seq = 0;  // row length of block_tables; max_blocks_per_seq * block_size <= 2^30
  int max_q_per_seq = 0;       // 1..4: bound on query rows per sequence (sizes the grid and the workspace)
  int num_sms = 0;             // SMs to balance over (current_device_sm_count()); sizes the workspace
  float softmax_scale = 0.0f;  // scores = q . row * softmax_scale (DeepSeek: 1/sqrt(192) times mscale^2)
  // Which attend kernel (config.h AttendKernel): tensor cores with 32-row tiles (attend_mma.cu), SIMT (attend.cu),
  // tensor cores with the M tile fitted to the rows (attend_mma_fitted.cu), or Hopper's wgmma over 64-row tiles
  // (attend_wgmma.cu, bf16 rows, sm_90a; every warpgroup scoring all tokens, or half of them each; or with a
  // loading warpgroup, attend_wgmma_ws.cu and _seesaw.cu; quantized rows asked of these run the 32-row kernel),
  // or, by default, Auto: the one measured fastest for the call's rows on this device (config.h auto_attend).
  // Every one fits mla_decode_workspace_bytes.
  mla::AttendKernel attend = mla::kDefaultAttend;
  // How many of the scheduler's 32-token tiles past the ones the ring is loading the fitted and wgmma kernels ask
  // L2 to fetch ahead (one bulk prefetch per cached row, no shared memory; 0..8, 0: none). The ring holds one or
  // two tiles in flight per CTA, fewer bytes than DRAM's latency needs at the TP 8 shape (NOTES.md); off (0.68-0.95x
  // on an H200). The warp-specialized wgmma kernels (attend_wgmma_ws.cu, _seesaw.cu) ignore it.
  int l2_prefetch_tiles = 0;
  // Quantized rows in the fitted kernel (attend_mma_fitted.cu, which Auto picks for them): each lane reads its
  // fragments' codes from the ring as f16 (quant_fragments.cuh) instead of the kernel widening every tile's codes to
  // bf16 in shared memory behind one more barrier; frees the room for a ring of four tiles at 16 rows. On by
  // default (config.h kCodesInRegisters: 1.21x the widening at the TP 8 shape on an H200); ignored by the other
  // kernels.
  bool codes_in_registers = mla::kCodesInRegisters;
};
// Causality: query i (0-based) of a sequence with L cached tokens and n query rows sees tokens 0 .. L - n + i
// (its own token and everything before it). A query that sees no token (L = 0, or L < n for its first rows)
// gets out = 0 and lse = -inf. Cache slots past seq_lens and block-table entries past ceil(L / block_size) are
// never read (they may hold NaN or garbage).

// Checks every field (throws mlarun::Error naming the value) without touching CUDA.
void check_mla_decode(const MlaDecodeParams& p);

// Workspace bytes for these sizes, enough for every attend kernel (pure arithmetic; checks its arguments like
// check_mla_decode).
size_t mla_decode_workspace_bytes(int batch, int num_heads, int max_q_per_seq, int num_sms);
// CTAs along the KV length (the grid is parts x ceil(max_q * H / rows per CTA)) for the attend kernel over bf16
// rows (quantized rows take the 32-row geometry of AttendKernel::TensorCores).
int mla_decode_num_parts(int num_heads, int max_q_per_seq, int num_sms,
                         mla::AttendKernel attend = mla::kDefaultAttend);
// The kernel that serves a call asking for `attend`: itself, or for AttendKernel::Auto config.h auto_attend on the
// current device (a cached device attribute query: kernels/cuda/wgmma_device.h; graph-capture safe).
mla::AttendKernel resolve_attend(mla::AttendKernel attend, bool quantized, int num_heads, int max_q_per_seq);

// Checks, then runs schedule, attend and combine on `stream`. Asynchronous: launch errors throw
// mlarun::Error; errors during execution surface at the next synchronising call. Values the host cannot see
// (seq_lens, cu_seqlens_q, block ids) are checked on the device: see mla_decode_status.
void mla_decode(const MlaDecodeParams& p, cudaStream_t stream);

// The three stages alone, each checking `p`: the workbench times them apart, and a caller may build the
// schedule once per step and reuse it for every layer (it depends only on seq_lens, cu_seqlens_q, batch,
// num_tokens, num_heads, max_q_per_seq, num_sms, block_size and max_blocks_per_seq, and lives in the workspace).
void mla_decode_schedule(const MlaDecodeParams& p, cudaStream_t stream);
void mla_decode_attend(const MlaDecodeParams& p, cudaStream_t stream);
void mla_decode_combine(const MlaDecodeParams& p, cudaStream_t stream);

// First device-side error of the last schedule/attend (the scheduler clears it). A sequence found invalid on
// the device gets no work and NaN in every one of its output rows; cu_seqlens_q that cannot place the rows at
// all (not starting at 0, not ending at num_tokens, or going down) makes every output row NaN; a block id
// outside the pool reads as a NaN row.
struct MlaDecodeStatus {
  enum Code : int32_t {
    kOk = 0,
    kBadCuSeqlensQ = 1,  // cu_seqlens_q[0] != 0, cu_seqlens_q[batch] != num_tokens, or out of range
    kBadQueryCount = 2,  // query rows of a sequence outside 1..max_q_per_seq
    kBadSeqLen = 3,      // seq_lens[b] < 0 or > max_blocks_per_seq * block_size
    kBadBlockId = 4,     // a block id the kernel needed is outside 0..num_blocks-1
    kTooManyPieces = 5,  // scheduler invariant broken (a bug, never expected)
  };
  int32_t code = kOk;
  int32_t sequence = -1;  // the sequence concerned
  int32_t value = 0;      // the offending value (rows, length or block id)
  bool ok() const { return code == kOk; }
  std::string message() const;
};
// Copies the status back; synchronises `stream`.
MlaDecodeStatus mla_decode_status(const MlaDecodeParams& p, cudaStream_t stream);

namespace mla {
// One kernel each, in schedule.cu, attend.cu and combine.cu of this folder; `p` is checked.
void launch_mla_decode_schedule(const MlaDecodeParams& p, const mla::WorkspaceLayout& w, cudaStream_t stream);
void launch_mla_decode_attend(const MlaDecodeParams& p, const mla::WorkspaceLayout& w, cudaStream_t stream);
// The attend kernels on tensor cores (attend_mma.cu, attend_mma_fitted.cu); launch_mla_decode_attend calls the
// one p asks for.
void launch_mla_decode_attend_mma(const MlaDecodeParams& p, const mla::WorkspaceLayout& w, cudaStream_t stream);
void launch_mla_decode_attend_mma_fitted(const MlaDecodeParams& p, const mla::WorkspaceLayout& w,
                                         cudaStream_t stream);
// The Hopper attend kernels (sm_90a): wgmma over 64-row tiles (attend_wgmma.cu), and with a loading warpgroup
// (attend_wgmma_ws.cu; attend_wgmma_seesaw.cu).
void launch_mla_decode_attend_wgmma(const MlaDecodeParams& p, const mla::WorkspaceLayout& w, cudaStream_t stream);
void launch_mla_decode_attend_wgmma_ws(const MlaDecodeParams& p, const mla::WorkspaceLayout& w, cudaStream_t stream);
void launch_mla_decode_attend_wgmma_seesaw(const MlaDecodeParams& p, const mla::WorkspaceLayout& w,
                                           cudaStream_t stream);
// CTAs of the fitted kernel with `rows_per_cta` (16, 32 or 64), over bf16 or quantized rows (their codes widened
// in shared memory or read into registers), that fit on one SM of the current device (the geometry assumes
// config.h fit_ctas_per_sm; the workbench and a GPU test check it).
int fitted_attend_resident_ctas(int rows_per_cta, bool quantized = false, bool codes_in_registers = false);
// The grid geometry of the attend kernel that serves `p` (config.h attend_geometry).
mla::AttendGeometry attend_geometry_of(const MlaDecodeParams& p);
void launch_mla_decode_combine(const MlaDecodeParams& p, const mla::WorkspaceLayout& w, cudaStream_t stream);
}  // namespace mla

}  // namespace mlarun::ops::cuda
