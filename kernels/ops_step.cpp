// Checks and dispatch for the ops of the model's step path (kernels/ops.h, "Step-tensor forms" and "MoE on the
// device"): index tensors on the data's device (runtime/step_tensors.h), so the CUDA backend uploads nothing.
// Their values were checked when the step was built; here shapes, dtypes and devices. On the CPU the index
// tensors are host memory: the dispatch reads them into the lists the CPU reference takes, so results are the
// reference's bit for bit. The fast-kernel choice (flash_prefill, mla_decode) is made here: in contract, the large
// kernel; otherwise the generic one.
#include <cmath>
#include <cstdio>
#include <mutex>
#include <set>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/op_checks.h"
#include "kernels/ops.h"
#include "runtime/error.h"

namespace mlarun::ops {

using detail::device_of;
using detail::require_f32;

namespace {

template <typename T>
std::vector<T> host_list(const Tensor& t) {
  const T* p = t.data<T>();
  return std::vector<T>(p, p + t.numel());
}

void require_index(const char* op, const char* name, const Tensor& t, DType dtype, int64_t n) {
  MLARUN_CHECK(t.defined() && t.ndim() == 1 && t.dtype() == dtype && (n < 0 || t.numel() == n), op, ": ", name,
               " must be ", dtype_name(dtype), " [", n, "], got ", t.defined() ? t.describe() : "nothing");
}

// The CPU reference takes sequences as BatchSequences: rebuild them from the part's host tensors.
std::vector<BatchSequence> part_sequences(const StepPart& part) {
  std::vector<BatchSequence> seqs;
  const int32_t* lens = part.seq_lens.data<int32_t>();
  const int32_t* tables = part.block_tables.data<int32_t>();
  for (int64_t j = 0; j < part.num_seqs(); ++j) {
    const int64_t start = part.cu_seqlens_q_host[size_t(j)], n = part.cu_seqlens_q_host[size_t(j + 1)] - start;
    seqs.push_back({start, n, lens[j] - n,
                    std::vector<int32_t>(tables + j * part.max_blocks, tables + (j + 1) * part.max_blocks)});
  }
  return seqs;
}

// Under decode context parallelism a query row's visible keys are its own count of this rank's rows
// (token_keys), not start_pos + i + 1: one single-row sequence per row that sees any key.
std::vector<BatchSequence> part_rows(const StepPart& part) {
  std::vector<BatchSequence> seqs;
  const int32_t* keys = part.token_keys.data<int32_t>();
  const int32_t* starts = part.token_table_start.data<int32_t>();
  const int32_t* tables = part.block_tables.data<int32_t>();
  for (int64_t i = 0; i < part.num_tokens; ++i)
    if (keys[i] > 0)
      seqs.push_back({i, 1, keys[i] - 1,
                      std::vector<int32_t>(tables + starts[i], tables + starts[i] + part.max_blocks)});
  return seqs;
}

// One line on stderr the first time each fallback reason shows up.
void note_fallback(const std::string& what) {
  static std::mutex mutex;
  static std::set<std::string> seen;
  std::lock_guard<std::mutex> lock(mutex);
  if (seen.insert(what).second) std::fprintf(stderr, "mlarun: %s\n", what.c_str());
}

// Whether flash_prefill takes q's and v's head dims and dtype; when it does not, says so once: the generic kernel
// runs (both forms of varlen_attention).
bool flash_prefill_takes(const Tensor& q, const Tensor& v) {
  if (cuda::flash_prefill_fits(q.dim(2), v.dim(2), q.dtype())) return true;
  note_fallback("prefill attention with head dims " + std::to_string(q.dim(2)) + "/" + std::to_string(v.dim(2)) +
                " in " + dtype_name(q.dtype()) + " is outside flash_prefill's contract: generic CUDA kernel");
  return false;
}

// The generic path of both forms of varlen_attention, one backend call per sequence: sequence j's query rows
// [cu_q[j], cu_q[j + 1]) attend its key rows [cu_k[j], cu_k[j + 1]) with causal offset (*offsets)[j], or
// bottom-right aligned without offsets; the backends clip each row's keys to the sequence's. lse is filled when
// given.
Tensor attention_per_sequence(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                              const std::vector<int32_t>& cu_q, const std::vector<int32_t>& cu_k,
                              const std::vector<int32_t>* offsets, Tensor* lse) {
  const Device dev = q.device();
  if (dev == Device::CPU) require_f32("varlen_attention", {{"q", q}, {"k", k}, {"v", v}});
  Tensor o = Tensor::empty({q.dim(0), q.dim(1), v.dim(2)}, q.dtype(), dev);
  if (lse) *lse = Tensor::empty({q.dim(0), q.dim(1)}, DType::F32, dev);
  for (size_t j = 0; j + 1 < cu_q.size(); ++j) {
    const int64_t q0 = cu_q[j], n = cu_q[j + 1] - q0, k0 = cu_k[j], len = cu_k[j + 1] - k0;
    if (n == 0) continue;
    const Tensor qs = q.rows(q0, n), ks = k.rows(k0, len), vs = v.rows(k0, len);
    const int64_t off = offsets ? (*offsets)[j] : len - n;
    Tensor lse_j;
    Tensor* lse_out = lse ? &lse_j : nullptr;
    copy_into(o.rows(q0, n), dev == Device::CUDA ? cuda::attention(qs, ks, vs, scale, off, lse_out)
                                                 : cpu::attention(qs, ks, vs, scale, off, lse_out));
    if (lse) copy_into(lse->rows(q0, n), lse_j);
  }
  return o;
}

}  // namespace

Tensor embedding(const Tensor& ids, const Tensor& table, int64_t vocab_start) {
  const Device dev = device_of("embedding", {{"ids", ids}, {"table", table}});
  MLARUN_CHECK(table.ndim() == 2, "embedding: table must be [vocab, dim], got ", table.describe());
  require_index("embedding", "ids", ids, DType::I32, -1);
  if (dev == Device::CUDA) return cuda::embedding(ids, table, vocab_start);
  require_f32("embedding", {{"table", table}});
  return cpu::embedding(host_list<int32_t>(ids), table, vocab_start);
}

void apply_rope(Tensor& x, const Tensor& positions, const RopeTable& table) {
  const Device dev = device_of("apply_rope", {{"x", x}, {"positions", positions}});
  MLARUN_CHECK(x.ndim() == 3, "apply_rope: x must be [tokens, heads, dim], got ", x.describe());
  require_index("apply_rope", "positions", positions, DType::I64, x.dim(0));
  MLARUN_CHECK(x.dim(2) >= table.rotary_dim(), "apply_rope: rotary dim ", table.rotary_dim(), " exceeds ",
               x.describe());
  if (dev == Device::CUDA) return cuda::apply_rope(x, positions, table);
  require_f32("apply_rope", {{"x", x}});
  cpu::apply_rope(x, host_list<int64_t>(positions), table);
}

void write_cache(Tensor& pool, const Tensor& slot_mapping, const Tensor& rows) {
  const Device dev = device_of("write_cache", {{"pool", pool}, {"slot_mapping", slot_mapping}, {"rows", rows}});
  MLARUN_CHECK(pool.ndim() == 3, "write_cache: pool must be [blocks, block_size, width], got ", pool.describe());
  MLARUN_CHECK(rows.ndim() == 2 && rows.dim(1) == pool.dim(2) && rows.dtype() == pool.dtype(), "write_cache: rows ",
               rows.describe(), " into a pool of ", pool.describe());
  require_index("write_cache", "slot_mapping", slot_mapping, DType::I64, rows.dim(0));
  if (dev == Device::CUDA) return cuda::write_cache(pool, slot_mapping, rows);
  require_f32("write_cache", {{"pool", pool}, {"rows", rows}});
  cpu::write_cache(pool, host_list<int64_t>(slot_mapping), rows);
}

Tensor gather_rows(const Tensor& x, const Tensor& rows) {
  const Device dev = device_of("gather_rows", {{"x", x}, {"rows", rows}});
  MLARUN_CHECK(x.ndim() >= 1, "gather_rows: x must have rows, got ", x.describe());
  require_index("gather_rows", "rows", rows, DType::I64, -1);
  if (dev == Device::CUDA) return cuda::gather_rows(x, rows);
  return cpu::gather_rows(x, host_list<int64_t>(rows));
}

void scatter_rows(Tensor& dst, const Tensor& rows, const Tensor& src) {
  const Device dev = device_of("scatter_rows", {{"dst", dst}, {"rows", rows}, {"src", src}});
  MLARUN_CHECK(dst.ndim() >= 1 && src.ndim() == dst.ndim() && src.dtype() == dst.dtype() &&
                   Shape(src.shape().begin() + 1, src.shape().end()) == Shape(dst.shape().begin() + 1, dst.shape().end()),
               "scatter_rows: src ", src.describe(), " into dst ", dst.describe());
  require_index("scatter_rows", "rows", rows, DType::I64, src.dim(0));
  if (dev == Device::CUDA) return cuda::scatter_rows(dst, rows, src);
  cpu::scatter_rows(dst, host_list<int64_t>(rows), src);
}

Tensor mla_paged_attention_part(const Tensor& q, const Tensor& pool, const StepPart& part, int64_t kv_lora_rank,
                           float scale, Tensor* lse) {
  const Device dev = device_of("mla_paged_attention", {{"q", q}, {"pool", pool}, {"block_tables", part.block_tables}});
  MLARUN_CHECK(pool.ndim() == 3 && q.ndim() == 3 && q.dim(0) == part.num_tokens && q.dim(2) == pool.dim(2) &&
                   kv_lora_rank > 0 && kv_lora_rank <= q.dim(2),
               "mla_paged_attention: q ", q.describe(), " for ", part.num_tokens, " rows over cache rows of ",
               pool.describe(), " with kv_lora_rank ", kv_lora_rank);
  if (dev == Device::CUDA)
    return cuda::mla_paged_attention(q, pool, part.block_tables, part.token_table_start, part.token_keys,
                                     kv_lora_rank, scale, lse);
  require_f32("mla_paged_attention", {{"q", q}, {"pool", pool}});
  if (part.dcp_size == 1) return cpu::mla_paged_attention(q, pool, part_sequences(part), kv_lora_rank, scale, lse);
  Tensor o = cpu::mla_paged_attention(q, pool, part_rows(part), kv_lora_rank, scale, lse);
  const int32_t* keys = part.token_keys.data<int32_t>();
  for (int64_t i = 0; lse && i < part.num_tokens; ++i)  // rows that saw no key: o 0 (zeros), lse -inf
    if (keys[i] == 0)
      for (int64_t h = 0; h < q.dim(1); ++h) lse->data<float>()[i * q.dim(1) + h] = -INFINITY;
  return o;
}

bool flash_prefill_fits(int64_t d_qk, int64_t d_v, DType dtype) { return cuda::flash_prefill_fits(d_qk, d_v, dtype); }

Tensor varlen_attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale, const StepPart& part) {
  const Device dev = device_of("varlen_attention", {{"q", q}, {"k", k}, {"v", v}});
  MLARUN_CHECK(q.ndim() == 3 && k.ndim() == 3 && v.ndim() == 3 && q.dim(0) == part.num_tokens &&
                   k.dim(0) == part.total_k && v.dim(0) == part.total_k && k.dim(2) == q.dim(2) &&
                   v.dim(1) == k.dim(1) && k.dim(1) > 0 && q.dim(1) % k.dim(1) == 0,
               "varlen_attention: q ", q.describe(), ", k ", k.describe(), ", v ", v.describe(), " for ",
               part.num_tokens, " query and ", part.total_k, " key rows");
  if (dev == Device::CUDA && flash_prefill_takes(q, v)) return cuda::flash_varlen(q, k, v, scale, part);
  return attention_per_sequence(q, k, v, scale, part.cu_seqlens_q_host, part.cu_seqlens_k_host, nullptr, nullptr);
}

Tensor varlen_attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale, const OffsetVarlen& layout,
                        Tensor& lse) {
  const Device dev = device_of("varlen_attention", {{"q", q}, {"k", k}, {"v", v}});
  const int64_t B = layout.num_seqs();
  MLARUN_CHECK(int64_t(layout.cu_seqlens_q_host.size()) == B + 1 && int64_t(layout.cu_seqlens_k_host.size()) == B + 1,
               "varlen_attention: cu_seqlens of ", layout.cu_seqlens_q_host.size(), " and ",
               layout.cu_seqlens_k_host.size(), " entries for ", B, " causal offsets");
  for (int64_t j = 0; j < B; ++j)
    MLARUN_CHECK(layout.cu_seqlens_q_host[size_t(j)] <= layout.cu_seqlens_q_host[size_t(j + 1)] &&
                     layout.cu_seqlens_k_host[size_t(j)] <= layout.cu_seqlens_k_host[size_t(j + 1)],
                 "varlen_attention: cu_seqlens decrease at sequence ", j);
  MLARUN_CHECK(B > 0 && layout.cu_seqlens_q_host[0] == 0 && layout.cu_seqlens_k_host[0] == 0 && q.ndim() == 3 &&
                   k.ndim() == 3 && v.ndim() == 3 && q.dim(0) == layout.cu_seqlens_q_host.back() &&
                   k.dim(0) == layout.cu_seqlens_k_host.back() && v.dim(0) == k.dim(0) && k.dim(2) == q.dim(2) &&
                   v.dim(1) == k.dim(1) && k.dim(1) > 0 && q.dim(1) % k.dim(1) == 0,
               "varlen_attention: q ", q.describe(), ", k ", k.describe(), ", v ", v.describe(), " for ", B,
               " sequences of ", B > 0 ? layout.cu_seqlens_q_host.back() : 0, " query and ",
               B > 0 ? layout.cu_seqlens_k_host.back() : 0, " key rows");
  if (dev == Device::CUDA) {
    require_index("varlen_attention", "cu_seqlens_q", layout.cu_seqlens_q, DType::I32, B + 1);
    require_index("varlen_attention", "cu_seqlens_k", layout.cu_seqlens_k, DType::I32, B + 1);
    require_index("varlen_attention", "causal_offset", layout.causal_offset, DType::I32, B);
    if (flash_prefill_takes(q, v)) return cuda::flash_varlen(q, k, v, scale, layout, lse);
  }
  return attention_per_sequence(q, k, v, scale, layout.cu_seqlens_q_host, layout.cu_seqlens_k_host,
                                &layout.causal_offset_host, &lse);
}

void merge_attention_partials(Tensor& o, Tensor& lse, const Tensor& o_part, const Tensor& lse_part) {
  const Device dev = device_of("merge_attention_partials",
                               {{"o", o}, {"lse", lse}, {"o_part", o_part}, {"lse_part", lse_part}});
  MLARUN_CHECK(o.ndim() == 3 && o_part.shape() == o.shape() &&
                   (o.dtype() == DType::F32 || o.dtype() == o_part.dtype()) && lse.dtype() == DType::F32 &&
                   lse_part.dtype() == DType::F32 && lse.shape() == lse_part.shape() &&
                   lse.shape() == (Shape{o.dim(0), o.dim(1)}),
               "merge_attention_partials: o ", o.describe(), ", lse ", lse.describe(), ", o_part ", o_part.describe(),
               ", lse_part ", lse_part.describe());
  if (dev == Device::CUDA) return cuda::merge_attention_partials(o, lse, o_part, lse_part);
  require_f32("merge_attention_partials", {{"o", o}, {"o_part", o_part}});
  cpu::merge_attention_partials(o, lse, o_part, lse_part);
}

MlaDecodePlan plan_mla_decode(const StepPart& part, Device device, DType dtype, int64_t heads, int64_t kv_lora_rank,
                              int64_t rope_dim, int64_t block_size, KvQuant cache) {
  MlaDecodePlan plan;
  plan.heads = heads;
  plan.cache = cache;
  if (device != Device::CUDA || part.empty()) {
    plan.reason = device != Device::CUDA ? "not on the GPU" : "no decode rows";
    return plan;
  }
  plan.reason = cuda::mla_decode_unfit(part, dtype, cache, heads, kv_lora_rank, rope_dim, block_size);
  if (plan.reason.empty() && part.dcp_size > 1 && part.max_q > 1)
    plan.reason = std::to_string(part.max_q) + " query rows in one sequence under decode context parallelism";
  if (!plan.reason.empty()) {
    note_fallback("MLA decode: " + plan.reason + " is outside mla_decode's contract: generic CUDA kernel");
    return plan;
  }
  plan.fast = true;
  plan.num_sms = cuda::mla_decode_sm_count();
  plan.attend = cuda::mla_decode_kernel();  // fixed for the plan: the schedule in its workspace is this kernel's
  plan.workspace = Tensor::empty({int64_t(cuda::mla_decode_workspace(part, heads, plan.num_sms))}, DType::F8_E4M3,
                                 Device::CUDA);
  return plan;
}

Tensor mla_decode(const Tensor& q, const Tensor& pool, const StepPart& part, const MlaDecodePlan& plan,
                  int64_t kv_lora_rank, float scale, Tensor* lse) {
  if (!plan.fast) {
    MLARUN_CHECK(plan.cache == KvQuant::None, "mla_decode: a ",
                 plan.cache == KvQuant::Fp8 ? "fp8" : plan.cache == KvQuant::Int8 ? "int8" : "bf16",
                 " cache outside mla_decode's contract (", plan.reason,
                 ") is read through ops::gather_rows_dequantized by the caller, not here");
    return mla_paged_attention_part(q, pool, part, kv_lora_rank, scale, lse);
  }
  device_of("mla_decode", {{"q", q}, {"pool", pool}});
  // The pool holds what the plan was made for: q's own rows, or the quantized rows of plan.cache.
  const auto pool_fits = [&] {
    if (plan.cache == KvQuant::None) return q.dim(2) == pool.dim(2) && q.dtype() == pool.dtype();
    return kv_cache_format(pool.dtype(), q.dtype(), kv_lora_rank, q.dim(2) - kv_lora_rank).quant == plan.cache;
  };
  MLARUN_CHECK(q.ndim() == 3 && q.dim(0) == part.num_tokens && q.dim(1) == plan.heads && pool.ndim() == 3 &&
                   pool_fits(),
               "mla_decode: q ", q.describe(), " for ", part.num_tokens, " rows of ", plan.heads,
               " heads over a pool of ", pool.describe());
  Tensor o = cuda::mla_decode_run(q, pool, plan.cache, part, plan.workspace, plan.num_sms, plan.attend,
                                  !plan.scheduled, kv_lora_rank, scale, lse);
  plan.scheduled = true;  // later layers reuse the step's schedule
  return o;
}

namespace {

void require_routing(const char* op, const Routing& r, int64_t first_expert, int64_t num_experts) {
  MLARUN_CHECK(r.experts.shape() == r.weights.shape() && r.experts.ndim() == 2 && r.experts.dtype() == DType::I32 &&
                   r.weights.dtype() == DType::F32,
               op, ": routing experts ", r.experts.describe(), " and weights ", r.weights.describe(),
               " are not i32 and f32 [tokens, top_k]");
  MLARUN_CHECK(first_expert >= 0 && num_experts >= 0, op, ": experts [", first_expert, ", ",
               first_expert + num_experts, ")");
}

}  // namespace

ExpertPermutation permute_by_expert(const Routing& r, int64_t first_expert, int64_t num_experts) {
  const Device dev = device_of("permute_by_expert", {{"experts", r.experts}, {"weights", r.weights}});
  require_routing("permute_by_expert", r, first_expert, num_experts);
  if (dev == Device::CUDA) return cuda::permute_by_expert(r.experts, r.weights, first_expert, num_experts);
  return cpu::permute_by_expert(r.experts, r.weights, first_expert, num_experts);
}

ExpertCapacityLayout permute_to_capacity(const Routing& r, int64_t first_expert, int64_t num_experts) {
  const Device dev = device_of("permute_to_capacity", {{"experts", r.experts}, {"weights", r.weights}});
  require_routing("permute_to_capacity", r, first_expert, num_experts);
  if (dev == Device::CUDA) return cuda::permute_to_capacity(r.experts, first_expert, num_experts);
  return cpu::permute_to_capacity(r.experts, first_expert, num_experts);
}

Tensor combine_experts(const Tensor& expert_out, const Tensor& slot_of, const Routing& r) {
  const Device dev = device_of("combine_experts", {{"expert_out", expert_out}, {"slot_of", slot_of}});
  MLARUN_CHECK(expert_out.ndim() == 2 && slot_of.shape() == r.experts.shape() && slot_of.dtype() == DType::I64,
               "combine_experts: expert outputs ", expert_out.describe(), " and slots ", slot_of.describe(),
               " for routing ", r.experts.describe());
  if (dev == Device::CUDA) return cuda::combine_experts(expert_out, slot_of, r.experts, r.weights);
  require_f32("combine_experts", {{"expert_out", expert_out}});
  return cpu::combine_experts(expert_out, slot_of, r.experts, r.weights);
}

}  // namespace mlarun::ops
