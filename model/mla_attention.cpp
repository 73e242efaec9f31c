// MLA forward, both paths (see mla_attention.h and docs/model.md §2.2-2.6).
#include "model/mla_attention.h"

#include "runtime/error.h"

namespace mlarun {

MLAttention::MLAttention(const ModelConfig& c, const WeightSource& ckpt, const std::string& prefix, Communicator& comm,
                         const Placement& placement)
    : c_(c),
      local_heads_(c.n_heads / comm.world_size()),
      softmax_scale_(float(c.softmax_scale())),
      eps_(float(c.rms_norm_eps)) {
  const int64_t H = c.n_heads, qk = c.qk_head_dim(), nope = c.qk_nope_head_dim, vd = c.v_head_dim;
  if (c.q_lora_rank > 0) {
    wq_a_ = ReplicatedLinear(ckpt, prefix + "q_a_proj.weight", c.dim, c.q_lora_rank, placement);
    q_norm_ = load_checked(ckpt, prefix + "q_a_layernorm.weight", {c.q_lora_rank}, placement);
    wq_b_ = ColumnParallelLinear(ckpt, prefix + "q_b_proj.weight", c.q_lora_rank, H * qk, comm, placement);
  } else {
    wq_ = ColumnParallelLinear(ckpt, prefix + "q_proj.weight", c.dim, H * qk, comm, placement);
  }
  wkv_a_ = ReplicatedLinear(ckpt, prefix + "kv_a_proj_with_mqa.weight", c.dim, c.latent_dim(), placement);
  kv_norm_ = load_checked(ckpt, prefix + "kv_a_layernorm.weight", {c.kv_lora_rank}, placement);
  wkv_b_ = ColumnParallelLinear(ckpt, prefix + "kv_b_proj.weight", c.kv_lora_rank, H * (nope + vd), comm, placement);
  wo_ = RowParallelLinear(ckpt, prefix + "o_proj.weight", H * vd, c.dim, comm, placement);

  // Split wkv_b per head into W_UK [nope, R] (stored transposed, [R, nope]) and W_UV [v, R]: copies of the placed
  // weight, so both paths multiply by the same rounded values.
  const int64_t R = c.kv_lora_rank, Hl = local_heads_;
  Tensor per_head = wkv_b_.weight().view({Hl, (nope + vd) * R});
  w_uk_t_ = ops::transpose_last_two(ops::narrow_last_dim(per_head, 0, nope * R).view({Hl, nope, R}));
  w_uv_ = ops::narrow_last_dim(per_head, nope * R, vd * R).view({Hl, vd, R});
}

Tensor MLAttention::project_queries(const Tensor& x) const {
  Tensor q = c_.q_lora_rank > 0 ? wq_b_.forward(ops::rms_norm(wq_a_.forward(x), q_norm_, eps_)) : wq_.forward(x);
  return q.view({x.dim(0), local_heads_, c_.qk_head_dim()});
}

Tensor MLAttention::forward(const Tensor& x, const ForwardBatch& batch, Tensor& cache, const ops::RopeTable& rope) const {
  const int64_t T = x.dim(0), R = c_.kv_lora_rank, Dr = c_.qk_rope_head_dim;
  Tensor q = project_queries(x);
  ops::apply_rope(q, batch.positions, rope);  // rotates the last Dr values of each head: q_pe

  // Latent row per token: [kv_norm(c) | rope(k_pe)], the 576 values MLA caches.
  Tensor kv = wkv_a_.forward(x);  // [T, R + Dr]
  Tensor k_pe = ops::narrow_last_dim(kv, R, Dr).view({T, 1, Dr});
  ops::apply_rope(k_pe, batch.positions, rope);
  Tensor latent = ops::concat_last_dim(ops::rms_norm(ops::narrow_last_dim(kv, 0, R), kv_norm_, eps_),
                                       k_pe.view({T, Dr}));
  ops::write_cache(cache, batch.slot_mapping, latent);

  return wo_.forward(attend(q, batch, cache).view({T, local_heads_ * c_.v_head_dim}));
}

Tensor MLAttention::attend(const Tensor& q, const ForwardBatch& batch, const Tensor& cache) const {
  auto absorbed = [&](const BatchSequence& s) {
    return batch.mla_path == MlaPath::Absorbed || (batch.mla_path == MlaPath::Auto && s.num_tokens == 1);
  };
  bool all_absorbed = !batch.sequences.empty();
  for (const BatchSequence& s : batch.sequences) all_absorbed = all_absorbed && absorbed(s);
  if (all_absorbed) return attend_absorbed(q, batch.sequences, cache);  // a decode step: one call for the batch

  Tensor o = Tensor::empty({q.dim(0), local_heads_, c_.v_head_dim}, q.dtype(), q.device());
  for (const BatchSequence& s : batch.sequences) {
    Tensor qs = q.rows(s.token_start, s.num_tokens);
    BatchSequence own = s;
    own.token_start = 0;  // qs starts at this sequence's first token
    ops::copy_into(o.rows(s.token_start, s.num_tokens),
                   absorbed(s) ? attend_absorbed(qs, {own}, cache) : attend_naive(qs, s, cache));
  }
  return o;
}

Tensor MLAttention::attend_naive(const Tensor& q, const BatchSequence& s, const Tensor& cache) const {
  const int64_t ctx = s.start_pos + s.num_tokens, R = c_.kv_lora_rank, Dr = c_.qk_rope_head_dim;
  const int64_t nope = c_.qk_nope_head_dim, vd = c_.v_head_dim, Hl = local_heads_;
  Tensor rows = ops::gather_cache(cache, s.block_table, ctx);  // [ctx, R + Dr]
  Tensor kvb = wkv_b_.forward(ops::narrow_last_dim(rows, 0, R)).view({ctx, Hl, nope + vd});
  // K = [k_nope | k_pe] per head (k_pe shared by all heads), V per head.
  Tensor k = ops::concat_last_dim(ops::narrow_last_dim(kvb, 0, nope), ops::narrow_last_dim(rows, R, Dr).view({ctx, 1, Dr}));
  Tensor v = ops::narrow_last_dim(kvb, nope, vd);
  return ops::attention(q, k, v, softmax_scale_, s.start_pos);
}

Tensor MLAttention::attend_absorbed(const Tensor& q, const std::vector<BatchSequence>& sequences,
                                    const Tensor& cache) const {
  const int64_t R = c_.kv_lora_rank, Dr = c_.qk_rope_head_dim, nope = c_.qk_nope_head_dim;
  Tensor q_lat = ops::head_linear(ops::narrow_last_dim(q, 0, nope), w_uk_t_);  // [n, Hl, R]
  Tensor q_abs = ops::concat_last_dim(q_lat, ops::narrow_last_dim(q, nope, Dr));  // [n, Hl, R + Dr]
  Tensor o_lat = ops::mla_paged_attention(q_abs, cache, sequences, R, softmax_scale_);
  return ops::head_linear(o_lat, w_uv_);  // [n, Hl, v]
}

}  // namespace mlarun
