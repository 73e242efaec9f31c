// The op API the model calls. Every op takes and returns Tensors and dispatches on their device: the CPU
// reference (kernels/cpu/, f32 with f32 accumulation, the ground truth) or CUDA (kernels/cuda/, bf16 storage
// with f32 accumulation and f32 softmax; f32 where an op says so). The ops*.cpp files hold only the checks and
// that dispatch; docs/kernels.md states the contract in brief. All tensors of one call live on one device;
// outputs land there too. Shapes are checked at the boundary, with messages built from the checked values, the
// same on every device. The model's path takes its index data as tensors on the data's device, built once per
// step (runtime/step_tensors.h: one upload); the std::vector forms of the same ops upload their list per call and
// remain for tests, benchmarks and host-side callers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/kv_quant.h"
#include "kernels/op_types.h"
#include "runtime/forward_batch.h"
#include "runtime/model_config.h"
#include "runtime/sampling_params.h"
#include "runtime/step_tensors.h"
#include "runtime/tensor.h"

namespace mlarun::ops {

// ---- Dense math ------------------------------------------------------------------------------------------
// y[M, N] = x[M, K] . w[N, K]^T  (checkpoint weights are [out, in]); y has x's dtype. CUDA: bf16 x bf16 or
// f32 x f32 through cuBLAS with f32 accumulation.
Tensor linear(const Tensor& x, const Tensor& w);
// The same with the output in `out_dtype`: F32 from bf16 operands keeps the f32 accumulator (router logits,
// LM head); on the CPU only F32 exists.
Tensor linear(const Tensor& x, const Tensor& w, DType out_dtype);
// Per-head products: y[T, H, N] = x[T, H, K] . w[H, N, K]^T (the absorbed MLA weights, one matrix per head).
// CUDA: one strided-batched GEMM.
Tensor head_linear(const Tensor& x, const Tensor& w);
// MLA's naive-path keys and values from latent rows [n, R + Dr] (R = wkv_b's input width): per head h,
// k[:, h] = [rows[:, :R] . W_UK_h^T | rows[:, R:]] (the rope key, shared by every head) and
// v[:, h] = rows[:, :R] . W_UV_h^T, with wkv_b [H * (nope + vd), R] as checkpoints store it (head h's nope rows,
// then its v rows). CUDA: two strided-batched GEMMs that write k and v in place and one copy of the rope columns,
// with no [n, H, nope + vd] intermediate and no slicing copies.
KeysValues mla_up_project(const Tensor& rows, const Tensor& wkv_b, int64_t nope, int64_t vd);
// The routed experts over a capacity layout (ExpertCapacityLayout, op_types.h): y[c, j] = x[c, j] . w[j]^T for
// the rows c < counts[j] of each expert j, zeros in the other rows; x [T, n, K], w [n, N, K], counts i64 [n] on
// x's device. Only the experts that hold tokens are read: on the GPU a memory-bound kernel whose CTAs for an
// empty expert return at once (kernels/cuda/expert_gemv.cu), counts staying on the device.
Tensor expert_linear(const Tensor& x, const Tensor& w, const Tensor& counts);
// out[i] = a[i] + b[i], same element count and dtype.
Tensor add(const Tensor& a, const Tensor& b);
void add_inplace(Tensor& a, const Tensor& b);
// y[M, D] = x / sqrt(mean(x^2) + eps) * weight[D], per row. bf16: normalised in f32, rounded, then scaled.
Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps);
// The residual step of a decoder layer in one pass: residual += delta (in place, rounded to its dtype), then
// returns rms_norm(residual, weight, eps).
Tensor add_rms_norm(Tensor& residual, const Tensor& delta, const Tensor& weight, float eps);
// out = silu(gate) * up, element-wise.
Tensor silu_mul(const Tensor& gate, const Tensor& up);
// out[T, D] = table[ids[t] - vocab_start] for ids inside [vocab_start, vocab_start + rows); zero rows otherwise
// (the vocab-parallel embedding of one rank; vocab_start = 0 for the whole table). out has the table's dtype.
Tensor embedding(const std::vector<int32_t>& ids, const Tensor& table, int64_t vocab_start = 0);

// ---- Data movement (exact copies; no arithmetic) -------------------------------------------------------------
// x in `dtype` (f32 <-> bf16, f16 on the CPU); x itself when it already is.
Tensor convert(const Tensor& x, DType dtype);
// A CPU f32 copy of x (x itself when it already is one): what leaves the model for the host.
Tensor to_host_f32(const Tensor& x);
// Columns [start, start + len) of the last dimension: [..., D] -> [..., len].
Tensor narrow_last_dim(const Tensor& x, int64_t start, int64_t len);
// [..., Da] and [..., Db] -> [..., Da + Db]. b may have 1 where a has H in the second-to-last dimension: its
// rows then repeat for every head (MLA's k_pe, shared by all heads).
Tensor concat_last_dim(const Tensor& a, const Tensor& b);
// [..., P, Q] -> [..., Q, P].
Tensor transpose_last_two(const Tensor& x);
// out[i] = x[rows[i]] along dimension 0.
Tensor gather_rows(const Tensor& x, const std::vector<int64_t>& rows);
// dst[rows[i]] += weights[i] * src[i] along dimension 0, for i in order (so each destination row sums its
// contributions in a fixed order on every device). dst f32 or src's dtype; sums in f32.
void scatter_add_rows(Tensor& dst, const std::vector<int64_t>& rows, const Tensor& src,
                      const std::vector<float>& weights);
// Copies src into dst (same shape and dtype, same device); dst may be a view such as t.rows(start, n).
void copy_into(const Tensor& dst, const Tensor& src);

// ---- RoPE --------------------------------------------------------------------------------------------------
// RopeTable and make_rope_table: kernels/op_types.h.
// Rotates the last `rotary_dim` values of every row of x[T, H, D] in place by angle positions[t] * inv_freq[i]:
// pairs (2i, 2i+1) when interleaved (DeepSeek's layout; q.k products equal HF's de-interleaved form), else
// (i, i + rotary_dim / 2). Angles in f32, cos/sin in double, rotation in f32.
void apply_rope(Tensor& x, const std::vector<int64_t>& positions, const RopeTable& table);

// ---- MoE routing -------------------------------------------------------------------------------------------
// RoutingParams, Routing and ExpertGroups: kernels/op_types.h.
// logits f32 [T, E]; bias f32 [E] (noaux_tc only) or undefined. Ties go to the lower expert index.
Routing route(const Tensor& logits, const Tensor& bias, const RoutingParams& p);
// The token permutation for this rank's experts [first_expert, first_expert + num_experts) (ExpertGroups).
ExpertGroups group_by_expert(const Routing& r, int64_t first_expert, int64_t num_experts);

// ---- Attention and the paged cache ---------------------------------------------------------------------------
// Dense causal attention for one sequence: q[Tq, H, Dqk], k[Tk, Hkv, Dqk], v[Tk, Hkv, Dv] -> o[Tq, H, Dv].
// Query i sits at position q_offset + i and sees keys 0..q_offset + i (H % Hkv == 0: GQA/MQA head mapping).
// Softmax in f32. If lse is given it receives the log-sum-exp of the scaled scores, f32 [Tq, H].
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale, int64_t q_offset,
                 Tensor* lse = nullptr);

// Paged cache of one layer: pool[num_blocks, block_size, width].
// Writes rows[T, width] to pool slots (slot = block * block_size + offset); slot -1 means "skip".
void write_cache(Tensor& pool, const std::vector<int64_t>& slot_mapping, const Tensor& rows);
// Gathers the first `len` tokens of one sequence from the pool through its block table -> [len, width].
Tensor gather_cache(const Tensor& pool, const std::vector<int32_t>& block_table, int64_t len);

// The benchmarks' random values made where they live (kernels/random_normal.h): `out` (contiguous, f32 or bf16)
// is read as rows of `run` elements; element i of row o becomes value o * stride + first + i of `stream`, times
// `scale`, plus `offset` (two rounded f32 operations, not fused), in out's dtype. The same values on every device.
void fill_random_normal(Tensor& out, uint64_t stream, int64_t run, int64_t stride, int64_t first, float scale,
                        float offset);

// Absorbed MLA attention over the paged latent cache for one sequence (contract: docs/kernels.md):
// q[Tq, H, Dc + Dr] = [q_nope . W_UK | q_pe], cached rows [c (Dc) | k_pe (Dr)], scores = q . row * scale,
// o[Tq, H, Dc] = sum_t p_t * c_t. Query i at position q_offset + i sees cached tokens 0..q_offset + i.
Tensor mla_paged_attention(const Tensor& q, const Tensor& pool, const std::vector<int32_t>& block_table,
                           int64_t kv_lora_rank, float scale, int64_t q_offset, Tensor* lse = nullptr);
// The same for several sequences in one call: sequence s owns q rows [token_start, token_start + num_tokens),
// its first at position start_pos. Rows of q that no sequence owns come out as zeros.
Tensor mla_paged_attention(const Tensor& q, const Tensor& pool, const std::vector<BatchSequence>& sequences,
                           int64_t kv_lora_rank, float scale, Tensor* lse = nullptr);

// Decode context parallelism's merge (docs/layouts.md §2.6), in place: o[T, H, D] is this rank's partial attention
// output over its own cache slice and lse_all f32 [T, N * H] every rank's log-sum-exp for the same rows and heads,
// rank-major along the last dimension (all_gather_last_dim of each rank's [T, H]). Scales o[t, h, :] by
// exp(lse_all[t, rank * H + h] - LSE[t, h]), LSE the log-sum-exp over the N ranks (a rank that saw no key has
// lse -inf and weight 0), so the sum of the N scaled outputs is the exact softmax over the whole context.
void lse_merge_rescale(Tensor& o, const Tensor& lse_all, int64_t rank);

// ---- Sampling ----------------------------------------------------------------------------------------------
// Index of the largest logit of each row of logits[R, V] (lowest index among equals).
std::vector<int32_t> argmax_rows(const Tensor& logits);
// One token per row of logits[R, V] with params[r] and uniforms[r] in [0, 1): the choice kernels/cpu/sampling.h's
// sample_with_uniform makes (greedy rows ignore the uniform). On the GPU sums run in another order, so a uniform
// within rounding of a boundary between two tokens may pick the neighbour.
std::vector<int32_t> sample_rows(const Tensor& logits, const std::vector<SamplingParams>& params,
                                 const std::vector<double>& uniforms);

// ---- Step-tensor forms (the model's path; kernels/ops_step.cpp) ------------------------------------------------
// Index tensors live on the data's device (StepTensors); their values were checked when the step was built, so
// these check shapes, dtypes and devices only, and upload nothing.
Tensor embedding(const Tensor& ids, const Tensor& table, int64_t vocab_start = 0);  // ids i32 [T]
void apply_rope(Tensor& x, const Tensor& positions, const RopeTable& table);           // positions i64 [T]
void write_cache(Tensor& pool, const Tensor& slot_mapping, const Tensor& rows);         // slots i64 [T]
// out[i] = x[rows[i]], rows i64 [n]; a row index of -1 gives a zero row (an empty row of a capacity layout).
Tensor gather_rows(const Tensor& x, const Tensor& rows);
// dst[rows[i]] = src[i] along dimension 0 (rows distinct); dst and src of one dtype.
void scatter_rows(Tensor& dst, const Tensor& rows, const Tensor& src);
// Absorbed MLA attention (the generic kernel) for the sequences of `part`: q row i is the part's query row i
// (q [part.num_tokens, H, Dc + Dr]); same contract as the BatchSequence form.
Tensor mla_paged_attention_part(const Tensor& q, const Tensor& pool, const StepPart& part, int64_t kv_lora_rank,
                           float scale, Tensor* lse = nullptr);
// Causal attention over a variable-length batch: q [part.num_tokens, H, Dqk] with sequence j's rows at
// cu_seqlens_q[j]; k [part.total_k, Hkv, Dqk], v [part.total_k, Hkv, Dv] with its context rows at cu_seqlens_k[j];
// query i of sequence j sees keys 0 .. seq_len - num_q + i (bottom-right causal, chunked prefill). CUDA runs
// kernels/cuda/flash_prefill when (Dqk, Dv) and the dtype are in its contract (flash_prefill_fits), else the
// generic kernel per sequence; the CPU runs ops::attention per sequence.
Tensor varlen_attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale, const StepPart& part);
// The same over an OffsetVarlen batch (op_types.h), the pieces of a chunked naive prefill: q [cu_q[batch], H, Dqk],
// k [cu_k[batch], Hkv, Dqk], v [cu_k[batch], Hkv, Dv]. `lse` receives f32 [rows, H]; a row that sees no key gets
// o 0 and lse -inf. CUDA: flash_prefill with the offsets when in its contract, else the generic kernel per
// sequence; the CPU: ops::attention per sequence.
Tensor varlen_attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale, const OffsetVarlen& layout,
                        Tensor& lse);
// Folds a partial attention result into a running one, in place: o [T, H, D] (f32, or o_part's dtype) and lse f32
// [T, H] become the softmax over both key sets: LSE = log(e^lse + e^lse_part), o = e^(lse - LSE) o +
// e^(lse_part - LSE) o_part. Exact up to rounding; a side with lse -inf (no key) has weight 0.
void merge_attention_partials(Tensor& o, Tensor& lse, const Tensor& o_part, const Tensor& lse_part);
// Whether flash_prefill takes these head dims and dtype (CUDA: bf16/fp16, (192,128), (128,128), (64,64), (256,256)).
bool flash_prefill_fits(int64_t d_qk, int64_t d_v, DType dtype);

// Absorbed MLA decode for a step's part, planned once per step and shared by all layers: on CUDA with the shapes
// kernels/cuda/mla_decode takes (bf16, kv_lora_rank 512, rope 64, heads <= 128, <= 4 query rows per sequence,
// block_size <= 256, batch <= 8192; a bf16 cache or the fp8/int8 rows of kernels/kv_quant.h, `cache`) the first
// layer's call computes the work schedule into the plan's workspace and every later call reuses it; otherwise
// (`fast` false, `reason` says why) mla_decode runs the generic kernel, which takes unquantized caches only.
// Under decode context parallelism (part.dcp_size > 1) the kernel's rule "query i of n sees the first L - n + i
// rows" does not hold for a rank's interleaved slice, so only one query row per sequence is fast there.
struct MlaDecodePlan {
  bool fast = false;
  std::string reason;          // why not fast (empty when fast)
  Tensor workspace;            // bytes, on the device (fast only)
  int num_sms = 0;
  int64_t heads = 0;
  KvQuant cache = KvQuant::None;
  int32_t attend = 0;              // mla_decode's attend kernel when planned (kernels/cuda/cuda_ops.h; fast only)
  mutable bool scheduled = false;  // the schedule is in the workspace
};
MlaDecodePlan plan_mla_decode(const StepPart& part, Device device, DType dtype, int64_t heads, int64_t kv_lora_rank,
                              int64_t rope_dim, int64_t block_size, KvQuant cache = KvQuant::None);
// q [part.num_tokens, heads, kv_lora_rank + rope] -> o_lat [part.num_tokens, heads, kv_lora_rank]; `lse` (when not
// null) receives the log-sum-exp of each row's scaled scores, f32 [part.num_tokens, heads] (-inf: no key seen).
Tensor mla_decode(const Tensor& q, const Tensor& pool, const StepPart& part, const MlaDecodePlan& plan,
                  int64_t kv_lora_rank, float scale, Tensor* lse = nullptr);

// ---- MoE on the device (kernels/ops_step.cpp) ------------------------------------------------------------------
// The token permutation for this rank's experts [first_expert, first_expert + num_experts), built where the
// routing lives (no host round trip for the indices): assignments sorted by (expert, token) as ExpertGroups
// orders them (ExpertPermutation, kernels/op_types.h). Its host `offsets` are the one thing copied back (one
// small copy per layer): the experts run one after another and each GEMM's row count sizes it on the host.
ExpertPermutation permute_by_expert(const Routing& r, int64_t first_expert, int64_t num_experts);
// The same assignments in the capacity layout (ExpertCapacityLayout, op_types.h): T rows per local expert, sizes
// from T alone, nothing copied to the host (the MoE of a decode-sized step; a CUDA graph can capture it).
ExpertCapacityLayout permute_to_capacity(const Routing& r, int64_t first_expert, int64_t num_experts);
// y f32 [T, D]: y[t] = sum over t's local assignments, in ascending expert order, of weight * expert_out[slot]
// (expert_out [rows, D], f32 or bf16, rows of either layout; slot_of i64 [T, top_k] from permute_by_expert or
// permute_to_capacity, -1 for experts not local), summed in f32 from 0: the order and arithmetic of
// scatter_add_rows over ExpertGroups, so both layouts give the same sums.
Tensor combine_experts(const Tensor& expert_out, const Tensor& slot_of, const Routing& r);

}  // namespace mlarun::ops
