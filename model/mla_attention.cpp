// MLA forward, both paths (see mla_attention.h and spec 3.2-3.4).
#include "model/mla_attention.h"

#include <cstring>

#include "runtime/error.h"

namespace mlarun {

MLAttention::MLAttention(const ModelConfig& c, const WeightSource& ckpt, const std::string& prefix, Communicator& comm)
    : c_(c),
      local_heads_(c.n_heads / comm.world_size()),
      softmax_scale_(float(c.softmax_scale())),
      eps_(float(c.rms_norm_eps)) {
  const int64_t H = c.n_heads, qk = c.qk_head_dim(), nope = c.qk_nope_head_dim, vd = c.v_head_dim;
  if (c.q_lora_rank > 0) {
    wq_a_ = ReplicatedLinear(ckpt, prefix + "q_a_proj.weight", c.dim, c.q_lora_rank);
    q_norm_ = load_checked(ckpt, prefix + "q_a_layernorm.weight", {c.q_lora_rank});
    wq_b_ = ColumnParallelLinear(ckpt, prefix + "q_b_proj.weight", c.q_lora_rank, H * qk, comm);
  } else {
    wq_ = ColumnParallelLinear(ckpt, prefix + "q_proj.weight", c.dim, H * qk, comm);
  }
  wkv_a_ = ReplicatedLinear(ckpt, prefix + "kv_a_proj_with_mqa.weight", c.dim, c.latent_dim());
  kv_norm_ = load_checked(ckpt, prefix + "kv_a_layernorm.weight", {c.kv_lora_rank});
  wkv_b_ = ColumnParallelLinear(ckpt, prefix + "kv_b_proj.weight", c.kv_lora_rank, H * (nope + vd), comm);
  wo_ = RowParallelLinear(ckpt, prefix + "o_proj.weight", H * vd, c.dim, comm);

  // Split wkv_b per head into W_UK [nope, R] (stored transposed, [R, nope]) and W_UV [v, R].
  const int64_t R = c.kv_lora_rank, Hl = local_heads_;
  w_uk_t_ = Tensor::empty({Hl, R, nope}, DType::F32);
  w_uv_ = Tensor::empty({Hl, vd, R}, DType::F32);
  const float* w = wkv_b_.weight().data<float>();
  for (int64_t h = 0; h < Hl; ++h) {
    const float* head = w + h * (nope + vd) * R;
    for (int64_t d = 0; d < nope; ++d)
      for (int64_t r = 0; r < R; ++r) w_uk_t_.data<float>()[(h * R + r) * nope + d] = head[d * R + r];
    std::memcpy(w_uv_.data<float>() + h * vd * R, head + nope * R, size_t(vd * R) * 4);
  }
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
  Tensor latent = Tensor::empty({T, R}, DType::F32);
  for (int64_t t = 0; t < T; ++t)
    std::memcpy(latent.data<float>() + t * R, kv.data<float>() + t * (R + Dr), size_t(R) * 4);
  Tensor normed = ops::rms_norm(latent, kv_norm_, eps_);
  Tensor rows = kv.view({T, 1, R + Dr});
  ops::apply_rope(rows, batch.positions, rope);
  for (int64_t t = 0; t < T; ++t)
    std::memcpy(kv.data<float>() + t * (R + Dr), normed.data<float>() + t * R, size_t(R) * 4);
  ops::write_cache(cache, batch.slot_mapping, kv);

  const int64_t Hl = local_heads_, vd = c_.v_head_dim;
  Tensor o = Tensor::empty({T, Hl * vd}, DType::F32);
  for (const BatchSequence& s : batch.sequences) {
    Tensor qs = q.rows(s.token_start, s.num_tokens);
    bool absorbed = batch.mla_path == MlaPath::Absorbed || (batch.mla_path == MlaPath::Auto && s.num_tokens == 1);
    Tensor os = absorbed ? attend_absorbed(qs, s, cache) : attend_naive(qs, s, cache);
    std::memcpy(o.data<float>() + s.token_start * Hl * vd, os.data<float>(), os.nbytes());
  }
  return wo_.forward(o);
}

Tensor MLAttention::attend_naive(const Tensor& q, const BatchSequence& s, const Tensor& cache) const {
  const int64_t ctx = s.start_pos + s.num_tokens, R = c_.kv_lora_rank, Dr = c_.qk_rope_head_dim;
  const int64_t nope = c_.qk_nope_head_dim, vd = c_.v_head_dim, qk = c_.qk_head_dim(), Hl = local_heads_;
  Tensor rows = ops::gather_cache(cache, s.block_table, ctx);  // [ctx, R + Dr]
  Tensor c = Tensor::empty({ctx, R}, DType::F32);
  for (int64_t t = 0; t < ctx; ++t)
    std::memcpy(c.data<float>() + t * R, rows.data<float>() + t * (R + Dr), size_t(R) * 4);
  Tensor kvb = wkv_b_.forward(c);  // [ctx, Hl * (nope + vd)]
  Tensor k = Tensor::empty({ctx, Hl, qk}, DType::F32);
  Tensor v = Tensor::empty({ctx, Hl, vd}, DType::F32);
  for (int64_t t = 0; t < ctx; ++t)
    for (int64_t h = 0; h < Hl; ++h) {
      const float* src = kvb.data<float>() + (t * Hl + h) * (nope + vd);
      float* kd = k.data<float>() + (t * Hl + h) * qk;
      std::memcpy(kd, src, size_t(nope) * 4);
      std::memcpy(kd + nope, rows.data<float>() + t * (R + Dr) + R, size_t(Dr) * 4);  // k_pe, shared by heads
      std::memcpy(v.data<float>() + (t * Hl + h) * vd, src + nope, size_t(vd) * 4);
    }
  return ops::attention(q, k, v, softmax_scale_, s.start_pos);
}

Tensor MLAttention::attend_absorbed(const Tensor& q, const BatchSequence& s, const Tensor& cache) const {
  const int64_t n = q.dim(0), Hl = local_heads_, R = c_.kv_lora_rank, Dr = c_.qk_rope_head_dim;
  const int64_t nope = c_.qk_nope_head_dim, qk = c_.qk_head_dim();
  Tensor q_nope = Tensor::empty({n, Hl, nope}, DType::F32);
  for (int64_t i = 0; i < n * Hl; ++i)
    std::memcpy(q_nope.data<float>() + i * nope, q.data<float>() + i * qk, size_t(nope) * 4);
  Tensor q_lat = ops::head_linear(q_nope, w_uk_t_);  // [n, Hl, R]
  Tensor q_abs = Tensor::empty({n, Hl, R + Dr}, DType::F32);
  for (int64_t i = 0; i < n * Hl; ++i) {
    std::memcpy(q_abs.data<float>() + i * (R + Dr), q_lat.data<float>() + i * R, size_t(R) * 4);
    std::memcpy(q_abs.data<float>() + i * (R + Dr) + R, q.data<float>() + i * qk + nope, size_t(Dr) * 4);
  }
  Tensor o_lat = ops::mla_paged_attention(q_abs, cache, s.block_table, R, softmax_scale_, s.start_pos);
  return ops::head_linear(o_lat, w_uv_);  // [n, Hl, v]
}

}  // namespace mlarun
