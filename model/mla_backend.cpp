// The two MLA backends (see mla_backend.h).
#include "model/mla_backend.h"

#include <algorithm>
#include <unordered_map>
#include <utility>

#include "kernels/kv_quant.h"
#include "runtime/device.h"
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
    const KvCacheFormat fmt = kv_cache_format(cache.dtype(), q.dtype(), c_.kv_lora_rank, c_.qk_rope_head_dim);
    if (fmt.quantized()) return dequantized(q, cache, fmt, w);
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
  // A quantized cache (kernels/kv_quant.h): each sequence's context read back dequantized into a one-block pool of
  // its own, then the same two paths as above; every cached row, this step's included, goes through the format.
  Tensor dequantized(const Tensor& q, const Tensor& cache, const KvCacheFormat& fmt, const MlaLayerWeights& w) const {
    const ForwardBatch& batch = *batch_;
    Tensor o = Tensor::zeros({q.dim(0), heads_, c_.v_head_dim}, q.dtype(), q.device());
    for (const BatchSequence& s : batch.sequences) {
      if (s.num_tokens == 0) continue;
      const int64_t ctx = s.start_pos + s.num_tokens;
      const Tensor pool =
          ops::gather_cache_dequantized(cache, fmt, s.block_table, ctx, q.dtype()).view({1, ctx, fmt.width()});
      const BatchSequence own{0, s.num_tokens, s.start_pos, {0}};
      const Tensor qs = q.rows(s.token_start, s.num_tokens);
      ops::copy_into(o.rows(s.token_start, s.num_tokens),
                     uses_absorbed_path(batch, s) ? absorbed(qs, {own}, pool, w) : naive(qs, own, pool, w));
    }
    return o;
  }

  Tensor naive(const Tensor& q, const BatchSequence& s, const Tensor& cache, const MlaLayerWeights& w) const {
    const int64_t ctx = s.start_pos + s.num_tokens, nope = c_.qk_nope_head_dim, vd = c_.v_head_dim;
    // K = [k_nope | k_pe] per head (k_pe shared by all heads), V per head.
    const auto [k, v] = ops::mla_up_project(ops::gather_cache(cache, s.block_table, ctx), w.wkv_b, nope, vd);
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
  BatchedMlaBackend(const ModelConfig& c, int64_t heads, const Placement& placement, MlaDcpGroup dcp,
                    MlaBackendOptions options)
      : c_(c),
        heads_(heads),
        out_heads_(heads / dcp.size()),
        placement_(placement),
        dcp_(dcp),
        options_(options),
        scale_(float(c.softmax_scale())) {}
  const char* name() const override { return "batched"; }

  void plan(const ForwardBatch& batch, const StepTensors& step) override {
    MLARUN_CHECK(step.dcp.size == dcp_.size() && step.dcp.rank == dcp_.rank(), "MLA backend: step tensors for rank ",
                 step.dcp.rank, " of a decode-context-parallel group of ", step.dcp.size, ", the model is rank ",
                 dcp_.rank(), " of ", dcp_.size());
    step_ = &step;
    batch_ = &batch;
    absorbed_slots_ = Tensor();
    local_blocks_ = LocalBlocks();
    decode_planned_ = false;  // the first layer plans mla_decode: the plan needs the cache's format
    pieces_ = plan_prefill_pieces(step.naive, options_.prefill_context_piece_rows, step.device);
    kv_rows_peak_ = 0;
  }

  int64_t kv_rows_peak() const override { return kv_rows_peak_; }

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
  // Where the naive path reads context latents: `table` ([rows, 1, width] blocks of one row, or the cache itself)
  // and `index`, one entry per context row of the part (kv_slots order), its row in `table`.
  struct ContextLatents {
    Tensor table;
    Tensor index;
    KvCacheFormat fmt;
  };

  ContextLatents context_latents(const Tensor& cache, DType dtype) const {
    const StepPart& part = step_->naive;
    const KvCacheFormat fmt = kv_cache_format(cache.dtype(), dtype, c_.kv_lora_rank, c_.qk_rope_head_dim);
    if (!dcp_.on()) return {cache, part.kv_slots, fmt};
    // This rank's rows of every context (padded alike on every rank) as the cache holds them (a quantized cache:
    // its stored bytes), gathered from the whole group; row p of a context came from rank p % N and context_rows
    // puts them back in position order. A quantized table is read back dequantized: the values dcp 1 reads.
    const Tensor mine = ops::gather_rows(cache.view({cache.dim(0) * cache.dim(1), cache.dim(2)}), part.kv_slots);
    const int64_t padded = mine.dim(0), W = mine.dim(1);
    const Tensor all = dcp_.comm->all_gather_last_dim(mine);  // rank-interleaved
    return {all.view({padded * dcp_.size(), 1, W}), part.context_rows, fmt};
  }

  // The latent rows `index` names, up-projected: k [n, H_out, nope + rope] (k_pe shared by all heads), v per head.
  ops::KeysValues up_projected(const ContextLatents& src, const Tensor& index, DType dtype,
                               const MlaLayerWeights& w) const {
    const int64_t n = index.numel(), nope = c_.qk_nope_head_dim, vd = c_.v_head_dim;
    const Tensor& t = src.table;
    const Tensor rows = src.fmt.quantized() ? ops::gather_rows_dequantized(t, src.fmt, index, dtype)
                                            : ops::gather_rows(t.view({t.dim(0) * t.dim(1), t.dim(2)}), index);
    kv_rows_peak_ = std::max(kv_rows_peak_, n);
    ops::KeysValues kv = ops::mla_up_project(rows, w.wkv_b, nope, vd);
    MLARUN_CHECK(kv.k.dim(1) == out_heads_, "MLA naive path: wkv_b ", w.wkv_b.describe(), " up-projects ",
                 kv.k.dim(1), " heads, this rank attends ", out_heads_);
    return kv;
  }

  // Every context row of every prefill sequence gathered and up-projected at once (one GEMM), then varlen
  // attention; past the piece budget, piece by piece (model/prefill_pieces.h) with an f32 running output.
  Tensor naive(const Tensor& q, const Tensor& cache, const MlaLayerWeights& w) const {
    const StepPart& part = step_->naive;
    const ContextLatents src = context_latents(cache, q.dtype());
    const Tensor qh = own_heads(q, c_.qk_head_dim());
    if (pieces_.empty()) {
      const auto [k, v] = up_projected(src, src.index, q.dtype(), w);
      return ops::varlen_attention(qh, k, v, scale_, part);
    }
    // The running result: rows [0, done) hold what the pieces so far gave them. A piece's query rows start at or
    // before `done` (its first sequence began in an earlier piece, or right where the last one ended), so its
    // partial result merges into the rows already there and starts the rest.
    const int64_t T = qh.dim(0), H = qh.dim(1);
    Tensor o = Tensor::empty({T, H, c_.v_head_dim}, DType::F32, q.device());
    Tensor lse = Tensor::empty({T, H}, DType::F32, q.device());
    int64_t done = 0;
    for (const PrefillPiece& piece : pieces_) {
      const auto [k, v] = up_projected(src, src.index.rows(piece.first_row, piece.num_rows), q.dtype(), w);
      const int64_t q0 = piece.first_query, n = piece.num_queries, seen = done - q0;
      MLARUN_CHECK(seen >= 0 && seen <= n, "MLA prefill pieces: a piece's query rows [", q0, ", ", q0 + n,
                   ") leave rows before ", done, " unattended");
      Tensor lse_piece;
      const Tensor o_piece = ops::varlen_attention(qh.rows(q0, n), k, v, scale_, piece.layout, lse_piece);
      if (seen > 0) {
        Tensor o_seen = o.rows(q0, seen), lse_seen = lse.rows(q0, seen);
        ops::merge_attention_partials(o_seen, lse_seen, o_piece.rows(0, seen), lse_piece.rows(0, seen));
      }
      if (seen < n) {
        ops::copy_into(o.rows(done, n - seen), ops::convert(o_piece.rows(seen, n - seen), DType::F32));
        ops::copy_into(lse.rows(done, n - seen), lse_piece.rows(seen, n - seen));
        done = q0 + n;
      }
    }
    MLARUN_CHECK(done == T, "MLA prefill pieces: ", T - done, " query rows saw no piece");
    return ops::convert(o, q.dtype());
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
    const KvCacheFormat fmt = kv_cache_format(cache.dtype(), q.dtype(), R, Dr);
    const ops::MlaDecodePlan& plan = decode_plan(fmt.quant);
    if (plan.fast) {  // kernels/cuda/mla_decode, over a bf16, fp8 or int8 cache; its lse feeds the DCP merge
      if (!dcp_.on()) return ops::head_linear(ops::mla_decode(q_abs, cache, step_->absorbed, plan, R, scale_), w.w_uv);
      Tensor lse;
      Tensor o = ops::mla_decode(q_abs, cache, step_->absorbed, plan, R, scale_, &lse);
      return merged_over_group(o, lse, w);
    }
    if (fmt.quantized() && !dcp_.on()) {  // every context row dequantized, then MQA over [c | k_pe] keys and c values
      // Its row count is the step's total context, which a CUDA graph would freeze: no capture of this path.
      MLARUN_CHECK(!stream_is_capturing(), "MLA decode over a quantized cache outside mla_decode's contract sizes "
                   "its reads by the context lengths");
      const Tensor rows = ops::gather_rows_dequantized(cache, fmt, absorbed_slots(cache), q.dtype());
      const int64_t K = rows.dim(0);
      Tensor o = ops::varlen_attention(q_abs, rows.view({K, 1, R + Dr}), ops::narrow_last_dim(rows, 0, R).view({K, 1, R}),
                                       scale_, step_->absorbed);
      return ops::head_linear(o, w.w_uv);
    }
    if (!dcp_.on()) return ops::head_linear(ops::mla_decode(q_abs, cache, step_->absorbed, plan, R, scale_), w.w_uv);
    // This rank's slice of every context: partial o_lat and lse per (row, head); a row that sees none of this
    // rank's tokens gives o 0, lse -inf. Merged exactly: o = sum_r exp(lse_r - LSE) o_r over the group.
    // A quantized cache: the same over this rank's blocks read back dequantized (local_blocks).
    Tensor lse, o;
    if (fmt.quantized()) {
      const LocalBlocks& lb = local_blocks(cache);
      const Tensor blocks = ops::gather_rows_dequantized(cache, fmt, lb.slots, q.dtype());
      o = ops::mla_paged_attention_part(q_abs, blocks.view({lb.count, cache.dim(1), R + Dr}), lb.part, R, scale_, &lse);
    } else {
      o = ops::mla_paged_attention_part(q_abs, cache, step_->absorbed, R, scale_, &lse);  // [n, H_q, R]
    }
    return merged_over_group(o, lse, w);
  }

  // Under DCP: this rank's partial o_lat [n, H_q, R] and lse [n, H_q] merged over the group by log-sum-exp, then
  // this rank's own heads up-projected.
  Tensor merged_over_group(Tensor& o, const Tensor& lse, const MlaLayerWeights& w) const {
    const Tensor lse_all = dcp_.comm->all_gather_last_dim(lse);  // [n, N * H_q]
    ops::lse_merge_rescale(o, lse_all, dcp_.rank());
    dcp_.comm->all_reduce_sum(o);
    return ops::head_linear(own_heads(o, c_.kv_lora_rank), w.w_uv);
  }

  // The step's mla_decode plan, made by the first layer that asks (its workspace and schedule serve every layer).
  const ops::MlaDecodePlan& decode_plan(KvQuant cache) const {
    if (!decode_planned_) {
      decode_ = ops::plan_mla_decode(step_->absorbed, step_->device, placement_.dtype, heads_, c_.kv_lora_rank,
                                     c_.qk_rope_head_dim, step_->block_size, cache);
      decode_planned_ = true;
    }
    return decode_;
  }

  // The cache slot of every context row of the absorbed part's sequences, in order (what a quantized cache is read
  // through; the part itself lists slots for the naive path only), built once per step.
  const Tensor& absorbed_slots(const Tensor& cache) const {
    if (absorbed_slots_.defined()) return absorbed_slots_;
    const int64_t bs = cache.dim(1);
    std::vector<int64_t> slots;
    for (int64_t j : step_->absorbed.seqs) {
      const BatchSequence& s = batch_->sequences[size_t(j)];
      for (int64_t p = 0; p < s.start_pos + s.num_tokens; ++p)
        slots.push_back(int64_t(s.block_table[size_t(p / bs)]) * bs + p % bs);
    }
    Tensor host = Tensor::empty({int64_t(slots.size())}, DType::I64);
    std::copy(slots.begin(), slots.end(), host.data<int64_t>());
    absorbed_slots_ = host.to(cache.device());
    return absorbed_slots_;
  }

  // Under DCP with a quantized cache: the blocks the absorbed part reads on this rank, numbered 0..count-1 in a
  // pool of their own (dequantized per layer from `slots`, every row of each block), and the part with its block
  // tables renumbered into it; built once per step. Rows past a sequence's tokens are read back but never seen.
  struct LocalBlocks {
    int64_t count = 0;
    Tensor slots;  // i64 [count * block_size] on the cache's device
    StepPart part;
  };
  const LocalBlocks& local_blocks(const Tensor& cache) const {
    if (local_blocks_.slots.defined()) return local_blocks_;
    const StepPart& part = step_->absorbed;
    const int64_t bs = cache.dim(1);
    Tensor tables = part.block_tables.to(Device::CPU);  // a copy: the step's tensors stay as they are
    std::vector<int64_t> slots;
    std::unordered_map<int32_t, int32_t> renumbered;
    for (int64_t i = 0; i < tables.numel(); ++i) {
      int32_t& id = tables.data<int32_t>()[i];
      const auto [it, fresh] = renumbered.emplace(id, int32_t(renumbered.size()));
      if (fresh)
        for (int64_t o = 0; o < bs; ++o) slots.push_back(int64_t(id) * bs + o);
      id = it->second;
    }
    Tensor host = Tensor::empty({int64_t(slots.size())}, DType::I64);
    std::copy(slots.begin(), slots.end(), host.data<int64_t>());
    local_blocks_.count = int64_t(renumbered.size());
    local_blocks_.slots = cache.device() == Device::CPU ? host : host.to(cache.device());
    local_blocks_.part = part;
    local_blocks_.part.block_tables = cache.device() == Device::CPU ? tables : tables.to(cache.device());
    return local_blocks_;
  }

  ModelConfig c_;
  int64_t heads_;      // H_q
  int64_t out_heads_;  // H_out
  Placement placement_;
  MlaDcpGroup dcp_;
  MlaBackendOptions options_;
  float scale_;
  const StepTensors* step_ = nullptr;
  std::vector<PrefillPiece> pieces_;  // the step's naive context in pieces; empty: it fits at once
  mutable int64_t kv_rows_peak_ = 0;
  const ForwardBatch* batch_ = nullptr;
  mutable Tensor absorbed_slots_;  // i64 on the cache's device; undefined until a quantized cache asks
  mutable LocalBlocks local_blocks_;  // undefined slots until a quantized cache under DCP asks
  mutable ops::MlaDecodePlan decode_;
  mutable bool decode_planned_ = false;
};

}  // namespace

std::unique_ptr<MlaBackend> make_mla_backend(MlaBackendKind kind, const ModelConfig& c, int64_t local_heads,
                                             const Placement& placement, MlaDcpGroup dcp,
                                             MlaBackendOptions options) {
  MLARUN_CHECK(local_heads % dcp.size() == 0, "MLA backend: ", local_heads, " query heads do not split over ",
               dcp.size(), " ranks of a decode-context-parallel group");
  if (kind == MlaBackendKind::Auto)
    kind = placement.device == Device::CUDA ? MlaBackendKind::Batched : MlaBackendKind::Reference;
  if (kind == MlaBackendKind::Reference && !dcp.on()) return std::make_unique<ReferenceMlaBackend>(c, local_heads);
  return std::make_unique<BatchedMlaBackend>(c, local_heads, placement, dcp, options);
}

}  // namespace mlarun
