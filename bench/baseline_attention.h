// Standard attention (MHA, GQA, MQA) with a paged K/V cache: the baselines MLA is measured against, built on the
// same BlockManager/CachePool machinery (one pool per layer, slots from slot_mapping, pages from block tables).
// Weights as Hugging Face names them under the layer's `self_attn.` prefix: q_proj [H*d, dim], k_proj and
// v_proj [G*d, dim], o_proj [dim, H*d], with d = v_head_dim. RoPE rotates the last qk_rope_head_dim values of
// every q and k head (the same tables as MLA). A token's cache row is [K of this rank's kv heads | their V].
// Tensor-parallel by head: q/o split column/row; kv heads split while G >= tp, else each rank keeps the one
// group its query heads read (attention_kind.h).
// A pool of another dtype than the activations' (--kv-cache-dtype bf16 on the CPU, fp8, int8) stores the row
// through kernels/kv_quant.h with every K and V head tiled on its own (d + 4 * ceil(d / 128) bytes a head in
// fp8/int8, bench cache's rule), and attention reads it back dequantized.
#pragma once

#include <string>

#include "bench/attention_kind.h"
#include "model/attention_layer.h"
#include "model/deepseek_model.h"
#include "parallel/parallel_layers.h"
#include "runtime/model_config.h"

namespace mlarun {

class BaselineAttention final : public AttentionLayer {
 public:
  BaselineAttention(const ModelConfig& c, AttentionKind kind, const WeightSource& weights, const std::string& prefix,
                    Communicator& comm, const Placement& placement = {});

  using AttentionLayer::forward;
  Tensor forward(const Tensor& x, const StepContext& step, Tensor& cache, const ops::RopeTable& rope) const override;
  int64_t cache_width() const override { return 2 * layout_.local_kv_heads * head_dim_; }
  KvCacheFormat cache_format() const override { return {KvQuant::None, cache_width(), 0, head_dim_}; }

  // The cache width rank `rank` of `tp` would have, without building the layer; and its row shape.
  static int64_t cache_width_for(const ModelConfig& c, const AttentionKind& kind, int64_t tp, int64_t rank = 0);
  static KvCacheFormat cache_format_for(const ModelConfig& c, const AttentionKind& kind, int64_t tp,
                                        int64_t rank = 0) {
    return {KvQuant::None, cache_width_for(c, kind, tp, rank), 0, baseline_head_dim(c)};
  }

 private:
  // One sequence's queries q [n, Hl, d] against its cached K/V -> [n, Hl, d].
  Tensor attend(const Tensor& q, const BatchSequence& s, const Tensor& cache) const;
  // How `cache` stores the row for activations of `act_dtype` (quant None: as they are).
  KvCacheFormat stored_format(const Tensor& cache, DType act_dtype) const;

  AttentionKind kind_;
  KvHeadLayout layout_;
  int64_t head_dim_;
  float softmax_scale_;
  ColumnParallelLinear wq_;  // [Hl * d, dim]
  Tensor wk_, wv_;           // [Gl * d, dim]: this rank's kv heads
  RowParallelLinear wo_;     // [dim, Hl * d]
};

// What DeepseekModel builds each layer's attention with for `kind`: MLA, or the baseline of that kind.
AttentionFactory attention_factory(const AttentionKind& kind);
// The row shape (AttentionLayer::cache_format) rank `rank` of `tp` caches for `kind`, without building a layer.
KvCacheFormat attention_cache_format(const ModelConfig& c, const AttentionKind& kind, int64_t tp = 1,
                                     int64_t rank = 0);

}  // namespace mlarun
