// Shape checks and device dispatch for attention and the paged cache: dense causal attention (prefill, the
// baselines), cache writes and gathers, absorbed MLA attention over the paged latent cache (one sequence or a
// batch of them). The CPU backend runs kernels/cpu/{simple_attention,paged_cache}.cpp (the reference), CUDA its
// twins kernels/cuda/{simple_attention,paged_cache}.cu.
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/op_checks.h"
#include "kernels/ops.h"
#include "runtime/error.h"

namespace mlarun::ops {

using detail::device_of;
using detail::require_f32;

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale, int64_t q_offset, Tensor* lse) {
  const Device dev = device_of("attention", {{"q", q}, {"k", k}, {"v", v}});
  MLARUN_CHECK(q.ndim() == 3 && k.ndim() == 3 && v.ndim() == 3, "attention: q, k, v must be [tokens, heads, dim]");
  const int64_t Tq = q.dim(0), H = q.dim(1), D = q.dim(2), Tk = k.dim(0), Hkv = k.dim(1);
  MLARUN_CHECK(k.dim(2) == D && v.dim(0) == Tk && v.dim(1) == Hkv && Hkv > 0 && H % Hkv == 0,
               "attention: q ", q.describe(), ", k ", k.describe(), ", v ", v.describe(), " do not fit together");
  MLARUN_CHECK(q_offset >= 0 && q_offset + Tq <= Tk, "attention: queries at positions [", q_offset, ", ",
               q_offset + Tq, ") need that many keys, have ", Tk);
  if (dev == Device::CUDA) return cuda::attention(q, k, v, scale, q_offset, lse);
  require_f32("attention", {{"q", q}, {"k", k}, {"v", v}});
  return cpu::attention(q, k, v, scale, q_offset, lse);
}

void write_cache(Tensor& pool, const std::vector<int64_t>& slot_mapping, const Tensor& rows) {
  const Device dev = device_of("write_cache", {{"pool", pool}, {"rows", rows}});
  MLARUN_CHECK(pool.ndim() == 3, "write_cache: pool must be [blocks, block_size, width], got ", pool.describe());
  const int64_t width = pool.dim(2), slots = pool.dim(0) * pool.dim(1);
  MLARUN_CHECK(rows.ndim() == 2 && rows.dim(1) == width && rows.dim(0) == int64_t(slot_mapping.size()),
               "write_cache: rows ", rows.describe(), " for ", slot_mapping.size(), " slots of width ", width);
  MLARUN_CHECK(rows.dtype() == pool.dtype(), "write_cache: rows ", rows.describe(), " into a pool of ",
               pool.describe());
  for (int64_t slot : slot_mapping)
    MLARUN_CHECK(slot < slots, "write_cache: slot ", slot, " outside the pool of ", slots, " slots");
  if (dev == Device::CUDA) return cuda::write_cache(pool, slot_mapping, rows);
  require_f32("write_cache", {{"pool", pool}, {"rows", rows}});
  cpu::write_cache(pool, slot_mapping, rows);
}

namespace {
// The first `len` entries a block table needs must name blocks of the pool.
void check_block_table(const char* op, const Tensor& pool, const std::vector<int32_t>& block_table, int64_t len) {
  const int64_t nb = pool.dim(0), bs = pool.dim(1);
  MLARUN_CHECK(len >= 0 && len <= int64_t(block_table.size()) * bs, op, ": ", len,
               " tokens but the block table covers ", int64_t(block_table.size()) * bs);
  for (int64_t b = 0; b < (len + bs - 1) / bs; ++b) {
    int64_t block = block_table[size_t(b)];
    MLARUN_CHECK(block >= 0 && block < nb, op, ": block ", block, " outside the pool of ", nb, " blocks");
  }
}
}  // namespace

Tensor gather_cache(const Tensor& pool, const std::vector<int32_t>& block_table, int64_t len) {
  const Device dev = device_of("gather_cache", {{"pool", pool}});
  MLARUN_CHECK(pool.ndim() == 3, "gather_cache: pool must be [blocks, block_size, width], got ", pool.describe());
  check_block_table("gather_cache", pool, block_table, len);
  if (dev == Device::CUDA) return cuda::gather_cache(pool, block_table, len);
  require_f32("gather_cache", {{"pool", pool}});
  return cpu::gather_cache(pool, block_table, len);
}

Tensor mla_paged_attention(const Tensor& q, const Tensor& pool, const std::vector<int32_t>& block_table,
                           int64_t kv_lora_rank, float scale, int64_t q_offset, Tensor* lse) {
  MLARUN_CHECK(q.ndim() == 3, "mla_paged_attention: q must be [tokens, heads, width], got ", q.describe());
  return mla_paged_attention(q, pool, {BatchSequence{0, q.dim(0), q_offset, block_table}}, kv_lora_rank, scale, lse);
}

Tensor mla_paged_attention(const Tensor& q, const Tensor& pool, const std::vector<BatchSequence>& sequences,
                           int64_t kv_lora_rank, float scale, Tensor* lse) {
  const Device dev = device_of("mla_paged_attention", {{"q", q}, {"pool", pool}});
  MLARUN_CHECK(pool.ndim() == 3, "mla_paged_attention: pool must be [blocks, block_size, width], got ",
               pool.describe());
  MLARUN_CHECK(q.ndim() == 3 && q.dim(2) == pool.dim(2) && kv_lora_rank > 0 && kv_lora_rank <= q.dim(2),
               "mla_paged_attention: q ", q.describe(), " does not match cache rows of width ", pool.dim(2),
               " with kv_lora_rank ", kv_lora_rank);
  for (const BatchSequence& s : sequences) {
    MLARUN_CHECK(s.token_start >= 0 && s.num_tokens >= 0 && s.token_start + s.num_tokens <= q.dim(0) &&
                     s.start_pos >= 0,
                 "mla_paged_attention: a sequence owns q rows [", s.token_start, ", ", s.token_start + s.num_tokens,
                 ") from position ", s.start_pos, "; q has ", q.dim(0), " rows");
    check_block_table("mla_paged_attention", pool, s.block_table, s.start_pos + s.num_tokens);
  }
  if (dev == Device::CUDA) return cuda::mla_paged_attention(q, pool, sequences, kv_lora_rank, scale, lse);
  require_f32("mla_paged_attention", {{"q", q}, {"pool", pool}});
  return cpu::mla_paged_attention(q, pool, sequences, kv_lora_rank, scale, lse);
}

void lse_merge_rescale(Tensor& o, const Tensor& lse_all, int64_t rank) {
  const Device dev = device_of("lse_merge_rescale", {{"o", o}, {"lse_all", lse_all}});
  MLARUN_CHECK(o.ndim() == 3 && lse_all.ndim() == 2 && lse_all.dtype() == DType::F32 && lse_all.dim(0) == o.dim(0) &&
                   o.dim(1) > 0 && lse_all.dim(1) % o.dim(1) == 0 && rank >= 0 &&
                   rank < lse_all.dim(1) / o.dim(1),
               "lse_merge_rescale: o ", o.describe(), ", lse_all ", lse_all.describe(), ", rank ", rank);
  if (dev == Device::CUDA) return cuda::lse_merge_rescale(o, lse_all, rank);
  require_f32("lse_merge_rescale", {{"o", o}});
  cpu::lse_merge_rescale(o, lse_all, rank);
}

}  // namespace mlarun::ops
