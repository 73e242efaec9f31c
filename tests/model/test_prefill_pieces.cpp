// Chunked naive prefill in pieces (model/prefill_pieces.h): the batched MLA backend with a tiny context-row budget
// (1, 5, 7, 64 rows, so that pieces cut sequences anywhere) gives the logits of the unpieced path within 1e-5 on
// every fixture, over steps of several prefill sequences, chunks over a cached prefix and decodes, with the f32,
// fp8 and int8 caches; and it never holds K/V for more rows than the budget. Below the model: the piece plan
// covers each query row's visible keys exactly once, and varlen attention with causal offsets over pieces of the
// keys, merged by log-sum-exp, is attention.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kernels/ops.h"
#include "model/deepseek_model.h"
#include "model/prefill_pieces.h"
#include "runtime/cache_pool.h"
#include "runtime/runtime_options.h"
#include "test_util.h"

using namespace mlarun;

namespace {

std::vector<int32_t> tokens(int64_t n, int32_t seed) {
  std::vector<int32_t> t;
  for (int64_t i = 0; i < n; ++i) t.push_back(int32_t((seed + 37 * i) % 150 + 1));
  return t;
}

struct StepResult {
  Tensor logits;
  int64_t kv_rows_peak = 0;  // what the backend reported
  int64_t context_rows = 0;  // the step's naive context rows (StepPart::total_k)
};

// Four steps over three sequences (block size 4, shuffled tables): two prefills; a chunk over a cached prefix
// beside a decode and a fresh prefill; two chunks over cached prefixes; decodes only.
std::vector<StepResult> run_steps(DeepseekModel& model, KvCacheDtype kv) {
  const ModelConfig& c = model.config();
  const KvCacheStorage row = kv_cache_storage(kv, DType::F32, c.kv_lora_rank, c.qk_rope_head_dim);
  CachePool pool = CachePool::allocate(c.n_layers, 48, 4, row.dtype == DType::F32 ? model.cache_width() : row.width,
                                       row.dtype, Device::CPU);
  std::vector<std::vector<int32_t>> tables(3);
  for (int32_t b = 0; b < 48; ++b) tables[size_t(b % 3)].push_back(int32_t((b * 7) % 48));  // 16 blocks each
  const std::vector<std::vector<int32_t>> seq = {tokens(61, 3), tokens(40, 11), tokens(30, 29)};
  std::vector<StepResult> out;
  auto step = [&](std::vector<std::tuple<int, int64_t, int64_t>> parts) {
    ForwardBatch batch;
    for (auto [s, start, n] : parts) {
      const int64_t first = batch.add_sequence(seq[size_t(s)].data() + start, n, start, tables[size_t(s)], 4);
      for (int64_t i = 0; i < n; ++i) batch.logit_rows.push_back(first + i);
    }
    const StepTensors st = StepTensors::build(batch, Device::CPU, 4, 48);
    out.push_back({model.forward(batch, st, pool.layers), model.mla_backend().kv_rows_peak(), st.naive.total_k});
  };
  step({{0, 0, 23}, {1, 0, 9}});                // two prefills
  step({{1, 9, 1}, {0, 23, 19}, {2, 0, 13}});   // a decode, a chunk over a cached prefix, a fresh prefill
  step({{2, 13, 17}, {0, 42, 18}, {1, 10, 6}});  // three chunks over cached prefixes: 30 + 60 + 16 context rows
  step({{0, 60, 1}, {1, 16, 1}});               // decodes only
  return out;
}

void expect_pieced_equals_unpieced(const std::string& fixture, KvCacheDtype kv) {
  SingleCommunicator comm;
  auto model = DeepseekModel::load(mlarun::testing::data_dir() + "/" + fixture, comm);
  model->set_mla_backend(MlaBackendKind::Batched);
  const std::vector<StepResult> want = run_steps(*model, kv);
  for (const StepResult& r : want) EXPECT_EQ(r.kv_rows_peak, r.context_rows) << "default budget: one piece";
  for (int64_t budget : {1, 5, 7, 64}) {
    SCOPED_TRACE(fixture + " " + kv_cache_dtype_name(kv) + " budget " + std::to_string(budget));
    model->set_mla_backend(MlaBackendKind::Batched, {budget});
    const std::vector<StepResult> got = run_steps(*model, kv);
    ASSERT_EQ(got.size(), want.size());
    bool pieced = false;
    for (size_t s = 0; s < want.size(); ++s) {
      ASSERT_EQ(got[s].logits.shape(), want[s].logits.shape());
      float worst = 0, scale = 0;
      for (int64_t i = 0; i < want[s].logits.numel(); ++i) {
        worst = std::max(worst, std::fabs(want[s].logits.data<float>()[i] - got[s].logits.data<float>()[i]));
        scale = std::max(scale, std::fabs(want[s].logits.data<float>()[i]));
      }
      EXPECT_LT(worst, 1e-5f * std::max(1.0f, scale)) << "step " << s;
      EXPECT_GT(scale, 1e-3f) << "step " << s;
      EXPECT_LE(got[s].kv_rows_peak, budget) << "step " << s << ": K/V held for more rows than the budget";
      pieced = pieced || got[s].context_rows > budget;
    }
    EXPECT_TRUE(pieced) << "no step went past the budget";
  }
}

// A ForwardBatch's naive part, for the plan alone.
StepPart naive_part(const std::vector<std::pair<int64_t, int64_t>>& start_and_n) {
  static const std::vector<int32_t> table = {0, 1, 2, 3, 4, 5, 6, 7};
  static const std::vector<int32_t> ids(64, 1);
  ForwardBatch batch;
  for (auto [start, n] : start_and_n) batch.add_sequence(ids.data(), n, start, table, 8);
  return StepTensors::build(batch, Device::CPU, 8, 8).naive;
}

}  // namespace

TEST(PrefillPieces, PlanCoversEachRowsVisibleKeysOnce) {
  const StepPart part = naive_part({{10, 6}, {0, 9}, {30, 2}});  // contexts 16, 9, 32: 57 rows
  EXPECT_TRUE(plan_prefill_pieces(part, 57, Device::CPU).empty()) << "it fits: no pieces";
  for (int64_t budget : {1, 5, 7, 16, 56}) {
    const std::vector<PrefillPiece> pieces = plan_prefill_pieces(part, budget, Device::CPU);
    ASSERT_EQ(int64_t(pieces.size()), (57 + budget - 1) / budget);
    std::vector<std::vector<int>> seen(size_t(part.num_tokens), std::vector<int>(57, 0));  // [query][context row]
    for (const PrefillPiece& p : pieces) {
      EXPECT_LE(p.num_rows, budget);
      const ops::OffsetVarlen& l = p.layout;
      ASSERT_GE(l.num_seqs(), 1);
      EXPECT_EQ(l.cu_seqlens_k_host.back(), p.num_rows) << "the piece's rows are its sequences' keys";
      EXPECT_EQ(l.cu_seqlens_q_host.back(), p.num_queries);
      EXPECT_EQ(std::vector<int32_t>(l.causal_offset.data<int32_t>(), l.causal_offset.data<int32_t>() + l.num_seqs()),
                l.causal_offset_host) << "the tensors hold the host lists";
      for (int64_t b = 0; b < l.num_seqs(); ++b)
        for (int64_t i = l.cu_seqlens_q_host[size_t(b)]; i < l.cu_seqlens_q_host[size_t(b + 1)]; ++i)
          for (int64_t j = 0; j < l.cu_seqlens_k_host[size_t(b + 1)] - l.cu_seqlens_k_host[size_t(b)]; ++j)
            if (j <= l.causal_offset_host[size_t(b)] + (i - l.cu_seqlens_q_host[size_t(b)]))
              ++seen[size_t(p.first_query + i)][size_t(p.first_row + l.cu_seqlens_k_host[size_t(b)] + j)];
    }
    for (int64_t j = 0; j < part.num_seqs(); ++j) {
      const int64_t q0 = part.cu_seqlens_q_host[size_t(j)], n = part.cu_seqlens_q_host[size_t(j + 1)] - q0;
      const int64_t k0 = part.cu_seqlens_k_host[size_t(j)], ctx = part.cu_seqlens_k_host[size_t(j + 1)] - k0;
      for (int64_t i = 0; i < n; ++i)
        for (int64_t r = 0; r < 57; ++r)
          EXPECT_EQ(seen[size_t(q0 + i)][size_t(r)], r >= k0 && r <= k0 + ctx - n + i ? 1 : 0)
              << "budget " << budget << " query " << q0 + i << " context row " << r;
    }
  }
}

// Attention over 23 keys (4 queries at the end, bottom-right causal) equals its ranges [0, 5), [5, 12), [12, 21),
// [21, 23) attended apart with the causal offset of each (a range before the queries: every row sees all of it;
// the last: some rows see none of it) and merged by log-sum-exp; a row that sees none of a range keeps o 0,
// lse -inf there, and merging that changes nothing. Two sequences in one batch: the second's offsets are its own.
TEST(PrefillPieces, OffsetVarlenAttentionMergedByLseIsAttention) {
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  auto random = [&](Shape shape) {
    Tensor t = Tensor::empty(shape, DType::F32);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
    return t;
  };
  const int64_t Tq = 4, H = 4, Tk = 23, start = Tk - Tq;
  const Tensor q = random({Tq, H, 24}), k = random({Tk, 2, 24}), v = random({Tk, 2, 16});
  Tensor want_lse;
  const Tensor want = ops::attention(q, k, v, 0.3f, start, &want_lse);
  // The batch: sequence 0 is a throwaway of 3 queries over 2 keys (offset 5: all visible); sequence 1 the one above.
  const Tensor q_other = random({3, H, 24}), k_other = random({2, 2, 24}), v_other = random({2, 2, 16});
  auto stacked = [](const Tensor& a, const Tensor& b) {  // a's rows, then b's
    Shape shape = a.shape();
    shape[0] += b.dim(0);
    Tensor t = Tensor::empty(shape, DType::F32);
    ops::copy_into(t.rows(0, a.dim(0)), a);
    ops::copy_into(t.rows(a.dim(0), b.dim(0)), b);
    return t;
  };
  Tensor o = Tensor::zeros({Tq, H, 16}, DType::F32), lse = Tensor::empty({Tq, H}, DType::F32);
  for (int64_t i = 0; i < lse.numel(); ++i) lse.data<float>()[i] = -INFINITY;
  for (auto [k0, k1] : std::vector<std::pair<int64_t, int64_t>>{{0, 5}, {5, 12}, {12, 21}, {21, 23}}) {
    ops::OffsetVarlen l;
    l.cu_seqlens_q_host = {0, 3, int32_t(3 + Tq)};
    l.cu_seqlens_k_host = {0, 2, int32_t(2 + k1 - k0)};
    l.causal_offset_host = {5, int32_t(start - k0)};
    Tensor part_lse;
    const Tensor part = ops::varlen_attention(stacked(q_other, q), stacked(k_other, k.rows(k0, k1 - k0)),
                                              stacked(v_other, v.rows(k0, k1 - k0)), 0.3f, l, part_lse);
    for (int64_t r = 0; r < 3; ++r) {  // sequence 0: offset 5 lets each of its rows see both its keys
      const Tensor other = ops::attention(q_other.rows(r, 1), k_other, v_other, 0.3f, 1);
      for (int64_t i = 0; i < other.numel(); ++i)
        EXPECT_NEAR(part.data<float>()[r * H * 16 + i], other.data<float>()[i], 1e-6f) << "sequence 0, piece " << k0;
    }
    Tensor part_mine = part.rows(3, Tq), lse_mine = part_lse.rows(3, Tq);
    if (k0 == 21) {  // queries at 19..22 see keys up to themselves: rows 0 and 1 see none of [21, 23)
      for (int64_t i = 0; i < 2 * H; ++i) EXPECT_EQ(lse_mine.data<float>()[i], -INFINITY);
      for (int64_t i = 0; i < 2 * H * 16; ++i) EXPECT_EQ(part_mine.data<float>()[i], 0.0f);
    }
    ops::merge_attention_partials(o, lse, part_mine, lse_mine);
  }
  for (int64_t i = 0; i < want.numel(); ++i) EXPECT_NEAR(o.data<float>()[i], want.data<float>()[i], 1e-5f);
  for (int64_t i = 0; i < want_lse.numel(); ++i) EXPECT_NEAR(lse.data<float>()[i], want_lse.data<float>()[i], 1e-4f);

  ops::OffsetVarlen none;  // an offset before every key: nothing seen
  none.cu_seqlens_q_host = {0, int32_t(Tq)};
  none.cu_seqlens_k_host = {0, int32_t(Tk)};
  none.causal_offset_host = {-int32_t(Tq)};
  Tensor none_lse;
  const Tensor nothing = ops::varlen_attention(q, k, v, 0.3f, none, none_lse);
  for (int64_t i = 0; i < nothing.numel(); ++i) EXPECT_EQ(nothing.data<float>()[i], 0.0f);
  for (int64_t i = 0; i < none_lse.numel(); ++i) EXPECT_EQ(none_lse.data<float>()[i], -INFINITY);
  Tensor kept = o.clone(), kept_lse = lse.clone();
  ops::merge_attention_partials(kept, kept_lse, nothing, none_lse);  // merging nothing changes nothing
  for (int64_t i = 0; i < o.numel(); ++i) EXPECT_EQ(kept.data<float>()[i], o.data<float>()[i]);

  ops::OffsetVarlen bad = none;  // a layout that does not fit the tensors is refused by name
  bad.cu_seqlens_k_host = {0, int32_t(Tk - 1)};
  EXPECT_ERROR_MENTIONS(ops::varlen_attention(q, k, v, 0.3f, bad, none_lse), "varlen_attention");
}

TEST(PrefillPieces, PiecedEqualsUnpiecedOnEveryFixture) {
  for (const std::string& fixture : mlarun::testing::reference_fixtures())
    expect_pieced_equals_unpieced(fixture, KvCacheDtype::Auto);
}

TEST(PrefillPieces, PiecedEqualsUnpiecedOnQuantizedCaches) {
  for (const char* fixture : {"deepseek-v2-tiny", "deepseek-v3-tiny", "shapes/v2-grouped-norope"})
    for (KvCacheDtype kv : {KvCacheDtype::Fp8, KvCacheDtype::Int8}) expect_pieced_equals_unpieced(fixture, kv);
}
