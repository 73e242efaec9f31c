// MHA/GQA/MQA forward over the paged K/V cache (see baseline_attention.h).
#include "bench/baseline_attention.h"

#include <cmath>

#include "kernels/kv_quant.h"
#include "model/mla_attention.h"
#include "runtime/error.h"
#include "runtime/step_profiler.h"

namespace mlarun {

BaselineAttention::BaselineAttention(const ModelConfig& c, AttentionKind kind, const WeightSource& weights,
                                     const std::string& prefix, Communicator& comm, const Placement& placement)
    : kind_(kind),
      layout_(kv_head_layout(c, kind, comm.world_size(), comm.rank())),
      head_dim_(baseline_head_dim(c)),
      // The same YaRN mscale^2 factor as MLA's scale, over this head dimension.
      softmax_scale_(float(c.softmax_scale() * std::sqrt(double(c.qk_head_dim()) / double(baseline_head_dim(c))))) {
  MLARUN_CHECK(!kind.is_mla(), "BaselineAttention built for mla (use MLAttention)");
  MLARUN_CHECK(!kind.is_sliding(), kind.name(), ": a sliding window is modelled by bench cache's accounting only");
  MLARUN_CHECK(head_dim_ >= c.qk_rope_head_dim, kind.name(), " attention: head dim ", head_dim_,
               " (v_head_dim) is smaller than the RoPE dim ", c.qk_rope_head_dim);
  const int64_t H = c.n_heads, G = layout_.kv_heads, d = head_dim_;
  wq_ = ColumnParallelLinear(weights, prefix + "q_proj.weight", c.dim, H * d, comm, placement);
  ShardRange kv_rows{layout_.first_kv_head * d, (layout_.first_kv_head + layout_.local_kv_heads) * d};
  wk_ = load_shard_checked(weights, prefix + "k_proj.weight", {G * d, c.dim}, 0, kv_rows, placement);
  wv_ = load_shard_checked(weights, prefix + "v_proj.weight", {G * d, c.dim}, 0, kv_rows, placement);
  wo_ = RowParallelLinear(weights, prefix + "o_proj.weight", H * d, c.dim, comm, placement);
}

int64_t BaselineAttention::cache_width_for(const ModelConfig& c, const AttentionKind& kind, int64_t tp, int64_t rank) {
  MLARUN_CHECK(!kind.is_mla(), "BaselineAttention::cache_width_for: mla caches the latent (ModelConfig::latent_dim)");
  return 2 * kv_head_layout(c, kind, tp, rank).local_kv_heads * baseline_head_dim(c);
}

Tensor BaselineAttention::forward(const Tensor& x, const StepContext& step, Tensor& cache,
                                  const ops::RopeTable& rope) const {
  const ForwardBatch& batch = step.batch;
  const int64_t T = x.dim(0), Hl = layout_.local_q_heads, Gl = layout_.local_kv_heads, d = head_dim_;
  const KvCacheFormat fmt = stored_format(cache, x.dtype());
  MLARUN_CHECK(cache.ndim() == 3 && (fmt.quantized() ? cache.dim(2) * int64_t(dtype_size(cache.dtype())) ==
                                                           fmt.row_bytes()
                                                     : cache.dim(2) == cache_width()),
               kind_.name(), " attention: cache ", cache.describe(), " does not hold rows of ", cache_width(),
               " values");
  // Time split (runtime/step_profiler.h), as MLA's: projections dense GEMM, the cache write and attention
  // attention, RoPE the step's base; o_proj's all-reduce counts itself as communication.
  Tensor q = profiled(ProfileCategory::DenseGemm, [&] { return wq_.forward(x); }).view({T, Hl, d});
  ops::apply_rope(q, step.tensors.positions, rope);  // the last qk_rope_head_dim values of each head
  Tensor k = profiled(ProfileCategory::DenseGemm, [&] { return ops::linear(x, wk_); }).view({T, Gl, d});
  ops::apply_rope(k, step.tensors.positions, rope);
  Tensor v = profiled(ProfileCategory::DenseGemm, [&] { return ops::linear(x, wv_); });  // [T, Gl * d]
  const Tensor row = ops::concat_last_dim(k.view({T, Gl * d}), v);  // [K heads | V heads]

  Tensor o = Tensor::empty({T, Hl, d}, q.dtype(), q.device());
  {
    ProfileRegion attention(ProfileCategory::Attention);
    if (fmt.quantized())
      ops::write_cache_quantized(cache, fmt, step.tensors.slot_mapping, row);
    else
      ops::write_cache(cache, step.tensors.slot_mapping, row);
    for (const BatchSequence& s : batch.sequences)
      ops::copy_into(o.rows(s.token_start, s.num_tokens), attend(q.rows(s.token_start, s.num_tokens), s, cache));
  }
  return profiled(ProfileCategory::DenseGemm, [&] { return wo_.forward(o.view({T, Hl * d})); });
}

KvCacheFormat BaselineAttention::stored_format(const Tensor& cache, DType act_dtype) const {
  const KvCacheFormat shape = cache_format();
  return kv_cache_format(cache.dtype(), act_dtype, shape.latent, shape.rope, shape.head);
}

Tensor BaselineAttention::attend(const Tensor& q, const BatchSequence& s, const Tensor& cache) const {
  const int64_t ctx = s.start_pos + s.num_tokens, Gl = layout_.local_kv_heads, d = head_dim_;
  const int64_t bs = cache.dim(1);
  MLARUN_CHECK(ctx <= int64_t(s.block_table.size()) * bs, kind_.name(), " attention: ", ctx,
               " tokens but the block table covers ", int64_t(s.block_table.size()) * bs);
  // One pass over the pages: K and V of every cached token, each [ctx, Gl, d] (dequantized from a quantized pool).
  const KvCacheFormat fmt = stored_format(cache, q.dtype());
  Tensor rows = fmt.quantized() ? ops::gather_cache_dequantized(cache, fmt, s.block_table, ctx, q.dtype())
                                : ops::gather_cache(cache, s.block_table, ctx);
  Tensor k = ops::narrow_last_dim(rows, 0, Gl * d).view({ctx, Gl, d});
  Tensor v = ops::narrow_last_dim(rows, Gl * d, Gl * d).view({ctx, Gl, d});
  return ops::attention(q, k, v, softmax_scale_, s.start_pos);
}

KvCacheFormat attention_cache_format(const ModelConfig& c, const AttentionKind& kind, int64_t tp, int64_t rank) {
  return kind.is_mla() ? MLAttention::cache_format_for(c) : BaselineAttention::cache_format_for(c, kind, tp, rank);
}

AttentionFactory attention_factory(const AttentionKind& kind) {
  if (kind.is_mla()) return mla_attention_factory();
  return [kind](const ModelConfig& c, const WeightSource& weights, const std::string& prefix, Communicator& comm,
                const Placement& placement) -> std::unique_ptr<AttentionLayer> {
    return std::make_unique<BaselineAttention>(c, kind, weights, prefix, comm, placement);
  };
}

}  // namespace mlarun
