// The two MLA backends (see mla_backend.h).
#include "model/mla_backend.h"

#include "runtime/error.h"

namespace mlarun {

namespace {

class ReferenceMlaBackend final : public MlaBackend {
 public:
  ReferenceMlaBackend(const ModelConfig& c, int64_t heads) : c_(c), heads_(heads), scale_(float(c.softmax_scale())) {}
  const char* name() const override { return "reference"; }
  void plan(const ForwardBatch& batch, const StepTensors&) override { batch_ = &batch; }

  Tensor forward(const Tensor& q, const Tensor& cache, const MlaLayerWeights& w) const override {
    MLARUN_CHECK(batch_ != nullptr, "MLA backend: forward before plan");
    const ForwardBatch& batch = *batch_;
    bool all_absorbed = !batch.sequences.empty();
    for (const BatchSequence& s : batch.sequences) all_absorbed = all_absorbed && uses_absorbed_path(batch, s);
    if (all_absorbed) return absorbed(q, batch.sequences, cache, w);  // a decode step: one call for the batch

    Tensor o = Tensor::empty({q.dim(0), heads_, c_.v_head_dim}, q.dtype(), q.device());
    for (const BatchSequence& s : batch.sequences) {
      Tensor qs = q.rows(s.token_start, s.num_tokens);
      BatchSequence own = s;
      own.token_start = 0;  // qs starts at this sequence's first token
      ops::copy_into(o.rows(s.token_start, s.num_tokens),
                     uses_absorbed_path(batch, s) ? absorbed(qs, {own}, cache, w) : naive(qs, s, cache, w));
    }
    return o;
  }

 private:
  Tensor naive(const Tensor& q, const BatchSequence& s, const Tensor& cache, const MlaLayerWeights& w) const {
    const int64_t ctx = s.start_pos + s.num_tokens, R = c_.kv_lora_rank, Dr = c_.qk_rope_head_dim;
    const int64_t nope = c_.qk_nope_head_dim, vd = c_.v_head_dim;
    Tensor rows = ops::gather_cache(cache, s.block_table, ctx);  // [ctx, R + Dr]
    Tensor kvb = ops::linear(ops::narrow_last_dim(rows, 0, R), w.wkv_b).view({ctx, heads_, nope + vd});
    // K = [k_nope | k_pe] per head (k_pe shared by all heads), V per head.
    Tensor k = ops::concat_last_dim(ops::narrow_last_dim(kvb, 0, nope),
                                    ops::narrow_last_dim(rows, R, Dr).view({ctx, 1, Dr}));
    Tensor v = ops::narrow_last_dim(kvb, nope, vd);
    return ops::attention(q, k, v, scale_, s.start_pos);
  }

  Tensor absorbed(const Tensor& q, const std::vector<BatchSequence>& seqs, const Tensor& cache,
                  const MlaLayerWeights& w) const {
    const int64_t R = c_.kv_lora_rank, Dr = c_.qk_rope_head_dim, nope = c_.qk_nope_head_dim;
    Tensor q_lat = ops::head_linear(ops::narrow_last_dim(q, 0, nope), w.w_uk_t);     // [n, H, R]
    Tensor q_abs = ops::concat_last_dim(q_lat, ops::narrow_last_dim(q, nope, Dr));  // [n, H, R + Dr]
    return ops::head_linear(ops::mla_paged_attention(q_abs, cache, seqs, R, scale_), w.w_uv);  // [n, H, v]
  }

  ModelConfig c_;
  int64_t heads_;
  float scale_;
  const ForwardBatch* batch_ = nullptr;
};

class BatchedMlaBackend final : public MlaBackend {
 public:
  BatchedMlaBackend(const ModelConfig& c, int64_t heads, const Placement& placement, MlaDcpGroup dcp)
      : c_(c),
        heads_(heads),
        out_heads_(heads / dcp.size()),
        placement_(placement),
        dcp_(dcp),
        scale_(float(c.softmax_scale())) {}
  const char* name() const override { return "batched"; }

  void plan(const ForwardBatch&, const StepTensors& step) override {
    MLARUN_CHECK(step.dcp.size == dcp_.size() && step.dcp.rank == dcp_.rank(), "MLA backend: step tensors for rank ",
                 step.dcp.rank, " of a decode-context-parallel group of ", step.dcp.size, ", the model is rank ",
                 dcp_.rank(), " of ", dcp_.size());
    step_ = &step;
    if (!dcp_.on())  // under DCP the generic kernel runs: it returns the log-sum-exp the merge needs
      decode_ = ops::plan_mla_decode(step.absorbed, step.device, placement_.dtype, heads_, c_.kv_lora_rank,
                                     c_.qk_rope_head_dim, step.block_size);
  }

  Tensor forward(const Tensor& q, const Tensor& cache, const MlaLayerWeights& w) const override {
    MLARUN_CHECK(step_ != nullptr, "MLA backend: forward before plan");
    const StepTensors& st = *step_;
    Tensor oa, on;
    if (!st.absorbed.empty()) {
      oa = absorbed(st.absorbed.whole_step ? q : ops::gather_rows(q, st.absorbed.rows), cache, w);
      if (st.absorbed.whole_step) return oa;
    }
    if (!st.naive.empty()) {
      on = naive(st.naive.whole_step ? q : ops::gather_rows(q, st.naive.rows), cache, w);
      if (st.naive.whole_step) return on;
    }
    Tensor o = Tensor::zeros({q.dim(0), out_heads_, c_.v_head_dim}, q.dtype(), q.device());
    if (oa.defined()) ops::scatter_rows(o, st.absorbed.rows, oa);
    if (on.defined()) ops::scatter_rows(o, st.naive.rows, on);
    return o;
  }

 private:
  Tensor naive(const Tensor& q, const Tensor& cache, const MlaLayerWeights& w) const {
    const StepPart& part = step_->naive;
    const int64_t K = part.total_k, R = c_.kv_lora_rank, Dr = c_.qk_rope_head_dim;
    const int64_t nope = c_.qk_nope_head_dim, vd = c_.v_head_dim;
    // Every context row of every prefill sequence in one gather, up-projected by one GEMM.
    const Tensor pool = cache.view({cache.dim(0) * cache.dim(1), cache.dim(2)});
    Tensor rows = ops::gather_rows(pool, part.kv_slots);
    if (dcp_.on()) {
      // This rank's rows of every context (padded alike on every rank), gathered from the whole group, then put
      // back in position order: row p of a context came from rank p % N.
      const int64_t padded = rows.dim(0), W = rows.dim(1);
      Tensor all = dcp_.comm->all_gather_last_dim(rows);  // [padded, N * W]
      rows = ops::gather_rows(all.view({padded * dcp_.size(), W}), part.context_rows);
    }
    Tensor kvb = ops::linear(ops::narrow_last_dim(rows, 0, R), w.wkv_b).view({K, out_heads_, nope + vd});
    Tensor k = ops::concat_last_dim(ops::narrow_last_dim(kvb, 0, nope),
                                    ops::narrow_last_dim(rows, R, Dr).view({K, 1, Dr}));
    Tensor v = ops::narrow_last_dim(kvb, nope, vd);
    return ops::varlen_attention(own_heads(q, c_.qk_head_dim()), k, v, scale_, part);
  }

  // x [n, heads_, d] -> this rank's own heads [n, out_heads_, d] (all of them without DCP).
  Tensor own_heads(const Tensor& x, int64_t d) const {
    if (!dcp_.on()) return x;
    const int64_t n = x.dim(0);
    return ops::narrow_last_dim(x.view({n, heads_ * d}), dcp_.rank() * out_heads_ * d, out_heads_ * d)
        .view({n, out_heads_, d});
  }

  Tensor absorbed(const Tensor& q, const Tensor& cache, const MlaLayerWeights& w) const {
    const int64_t R = c_.kv_lora_rank, Dr = c_.qk_rope_head_dim, nope = c_.qk_nope_head_dim;
    Tensor q_lat = ops::head_linear(ops::narrow_last_dim(q, 0, nope), w.w_uk_t);
    Tensor q_abs = ops::concat_last_dim(q_lat, ops::narrow_last_dim(q, nope, Dr));
    if (!dcp_.on()) return ops::head_linear(ops::mla_decode(q_abs, cache, step_->absorbed, decode_, R, scale_), w.w_uv);
    // This rank's slice of every context: partial o_lat and lse per (row, head); a row that sees none of this
    // rank's tokens gives o 0, lse -inf. Merged exactly: o = sum_r exp(lse_r - LSE) o_r over the group.
    Tensor lse;
    Tensor o = ops::mla_paged_attention_part(q_abs, cache, step_->absorbed, R, scale_, &lse);  // [n, H_q, R]
    const Tensor lse_all = dcp_.comm->all_gather_last_dim(lse);                              // [n, N * H_q]
    ops::lse_merge_rescale(o, lse_all, dcp_.rank());
    dcp_.comm->all_reduce_sum(o);
    return ops::head_linear(own_heads(o, R), w.w_uv);
  }

  ModelConfig c_;
  int64_t heads_;      // H_q
  int64_t out_heads_;  // H_out
  Placement placement_;
  MlaDcpGroup dcp_;
  float scale_;
  const StepTensors* step_ = nullptr;
  ops::MlaDecodePlan decode_;
};

}  // namespace

std::unique_ptr<MlaBackend> make_mla_backend(MlaBackendKind kind, const ModelConfig& c, int64_t local_heads,
                                             const Placement& placement, MlaDcpGroup dcp) {
  MLARUN_CHECK(local_heads % dcp.size() == 0, "MLA backend: ", local_heads, " query heads do not split over ",
               dcp.size(), " ranks of a decode-context-parallel group");
  if (kind == MlaBackendKind::Auto)
    kind = placement.device == Device::CUDA ? MlaBackendKind::Batched : MlaBackendKind::Reference;
  if (kind == MlaBackendKind::Reference && !dcp.on()) return std::make_unique<ReferenceMlaBackend>(c, local_heads);
  return std::make_unique<BatchedMlaBackend>(c, local_heads, placement, dcp);
}

}  // namespace mlarun
