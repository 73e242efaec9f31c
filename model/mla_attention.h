// Multi-head Latent Attention (docs/model.md §2), one layer, tensor-parallel by head. Each token's attention state
// is the RMS-normalised latent c (kv_lora_rank) plus one RoPE key k_pe shared by all heads, written to the paged
// latent cache. Prefill up-projects the latents to per-head K/V (naive path); decode absorbs W_UK into the query
// and W_UV into the output so it reads only the cache (absorbed path). Both compute the same function. Written
// with ops only, so it runs wherever its Placement put the weights (CPU f32 or GPU bf16). The attention core
// (after the cache write, before o_proj) is the step's MlaBackend: the CPU reference or the batched GPU path.
// Under decode context parallelism (a `dcp` group of N ranks, docs/layouts.md §2.6) the query and kv_b
// projections are split over tp / N head groups, so the N ranks of a group compute the same queries; each rank
// stores and attends its own tokens, the backend merges, and o_proj stays row-parallel over all tp ranks.
#pragma once

#include <string>

#include "kernels/ops.h"
#include "model/mla_backend.h"
#include "model/attention_layer.h"
#include "parallel/parallel_layers.h"
#include "runtime/forward_batch.h"
#include "runtime/model_config.h"

namespace mlarun {

class MLAttention final : public AttentionLayer {
 public:
  // `dcp`: this rank's decode-context-parallel group (consecutive tp ranks; null or one rank: none).
  MLAttention(const ModelConfig& c, const WeightSource& ckpt, const std::string& prefix, Communicator& comm,
              const Placement& placement = {}, Communicator* dcp = nullptr);

  using AttentionLayer::forward;
  // x [T, dim] (normalised) -> [T, dim]; writes this step's latents into `cache` [blocks, block_size, latent],
  // then attends through the step's MLA backend (model/mla_backend.h).
  Tensor forward(const Tensor& x, const StepContext& step, Tensor& cache, const ops::RopeTable& rope) const override;
  // The latent row [c | k_pe], the same on every rank (the latent has no head axis; DCP splits tokens, not rows).
  int64_t cache_width() const override { return c_.latent_dim(); }
  KvCacheFormat cache_format() const override { return cache_format_for(c_); }
  // The latent quantized as one head, the rope key kept in bf16 (kernels/kv_quant.h), without building the layer.
  static KvCacheFormat cache_format_for(const ModelConfig& c) {
    return {KvQuant::None, c.kv_lora_rank, c.qk_rope_head_dim};
  }

 private:
  Tensor project_queries(const Tensor& x) const;  // [T, H_local, qk_head_dim]
  // Writes the step's latent rows into the cache, then attends through the step's MLA backend: [T, H_out, v].
  Tensor attend(const Tensor& latent, const Tensor& q, const StepContext& step, Tensor& cache) const;

  Placement placement_;
  ModelConfig c_;  // a copy: the layer outlives no one and survives its model being moved
  MlaDcpGroup dcp_;
  int64_t local_heads_;  // query heads: H / tp, or the DCP group's H / (tp / N)
  int64_t out_heads_;    // heads this rank outputs into o_proj: H / tp
  float softmax_scale_;
  float eps_;
  // q: either wq (no compression) or wq_a -> q_norm -> wq_b.
  ColumnParallelLinear wq_;
  ReplicatedLinear wq_a_;
  Tensor q_norm_;
  ColumnParallelLinear wq_b_;
  ReplicatedLinear wkv_a_;  // -> [latent c | k_pe]
  Tensor kv_norm_;
  ColumnParallelLinear wkv_b_;  // [H_local * (nope + v), kv_lora_rank]
  Tensor wkv_b_out_;            // [out_heads * (nope + v), kv_lora_rank]: wkv_b_'s rows of this rank's own heads
  Tensor w_uk_t_;               // [H_local, kv_lora_rank, nope]: q_lat = q_nope . W_UK, per head
  Tensor w_uv_;                 // [out_heads, v, kv_lora_rank]:   o = o_lat . W_UV^T, per head
  RowParallelLinear wo_;
};

}  // namespace mlarun
