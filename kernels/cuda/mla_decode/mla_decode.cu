// Host side of the MLA decode: the checks at the API boundary (every message names the value it rejects, and no
// check needs the GPU, so bad calls fail alike on CI), the workspace arithmetic, the device status read-back
// and the three-stage call. The kernels live in {schedule,attend,combine}.cu here.
#include "kernels/cuda/mla_decode/mla_decode.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include <cuda_runtime_api.h>

#include "kernels/cuda/wgmma_device.h"
#include "runtime/cuda_check.h"
#include "runtime/error.h"

namespace mlarun::ops::cuda {
namespace {

constexpr const char* kWho = "mla_decode: ";

void check_range(const char* what, int64_t value, int64_t lo, int64_t hi) {
  MLARUN_CHECK(value >= lo && value <= hi, kWho, what, " ", value, " is outside ", lo, "..", hi);
}

void check_pointer(const char* what, const void* ptr, size_t alignment) {
  MLARUN_CHECK(ptr != nullptr, kWho, what, " is null");
  const auto addr = reinterpret_cast<uintptr_t>(ptr);
  MLARUN_CHECK(addr % alignment == 0, kWho, what, " = ", ptr, " is not ", alignment, "-byte aligned");
}

void check_sizes(int batch, int num_heads, int max_q_per_seq, int num_sms) {
  check_range("batch", batch, 1, mla::kMaxBatch);
  check_range("num_heads", num_heads, 1, mla::kMaxHeads);
  check_range("max_q_per_seq (query tokens per sequence)", max_q_per_seq, 1, mla::kMaxQueriesPerSeq);
  check_range("num_sms", num_sms, 1, mla::kMaxSms);
}

mla::WorkspaceLayout layout_of(const MlaDecodeParams& p) {
  return mla::workspace_layout(p.batch, p.num_heads, p.max_q_per_seq, p.num_sms, mla::attend_geometry_of(p));
}

// `p` with AttendKernel::Auto replaced by the kernel it stands for: the stages below pass on only concrete kernels.
MlaDecodeParams resolved(const MlaDecodeParams& p) {
  MlaDecodeParams r = p;
  r.attend = resolve_attend(p.attend, p.kv_format != MlaKvFormat::Bf16, p.num_heads, p.max_q_per_seq);
  return r;
}

}  // namespace

const char* mla_kv_format_name(MlaKvFormat f) {
  switch (f) {
    case MlaKvFormat::Bf16: return "bf16";
    case MlaKvFormat::Fp8: return "fp8";
    case MlaKvFormat::Int8: return "int8";
  }
  return "unknown";
}

int mla_kv_row_bytes(MlaKvFormat f) {
  return f == MlaKvFormat::Bf16 ? mla::kHeadDimQK * 2 : mla::kQuantRowBytes;
}

size_t mla_decode_workspace_bytes(int batch, int num_heads, int max_q_per_seq, int num_sms) {
  check_sizes(batch, num_heads, max_q_per_seq, num_sms);
  size_t most = 0;  // the largest over the kernels' geometries, so any MlaDecodeParams::attend fits
  for (mla::AttendKernel k : {mla::AttendKernel::Simt, mla::AttendKernel::TensorCores,
                              mla::AttendKernel::TensorCoresFitted, mla::AttendKernel::Wgmma,
                              mla::AttendKernel::WgmmaSplit, mla::AttendKernel::WgmmaWarpSpecialized,
                              mla::AttendKernel::WgmmaSeesaw}) {
    const mla::AttendGeometry g = mla::attend_geometry(k, false, num_heads, max_q_per_seq);
    most = std::max(most, mla::workspace_layout(batch, num_heads, max_q_per_seq, num_sms, g).total);
  }
  return most;
}

int mla_decode_num_parts(int num_heads, int max_q_per_seq, int num_sms, mla::AttendKernel attend) {
  check_sizes(1, num_heads, max_q_per_seq, num_sms);
  const mla::AttendKernel k = resolve_attend(attend, false, num_heads, max_q_per_seq);
  const mla::AttendGeometry g = mla::attend_geometry(k, false, num_heads, max_q_per_seq);
  return int(mla::num_parts(num_heads, max_q_per_seq, num_sms, g));
}

mla::AttendKernel resolve_attend(mla::AttendKernel attend, bool quantized, int num_heads, int max_q_per_seq) {
  if (attend != mla::AttendKernel::Auto) return attend;
  return mla::auto_attend(quantized, num_heads, max_q_per_seq, device_runs_wgmma());
}

namespace mla {
AttendGeometry attend_geometry_of(const MlaDecodeParams& p) {
  const bool quantized = p.kv_format != MlaKvFormat::Bf16;
  const AttendKernel k = resolve_attend(p.attend, quantized, p.num_heads, p.max_q_per_seq);
  return attend_geometry(k, quantized, p.num_heads, p.max_q_per_seq);
}
}  // namespace mla

void check_mla_decode(const MlaDecodeParams& p) {
  // Dimensions first: the pointer checks below mention sizes derived from them.
  MLARUN_CHECK(p.kv_lora_rank == mla::kKvLoraRank && p.rope_dim == mla::kRopeDim, kWho, "kv_lora_rank ",
               p.kv_lora_rank, " and rope_dim ", p.rope_dim, " are not supported: the kernel is built for ",
               mla::kKvLoraRank, " + ", mla::kRopeDim, " (d_qk ", mla::kHeadDimQK, ", d_v ", mla::kHeadDimV, ")");
  check_sizes(p.batch, p.num_heads, p.max_q_per_seq, p.num_sms);
  MLARUN_CHECK(p.kv_format == MlaKvFormat::Bf16 || p.kv_format == MlaKvFormat::Fp8 ||
                   p.kv_format == MlaKvFormat::Int8,
               kWho, "kv_format ", int32_t(p.kv_format), " is not bf16 (0), fp8 (1) or int8 (2)");
  MLARUN_CHECK(int32_t(p.attend) >= 0 && int32_t(p.attend) <= int32_t(mla::kLastAttendKernel), kWho, "attend ",
               int32_t(p.attend),
               " is not simt (0), tensor cores (1), fitted tensor cores (2), wgmma (3), wgmma split (4), auto (5), "
               "wgmma warp-specialized (6) or wgmma seesaw (7)");
  check_range("l2_prefetch_tiles", p.l2_prefetch_tiles, 0, 8);
  check_range("block_size", p.block_size, 1, mla::kMaxBlockSize);
  check_range("num_blocks", p.num_blocks, 1, std::numeric_limits<int32_t>::max());
  check_range("max_blocks_per_seq", p.max_blocks_per_seq, 1,
              mla::kMaxSeqLen / p.block_size);  // token and tile indices stay in int32 (config.h)
  MLARUN_CHECK(p.num_tokens >= p.batch && int64_t(p.num_tokens) <= int64_t(p.batch) * p.max_q_per_seq, kWho,
               "num_tokens ", p.num_tokens, " does not fit ", p.batch, " sequences of 1..", p.max_q_per_seq,
               " query tokens (", p.batch, "..", int64_t(p.batch) * p.max_q_per_seq, ")");
  MLARUN_CHECK(std::isfinite(p.softmax_scale) && p.softmax_scale > 0.0f, kWho, "softmax_scale ", p.softmax_scale,
               " must be positive and finite");

  check_pointer("q", p.q, 16);
  check_pointer("kv_cache", p.kv_cache, 16);
  check_pointer("block_tables", p.block_tables, 4);
  check_pointer("seq_lens", p.seq_lens, 4);
  check_pointer("cu_seqlens_q", p.cu_seqlens_q, 4);
  check_pointer("out", p.out, 16);
  check_pointer("lse", p.lse, 4);
  check_pointer("workspace", p.workspace, 256);
  const size_t need = layout_of(p).total;
  MLARUN_CHECK(p.workspace_bytes >= need, kWho, "workspace_bytes ", p.workspace_bytes, " is less than the ", need,
               " bytes needed for batch ", p.batch, ", ", p.num_heads, " heads, max_q_per_seq ", p.max_q_per_seq,
               " and ", p.num_sms, " SMs (mla_decode_workspace_bytes)");
}

void mla_decode_schedule(const MlaDecodeParams& p_asked, cudaStream_t stream) {
  check_mla_decode(p_asked);
  const MlaDecodeParams p = resolved(p_asked);
  mla::launch_mla_decode_schedule(p, layout_of(p), stream);
}

void mla_decode_attend(const MlaDecodeParams& p_asked, cudaStream_t stream) {
  check_mla_decode(p_asked);
  const MlaDecodeParams p = resolved(p_asked);
  mla::launch_mla_decode_attend(p, layout_of(p), stream);
}

void mla_decode_combine(const MlaDecodeParams& p_asked, cudaStream_t stream) {
  check_mla_decode(p_asked);
  const MlaDecodeParams p = resolved(p_asked);
  mla::launch_mla_decode_combine(p, layout_of(p), stream);
}

void mla_decode(const MlaDecodeParams& p_asked, cudaStream_t stream) {
  check_mla_decode(p_asked);
  const MlaDecodeParams p = resolved(p_asked);
  const mla::WorkspaceLayout w = layout_of(p);
  mla::launch_mla_decode_schedule(p, w, stream);
  mla::launch_mla_decode_attend(p, w, stream);
  mla::launch_mla_decode_combine(p, w, stream);
}

MlaDecodeStatus mla_decode_status(const MlaDecodeParams& p, cudaStream_t stream) {
  check_mla_decode(p);
  int32_t raw[4] = {0, 0, 0, 0};
  const auto* src = static_cast<const unsigned char*>(p.workspace) + layout_of(p).status;
  MLARUN_CUDA_CHECK(cudaMemcpyAsync(raw, src, sizeof(raw), cudaMemcpyDeviceToHost, stream));
  MLARUN_CUDA_CHECK(cudaStreamSynchronize(stream));
  MlaDecodeStatus s;
  s.code = raw[0];
  s.sequence = raw[0] == MlaDecodeStatus::kOk ? -1 : raw[1];
  s.value = raw[2];
  return s;
}

std::string MlaDecodeStatus::message() const {
  using ::mlarun::detail::concat;
  switch (code) {
    case kOk: return "ok";
    case kBadCuSeqlensQ:
      return concat(kWho, "cu_seqlens_q around sequence ", sequence, " (value ", value,
                    ") does not start at 0, end at num_tokens and stay in range");
    case kBadQueryCount:
      return concat(kWho, "sequence ", sequence, " has ", value, " query tokens, outside 1..max_q_per_seq");
    case kBadSeqLen:
      return concat(kWho, "sequence ", sequence, " has seq_len ", value,
                    ", outside 0..max_blocks_per_seq * block_size");
    case kBadBlockId: return concat(kWho, "sequence ", sequence, " reads block ", value, ", outside the pool");
    case kTooManyPieces: return concat(kWho, "scheduler ran out of pieces at sequence ", sequence, " (a bug)");
    default: return concat(kWho, "unknown device status ", code);
  }
}

}  // namespace mlarun::ops::cuda
