// The parameter and result types of the ops that are more than tensors (RoPE tables, MoE routing), in one header
// that both the op API (ops.h) and each backend (cpu/cpu_ops.h, cuda/cuda_ops.h) include, so a backend needs
// neither the API nor the other backend to name them. Built from a ModelConfig here (op_types.cpp); computed on
// by the backends.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/model_config.h"
#include "runtime/tensor.h"

namespace mlarun::ops {

// YaRN/plain RoPE frequencies of one model, computed as Hugging Face does in f32.
struct RopeTable {
  std::vector<float> inv_freq;        // [rotary_dim / 2]
  float attention_factor = 1.0f;      // cos/sin multiplier (1 for every official config)
  bool interleaved = true;            // pairs (2i, 2i+1); false: (i, i + rotary_dim / 2)
  Tensor inv_freq_tensor;             // f32 copy of inv_freq on the model's device (else uploaded per call)
  int64_t rotary_dim() const { return int64_t(inv_freq.size()) * 2; }
};
RopeTable make_rope_table(const ModelConfig& c);
// The same table with inv_freq_tensor on `device` (a copy made once, when the model is built).
RopeTable rope_table_on(RopeTable table, Device device);

// MoE gate: which experts each token goes to and with what weight (Hugging Face semantics).
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
  Tensor experts;  // i32 [T, top_k], on the logits' device
  Tensor weights;  // f32 [T, top_k]
};
// The token permutation for this rank's experts [first_expert, first_expert + num_experts): assignments sorted
// by (expert, token); expert j's run is [offsets[j], offsets[j + 1]). Host lists whatever the routing's device.
struct ExpertGroups {
  std::vector<int64_t> tokens;   // token index of each assignment
  std::vector<float> weights;    // its routing weight
  std::vector<int64_t> offsets;  // [num_experts + 1]
};

// The same permutation built where the routing lives (ops::permute_by_expert), as device index tensors.
struct ExpertPermutation {
  Tensor tokens;    // i64 [assignments]: token of each assignment, grouped by expert
  Tensor slot_of;   // i64 [T, top_k]: the assignment's index in `tokens`, -1 when its expert is not local
  Tensor weights;   // f32 [assignments]: the routing weight of each
  std::vector<int64_t> offsets;  // [num_experts + 1] on the host: expert j's run is [offsets[j], offsets[j + 1])
};

// The same assignments in the capacity layout (ops::permute_to_capacity): a grid of [tokens, num_experts] rows in
// which row c * num_experts + j holds the c-th token routed to local expert j (tokens ascending), -1 past its
// count. A token picks an expert at most once, so T rows per expert never overflow. Every size is known from T
// alone: nothing comes back to the host and a step built on it can be captured in a CUDA graph; the experts then
// run as ops::expert_linear over the grid (empty rows are zero and never read).
struct ExpertCapacityLayout {
  Tensor tokens;   // i64 [T * num_experts]: token of each row, -1 for an empty row
  Tensor slot_of;  // i64 [T, top_k]: the assignment's row, -1 when its expert is not local
  Tensor counts;   // i64 [num_experts]: tokens of each local expert (its rows c < count hold them)
  int64_t num_experts = 0;
};

// A variable-length attention batch whose causal masks have explicit offsets: sequence b's query rows
// [cu_q[b], cu_q[b + 1]) attend its key rows [cu_k[b], cu_k[b + 1]), and its query i sees key j when
// j <= causal_offset[b] + i (bottom-right alignment is the offset len_k - len_q; a negative one leaves the first
// rows seeing nothing, an offset past the keys lets every row see all of them). A piece of a chunked prefill's
// context is one: each sequence's keys in the piece start at some position a of its context, so its query at
// position start_pos + i sees piece keys j <= (start_pos - a) + i. Host lists for the checks, the grid and the
// CPU; the same values on the data's device for the kernels.
struct OffsetVarlen {
  std::vector<int32_t> cu_seqlens_q_host, cu_seqlens_k_host;  // [batch + 1] each, from 0, non-decreasing
  std::vector<int32_t> causal_offset_host;                     // [batch]
  Tensor cu_seqlens_q, cu_seqlens_k, causal_offset;            // i32, the same values on the data's device
  int64_t num_seqs() const { return int64_t(causal_offset_host.size()); }
};

// MLA's per-head keys and values, up-projected from latent rows (ops::mla_up_project): k [n, H, nope + rope] with
// the rope key shared by every head, v [n, H, v_head_dim]; the layouts varlen_attention takes.
struct KeysValues {
  Tensor k, v;
};

}  // namespace mlarun::ops
