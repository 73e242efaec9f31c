// MLA forward, both paths (see mla_attention.h and docs/model.md §2.2-2.6).
#include "model/mla_attention.h"

#include "kernels/kv_quant.h"
#include "model/mla_backend.h"
#include "runtime/error.h"
#include "runtime/step_profiler.h"

namespace mlarun {

MLAttention::MLAttention(const ModelConfig& c, const WeightSource& ckpt, const std::string& prefix, Communicator& comm,
                         const Placement& placement, Communicator* dcp)
    : placement_(placement),
      c_(c),
      dcp_{dcp},
      local_heads_(c.n_heads / (comm.world_size() / dcp_.size())),
      out_heads_(c.n_heads / comm.world_size()),
      softmax_scale_(float(c.softmax_scale())),
      eps_(float(c.rms_norm_eps)) {
  const int64_t H = c.n_heads, qk = c.qk_head_dim(), nope = c.qk_nope_head_dim, vd = c.v_head_dim;
  // Head groups: without DCP one per rank; with it, tp / N groups of N consecutive ranks (docs/layouts.md §2.6).
  const int64_t N = dcp_.size(), groups = comm.world_size() / N, group = comm.rank() / N;
  MLARUN_CHECK(comm.world_size() % N == 0 && comm.rank() % N == dcp_.rank(), "MLA: rank ", comm.rank(), " of ",
               comm.world_size(), " is not rank ", dcp_.rank(), " of a decode-context-parallel group of ", N,
               " consecutive ranks");
  if (c.q_lora_rank > 0) {
    wq_a_ = ReplicatedLinear(ckpt, prefix + "q_a_proj.weight", c.dim, c.q_lora_rank, placement);
    q_norm_ = load_checked(ckpt, prefix + "q_a_layernorm.weight", {c.q_lora_rank}, placement);
    wq_b_ = ColumnParallelLinear(ckpt, prefix + "q_b_proj.weight", c.q_lora_rank, H * qk, group, groups, placement);
  } else {
    wq_ = ColumnParallelLinear(ckpt, prefix + "q_proj.weight", c.dim, H * qk, group, groups, placement);
  }
  wkv_a_ = ReplicatedLinear(ckpt, prefix + "kv_a_proj_with_mqa.weight", c.dim, c.latent_dim(), placement);
  kv_norm_ = load_checked(ckpt, prefix + "kv_a_layernorm.weight", {c.kv_lora_rank}, placement);
  wkv_b_ = ColumnParallelLinear(ckpt, prefix + "kv_b_proj.weight", c.kv_lora_rank, H * (nope + vd), group, groups,
                                placement);
  wo_ = RowParallelLinear(ckpt, prefix + "o_proj.weight", H * vd, c.dim, comm, placement);

  // Split wkv_b per head into W_UK [nope, R] (stored transposed, [R, nope]) and W_UV [v, R]: copies of the placed
  // weight, so both paths multiply by the same rounded values. W_UV and the naive path's up-projection cover only
  // the heads this rank outputs (under DCP: heads [rank_in_group * out, +out) of its group's).
  const int64_t R = c.kv_lora_rank, Hl = local_heads_, Ho = out_heads_, first = dcp_.rank() * Ho;
  Tensor per_head = wkv_b_.weight().view({Hl, (nope + vd) * R});
  w_uk_t_ = ops::transpose_last_two(ops::narrow_last_dim(per_head, 0, nope * R).view({Hl, nope, R}));
  w_uv_ = ops::narrow_last_dim(per_head, nope * R, vd * R).rows(first, Ho).view({Ho, vd, R});
  wkv_b_out_ = N == 1 ? wkv_b_.weight() : per_head.rows(first, Ho).clone().view({Ho * (nope + vd), R});
}

// Time split (runtime/step_profiler.h): the projections are dense GEMMs, the cache write and the backend attention,
// the norms and RoPE the step's base; o_proj's all-reduce counts itself as communication.
Tensor MLAttention::project_queries(const Tensor& x) const {
  const auto gemm = [](const auto& linear, const Tensor& in) {
    return profiled(ProfileCategory::DenseGemm, [&] { return linear.forward(in); });
  };
  Tensor q = c_.q_lora_rank > 0 ? gemm(wq_b_, ops::rms_norm(gemm(wq_a_, x), q_norm_, eps_)) : gemm(wq_, x);
  return q.view({x.dim(0), local_heads_, c_.qk_head_dim()});
}

Tensor MLAttention::forward(const Tensor& x, const StepContext& step, Tensor& cache, const ops::RopeTable& rope) const {
  const int64_t T = x.dim(0), R = c_.kv_lora_rank, Dr = c_.qk_rope_head_dim;
  Tensor q = project_queries(x);
  ops::apply_rope(q, step.tensors.positions, rope);  // rotates the last Dr values of each head: q_pe

  // Latent row per token: [kv_norm(c) | rope(k_pe)], the 576 values MLA caches.
  Tensor kv = profiled(ProfileCategory::DenseGemm, [&] { return wkv_a_.forward(x); });  // [T, R + Dr]
  Tensor k_pe = ops::narrow_last_dim(kv, R, Dr).view({T, 1, Dr});
  ops::apply_rope(k_pe, step.tensors.positions, rope);
  Tensor latent = ops::concat_last_dim(ops::rms_norm(ops::narrow_last_dim(kv, 0, R), kv_norm_, eps_),
                                       k_pe.view({T, Dr}));
  const Tensor o = profiled(ProfileCategory::Attention, [&] { return attend(latent, q, step, cache); });
  return profiled(ProfileCategory::DenseGemm, [&] { return wo_.forward(o.view({T, out_heads_ * c_.v_head_dim})); });
}

Tensor MLAttention::attend(const Tensor& latent, const Tensor& q, const StepContext& step, Tensor& cache) const {
  const int64_t R = c_.kv_lora_rank, Dr = c_.qk_rope_head_dim;
  const KvCacheFormat fmt = kv_cache_format(cache.dtype(), latent.dtype(), R, Dr);
  if (fmt.quantized())  // fp8/int8 (or bf16 under f32 activations): written quantized, read back dequantized
    ops::write_cache_quantized(cache, fmt, step.tensors.slot_mapping, latent);
  else
    ops::write_cache(cache, step.tensors.slot_mapping, latent);

  const MlaLayerWeights weights{wkv_b_out_, w_uk_t_, w_uv_};
  if (step.mla) return step.mla->forward(q, cache, weights);
  // A bare call (tests): this step's backend, planned here.
  std::unique_ptr<MlaBackend> own = make_mla_backend(MlaBackendKind::Auto, c_, local_heads_, placement_, dcp_);
  own->plan(step.batch, step.tensors);
  return own->forward(q, cache, weights);
}

}  // namespace mlarun
