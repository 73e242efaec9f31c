// The op API the model calls. Every op takes and returns Tensors and dispatches on their device: the CPU
// reference (kernels/cpu/, f32 with f32 accumulation, the ground truth) or CUDA (kernels/cuda/, not built yet:
// an op on a CUDA tensor is an error naming the op until its kernel lands). Shapes are checked here, at the
// boundary, with messages built from the checked values.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/model_config.h"
#include "runtime/tensor.h"

namespace mlarun::ops {

// y[M, N] = x[M, K] . w[N, K]^T  (checkpoint weights are [out, in]).
Tensor linear(const Tensor& x, const Tensor& w);
// Per-head products: y[T, H, N] = x[T, H, K] . w[H, N, K]^T (the absorbed MLA weights, one matrix per head).
Tensor head_linear(const Tensor& x, const Tensor& w);
// out[i] = a[i] + b[i], same shapes.
Tensor add(const Tensor& a, const Tensor& b);
void add_inplace(Tensor& a, const Tensor& b);
// y[M, D] = x / sqrt(mean(x^2) + eps) * weight[D], per row.
Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps);
// out[M, I] = silu(gate_up[M, :I]) * gate_up[M, I:] when given one [M, 2I] tensor; or silu(gate) * up.
Tensor silu_mul(const Tensor& gate, const Tensor& up);
// out[T, D] = table[ids[t] - vocab_start] for ids inside [vocab_start, vocab_start + rows); zero rows otherwise
// (the vocab-parallel embedding of one rank; vocab_start = 0 for the whole table).
Tensor embedding(const std::vector<int32_t>& ids, const Tensor& table, int64_t vocab_start = 0);

// YaRN/plain RoPE frequencies of one model (spec 4.1), computed as Hugging Face does in f32.
struct RopeTable {
  std::vector<float> inv_freq;        // [rotary_dim / 2]
  float attention_factor = 1.0f;      // cos/sin multiplier (1 for every official config)
  bool interleaved = true;            // pairs (2i, 2i+1); false: (i, i + rotary_dim / 2)
  int64_t rotary_dim() const { return int64_t(inv_freq.size()) * 2; }
};
RopeTable make_rope_table(const ModelConfig& c);
// Rotates the last `rotary_dim` values of every row of x[T, H, D] in place by angle positions[t] * inv_freq[i]:
// pairs (2i, 2i+1) when interleaved (DeepSeek's layout; q.k products equal HF's de-interleaved form), else
// (i, i + rotary_dim / 2).
void apply_rope(Tensor& x, const std::vector<int64_t>& positions, const RopeTable& table);

// MoE gate: which experts each token goes to and with what weight (spec 5.1, HF semantics).
struct RoutingParams {
  ScoreFunc score_func = ScoreFunc::Softmax;
  TopkMethod method = TopkMethod::Greedy;
  int64_t n_groups = 1;
  int64_t topk_groups = 1;
  int64_t top_k = 1;
  bool normalize = false;
  float scale = 1.0f;
  static RoutingParams from(const ModelConfig& c);
};
struct Routing {
  Tensor experts;  // i32 [T, top_k]
  Tensor weights;  // f32 [T, top_k]
};
// logits f32 [T, E]; bias f32 [E] (noaux_tc only) or undefined.
Routing route(const Tensor& logits, const Tensor& bias, const RoutingParams& p);

// Dense causal attention for one sequence: q[Tq, H, Dqk], k[Tk, Hkv, Dqk], v[Tk, Hkv, Dv] -> o[Tq, H, Dv].
// Query i sits at position q_offset + i and sees keys 0..q_offset + i (H % Hkv == 0: GQA/MQA head mapping).
// Softmax in f32. If lse is given it receives the log-sum-exp of the scaled scores, [Tq, H].
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale, int64_t q_offset,
                 Tensor* lse = nullptr);

// Paged latent cache of one layer: pool[num_blocks, block_size, width].
// Writes rows[T, width] to pool slots (slot = block * block_size + offset); slot -1 means "skip".
void write_cache(Tensor& pool, const std::vector<int64_t>& slot_mapping, const Tensor& rows);
// Gathers the first `len` tokens of one sequence from the pool through its block table -> [len, width].
Tensor gather_cache(const Tensor& pool, const std::vector<int32_t>& block_table, int64_t len);

// Absorbed MLA attention over the paged latent cache for one sequence (spec 3.4):
// q[Tq, H, Dc + Dr] = [q_nope . W_UK | q_pe], cached rows [c (Dc) | k_pe (Dr)], scores = q . row * scale,
// o[Tq, H, Dc] = sum_t p_t * c_t. Query i at position q_offset + i sees cached tokens 0..q_offset + i.
Tensor mla_paged_attention(const Tensor& q, const Tensor& pool, const std::vector<int32_t>& block_table,
                           int64_t kv_lora_rank, float scale, int64_t q_offset, Tensor* lse = nullptr);

}  // namespace mlarun::ops
