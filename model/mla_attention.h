// Multi-head Latent Attention (docs/model.md §2), one layer, tensor-parallel by head. Each token's attention state
// is the RMS-normalised latent c (kv_lora_rank) plus one RoPE key k_pe shared by all heads, written to the paged
// latent cache. Prefill up-projects the latents to per-head K/V (naive path); decode absorbs W_UK into the query
// and W_UV into the output so it reads only the cache (absorbed path). Both compute the same function. Written
// with ops only, so it runs wherever its Placement put the weights (CPU f32 or GPU bf16). The attention core
// (after the cache write, before o_proj) is the step's MlaBackend: the CPU reference or the batched GPU path.
#pragma once

#include <string>

#include "kernels/ops.h"
#include "model/attention_layer.h"
#include "parallel/parallel_layers.h"
#include "runtime/forward_batch.h"
#include "runtime/model_config.h"

namespace mlarun {

class MLAttention final : public AttentionLayer {
 public:
  MLAttention(const ModelConfig& c, const WeightSource& ckpt, const std::string& prefix, Communicator& comm,
              const Placement& placement = {});

  using AttentionLayer::forward;
  // x [T, dim] (normalised) -> [T, dim]; writes this step's latents into `cache` [blocks, block_size, latent],
  // then attends through the step's MLA backend (model/mla_backend.h).
  Tensor forward(const Tensor& x, const StepContext& step, Tensor& cache, const ops::RopeTable& rope) const override;
  // The latent row [c | k_pe], the same on every rank (the latent has no head axis).
  int64_t cache_width() const override { return c_.latent_dim(); }

 private:
  Tensor project_queries(const Tensor& x) const;  // [T, H_local, qk_head_dim]

  Placement placement_;
  ModelConfig c_;  // a copy: the layer outlives no one and survives its model being moved
  int64_t local_heads_;
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
  Tensor w_uk_t_;               // [H_local, kv_lora_rank, nope]: q_lat = q_nope . W_UK, per head
  Tensor w_uv_;                 // [H_local, v, kv_lora_rank]:   o = o_lat . W_UV^T, per head
  RowParallelLinear wo_;
};

}  // namespace mlarun
