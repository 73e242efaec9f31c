// The model's bridge to the two large attention kernels: flash_prefill (kernels/cuda/flash_prefill/) for MLA's
// naive prefill over a step's varlen layout, and mla_decode (kernels/cuda/mla_decode/) for the absorbed decode
// over the paged latent cache. Both read the step's device tensors (runtime/step_tensors.h) as they are: no
// upload here. Whether a shape is in a kernel's contract is decided here (flash_prefill_fits, mla_decode_unfit);
// outside it the ops layer (kernels/ops_step.cpp) runs the generic kernels instead. An absorbed prefill chunk of
// more than 4 rows reaches mla_decode through the step's decode view (StepPart::decode_view_*).
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string>

#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/flash_prefill/flash_prefill.h"
#include "kernels/cuda/mla_decode/mla_decode.h"
#include "runtime/error.h"

namespace mlarun::ops::cuda {

bool flash_prefill_fits(int64_t d_qk, int64_t d_v, DType dtype) {
  if (dtype != DType::BF16 && dtype != DType::F16) return false;
  return (d_qk == 192 && d_v == 128) || (d_qk == 128 && d_v == 128) || (d_qk == 64 && d_v == 64) ||
         (d_qk == 256 && d_v == 256);
}

int32_t parse_mla_decode_kernel(const char* value) {
  const std::string v = value == nullptr ? "" : value;
  if (v.empty()) return int32_t(mla::kDefaultAttend);
  const char* names[] = {"simt",        "mma",  "fitted",   "wgmma",
                         "wgmma-split", "auto", "wgmma-ws", "wgmma-seesaw"};  // AttendKernel 0..7
  static_assert(sizeof(names) / sizeof(names[0]) == int32_t(mla::kLastAttendKernel) + 1, "a name per kernel");
  for (int32_t i = 0; i <= int32_t(mla::kLastAttendKernel); ++i)
    if (v == names[i]) return i;
  fail("MLARUN_MLA_DECODE_KERNEL = '", v,
       "' is not one of simt, mma, fitted, wgmma, wgmma-split, wgmma-ws, wgmma-seesaw, auto (unset: auto)");
}

int32_t parse_flash_prefill_kernel(const char* value) {
  const std::string v = value == nullptr ? "" : value;
  if (v.empty()) return kFlashPrefillAuto;
  const char* names[] = {"mma",           "wgmma",           "wgmma-ws", "wgmma-pipelined", "wgmma-pingpong",
                         "wgmma-persistent", "wgmma-persistent-pingpong", "auto"};  // 0..7: cuda_ops.h
  for (int32_t i = 0; i <= kFlashPrefillAuto; ++i)
    if (v == names[i]) return i;
  fail("MLARUN_FLASH_PREFILL_KERNEL = '", v,
       "' is not one of mma, wgmma, wgmma-ws, wgmma-pipelined, wgmma-pingpong, wgmma-persistent, ",
       "wgmma-persistent-pingpong, auto (unset: auto)");
}

int32_t resolve_flash_prefill_kernel(int32_t kernel, int64_t d_qk, int64_t d_v) {
  if (kernel != kFlashPrefillAuto) return kernel;
  if (!flash::kWgmmaPrefill) return 0;
  return flash::pipelined_prefill_by_default(int(d_qk), int(d_v)) ? 4 : 1;  // wgmma-pingpong, else wgmma
}

namespace {
std::atomic<int32_t> g_mla_decode_kernel{-1}, g_flash_prefill_kernel{-1};  // -1: the environment's
}  // namespace

int32_t mla_decode_kernel() {
  const int32_t set = g_mla_decode_kernel.load();
  if (set >= 0) return set;
  static const int32_t from_env = parse_mla_decode_kernel(std::getenv("MLARUN_MLA_DECODE_KERNEL"));
  return from_env;
}

int32_t flash_prefill_kernel() {
  const int32_t set = g_flash_prefill_kernel.load();
  if (set >= 0) return set;
  static const int32_t from_env = parse_flash_prefill_kernel(std::getenv("MLARUN_FLASH_PREFILL_KERNEL"));
  return from_env;
}

void set_mla_decode_kernel(int32_t kernel) {
  MLARUN_CHECK(kernel >= -1 && kernel <= int32_t(mla::kLastAttendKernel), "set_mla_decode_kernel: ", kernel,
               " is not -1 (the environment's) or an AttendKernel 0..", int32_t(mla::kLastAttendKernel));
  g_mla_decode_kernel.store(kernel);
}

void set_flash_prefill_kernel(int32_t kernel) {
  MLARUN_CHECK(kernel >= -1 && kernel <= kFlashPrefillAuto, "set_flash_prefill_kernel: ", kernel,
               " is not -1 (the environment's), 0 (mma), 1 (wgmma), 2 (wgmma-ws), 3 (wgmma-pipelined), 4 ",
               "(wgmma-pingpong), 5 (wgmma-persistent), 6 (wgmma-persistent-pingpong) or 7 (auto)");
  g_flash_prefill_kernel.store(kernel);
}

namespace {
// The params every flash_varlen call shares: q, k, v, out and the head shapes.
FlashPrefillParams flash_params(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, float scale) {
  FlashPrefillParams p;
  p.q = q.raw();
  p.k = k.raw();
  p.v = v.raw();
  p.out = out.raw();
  p.total_q = q.dim(0);
  p.total_k = k.dim(0);
  p.num_heads_q = int(q.dim(1));
  p.num_heads_kv = int(k.dim(1));
  p.head_dim_qk = int(q.dim(2));
  p.head_dim_v = int(v.dim(2));
  p.dtype = q.dtype();
  p.softmax_scale = scale;
  p.causal = true;
  const int32_t kernel = resolve_flash_prefill_kernel(flash_prefill_kernel(), p.head_dim_qk, p.head_dim_v);
  p.wgmma = kernel >= 1;
  p.warp_specialized = kernel == 2;
  p.pipelined = kernel >= 3;
  p.pingpong = kernel == 4 || kernel == 6;
  p.persistent = kernel >= 5 ? -1 : 0;
  return p;
}
}  // namespace

Tensor flash_varlen(const Tensor& q, const Tensor& k, const Tensor& v, float scale, const OffsetVarlen& layout,
                    Tensor& lse) {
  Tensor out = Tensor::empty({q.dim(0), q.dim(1), v.dim(2)}, q.dtype(), Device::CUDA);
  lse = Tensor::empty({q.dim(0), q.dim(1)}, DType::F32, Device::CUDA);
  if (q.dim(0) == 0) return out;
  FlashPrefillParams p = flash_params(q, k, v, out, scale);
  p.lse = lse.data<float>();
  p.cu_seqlens_q = layout.cu_seqlens_q.data<int32_t>();
  p.cu_seqlens_k = layout.cu_seqlens_k.data<int32_t>();
  p.cu_seqlens_q_host = layout.cu_seqlens_q_host.data();
  p.cu_seqlens_k_host = layout.cu_seqlens_k_host.data();
  p.causal_offset = layout.causal_offset.data<int32_t>();
  p.batch = int(layout.num_seqs());
  flash_prefill(p, stream());
  return out;
}

Tensor flash_varlen(const Tensor& q, const Tensor& k, const Tensor& v, float scale, const StepPart& part) {
  Tensor out = Tensor::empty({q.dim(0), q.dim(1), v.dim(2)}, q.dtype(), Device::CUDA);
  if (part.num_tokens == 0) return out;
  FlashPrefillParams p = flash_params(q, k, v, out, scale);
  p.cu_seqlens_q = part.cu_seqlens_q.data<int32_t>();
  p.cu_seqlens_k = part.cu_seqlens_k.data<int32_t>();
  p.cu_seqlens_q_host = part.cu_seqlens_q_host.data();
  p.cu_seqlens_k_host = part.cu_seqlens_k_host.data();
  p.batch = int(part.num_seqs());
  flash_prefill(p, stream());
  return out;
}

namespace {
MlaKvFormat mla_format_of(KvQuant cache) {
  return cache == KvQuant::Fp8 ? MlaKvFormat::Fp8 : cache == KvQuant::Int8 ? MlaKvFormat::Int8 : MlaKvFormat::Bf16;
}

// The sequences mla_decode sees for a part: its own, or its decode view (StepPart::decode_view_*: sequences of more
// than kMaxQueriesPerSeq rows cut into pseudo-sequences that keep every row's causal window and the row order).
struct DecodeRows {
  const Tensor &block_tables, &seq_lens, &cu_seqlens_q;
  int64_t num_seqs, max_q;
};
static_assert(StepPart::kDecodeViewMaxQ == mla::kMaxQueriesPerSeq, "the view cuts sequences to what mla_decode takes");
DecodeRows decode_rows(const StepPart& part) {
  if (part.decode_view_seqs > 0)
    return {part.decode_view_tables, part.decode_view_seq_lens, part.decode_view_cu_q, part.decode_view_seqs,
            std::min(part.max_q, StepPart::kDecodeViewMaxQ)};
  return {part.block_tables, part.seq_lens, part.cu_seqlens_q, part.num_seqs(), part.max_q};
}
}  // namespace

std::string mla_decode_unfit(const StepPart& part, DType dtype, KvQuant cache, int64_t heads, int64_t kv_lora_rank,
                             int64_t rope_dim, int64_t block_size) {
  if (dtype != DType::BF16) return std::string("dtype ") + dtype_name(dtype) + " (mla_decode takes bf16)";
  if (cache == KvQuant::Bf16) return "a bf16 cache under other activations (mla_decode reads the activations' bf16)";
  if (kv_lora_rank != 512) return "kv_lora_rank " + std::to_string(kv_lora_rank) + " (mla_decode takes 512)";
  if (rope_dim != 64) return "qk_rope_head_dim " + std::to_string(rope_dim) + " (mla_decode takes 64)";
  if (heads < 1 || heads > 128) return std::to_string(heads) + " heads per rank (mla_decode takes 1..128)";
  const DecodeRows rows = decode_rows(part);
  if (rows.max_q < 1 || rows.max_q > mla::kMaxQueriesPerSeq)
    return std::to_string(rows.max_q) + " query rows in one sequence (mla_decode takes 1..4)";
  if (block_size < 1 || block_size > 256) return "block_size " + std::to_string(block_size) + " (mla_decode: 1..256)";
  if (rows.num_seqs < 1 || rows.num_seqs > mla::kMaxBatch)
    return std::to_string(rows.num_seqs) + " sequences (mla_decode takes 1..8192" +
           (part.decode_view_seqs > 0 ? ", chunks counted in pieces of 4 rows)" : ")");
  return "";
}

int mla_decode_sm_count() { return std::clamp(current_device_sm_count(), 1, int(mla::kMaxSms)); }

size_t mla_decode_workspace(const StepPart& part, int64_t heads, int num_sms) {
  const DecodeRows rows = decode_rows(part);
  return mla_decode_workspace_bytes(int(rows.num_seqs), int(heads), int(rows.max_q), num_sms);
}

Tensor mla_decode_run(const Tensor& q, const Tensor& pool, KvQuant cache, const StepPart& part,
                      const Tensor& workspace, int num_sms, int32_t attend, bool schedule, int64_t kv_lora_rank,
                      float scale, Tensor* lse_out) {
  const int64_t T = q.dim(0), H = q.dim(1);
  Tensor out = Tensor::empty({T, H, kv_lora_rank}, q.dtype(), Device::CUDA);
  Tensor lse = Tensor::empty({T, H}, DType::F32, Device::CUDA);
  const MlaKvFormat format = mla_format_of(cache);
  MLARUN_CHECK(pool.ndim() == 3 && pool.dim(2) * int64_t(dtype_size(pool.dtype())) == mla_kv_row_bytes(format),
               "mla_decode: a pool of ", pool.describe(), " does not hold ", mla_kv_format_name(format), " rows of ",
               mla_kv_row_bytes(format), " bytes");
  const DecodeRows rows = decode_rows(part);
  MlaDecodeParams p;
  p.q = q.data<uint16_t>();
  p.kv_cache = pool.raw();
  p.kv_format = format;
  p.block_tables = rows.block_tables.data<int32_t>();
  p.seq_lens = rows.seq_lens.data<int32_t>();
  p.cu_seqlens_q = rows.cu_seqlens_q.data<int32_t>();
  p.out = out.data<uint16_t>();
  p.lse = lse.data<float>();
  p.workspace = workspace.raw();
  p.workspace_bytes = workspace.nbytes();
  p.num_tokens = int(T);
  p.batch = int(rows.num_seqs);
  p.num_heads = int(H);
  p.kv_lora_rank = int(kv_lora_rank);
  p.rope_dim = int(q.dim(2) - kv_lora_rank);  // q's width: the pool's may be a byte count
  p.num_blocks = int(pool.dim(0));
  p.block_size = int(pool.dim(1));
  p.max_blocks_per_seq = int(part.max_blocks);
  p.max_q_per_seq = int(rows.max_q);
  p.num_sms = num_sms;
  p.softmax_scale = scale;
  p.attend = mla::AttendKernel(attend);
  if (schedule) mla_decode_schedule(p, stream());
  mla_decode_attend(p, stream());
  mla_decode_combine(p, stream());
  if (lse_out) *lse_out = lse;
  return out;
}

}  // namespace mlarun::ops::cuda
