// CPU attention (twin of cuda/simple_attention.cu): dense causal attention with GQA/MQA head mapping, and
// absorbed MLA attention over the paged latent cache. One query row at a time against its visible keys, softmax
// in f32 with the sum in double; the log-sum-exp is what the flash and MLA decode kernels are checked against,
// and what decode context parallelism merges the ranks' partial outputs by (lse_merge_rescale).
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_common.h"
#include "kernels/cpu/cpu_ops.h"

namespace mlarun::ops::cpu {

namespace {
// One query row against keys: o[dv] = softmax(scale * q.k_t for t < n_keys) . v_t; returns the log-sum-exp.
// k rows are `k_stride` floats apart, v rows `v_stride` apart.
float attend_one(const float* q, const float* k, int64_t k_stride, const float* v, int64_t v_stride, int64_t n_keys,
                 int64_t dqk, int64_t dv, float scale, float* o, float* scratch) {
  float max_score = -INFINITY;
  for (int64_t t = 0; t < n_keys; ++t) {
    float s = dot(q, k + t * k_stride, dqk) * scale;
    scratch[t] = s;
    max_score = std::fmax(max_score, s);
  }
  double sum = 0;
  for (int64_t t = 0; t < n_keys; ++t) {
    scratch[t] = std::exp(scratch[t] - max_score);
    sum += scratch[t];
  }
  float inv = float(1.0 / sum);
  for (int64_t d = 0; d < dv; ++d) o[d] = 0;
  for (int64_t t = 0; t < n_keys; ++t) {
    float p = scratch[t] * inv;
    const float* vr = v + t * v_stride;
    for (int64_t d = 0; d < dv; ++d) o[d] += p * vr[d];
  }
  return max_score + float(std::log(sum));
}
}  // namespace

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale, int64_t q_offset, Tensor* lse) {
  const int64_t Tq = q.dim(0), H = q.dim(1), D = q.dim(2), Tk = k.dim(0), Hkv = k.dim(1), Dv = v.dim(2);
  Tensor o = Tensor::empty({Tq, H, Dv}, DType::F32);
  if (lse) *lse = Tensor::empty({Tq, H}, DType::F32);
  std::vector<float> scratch(static_cast<size_t>(Tk));
  const int64_t group = H / Hkv;
  for (int64_t i = 0; i < Tq; ++i)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t kh = h / group, n = std::clamp<int64_t>(q_offset + i + 1, 0, Tk);
      const float l = attend_one(q.data<float>() + (i * H + h) * D, k.data<float>() + kh * D, Hkv * D,
                                 v.data<float>() + kh * Dv, Hkv * Dv, n, D, Dv, scale,
                                 o.data<float>() + (i * H + h) * Dv, scratch.data());
      if (lse) lse->data<float>()[i * H + h] = l;
    }
  return o;
}

Tensor mla_paged_attention(const Tensor& q, const Tensor& pool, const std::vector<BatchSequence>& sequences,
                           int64_t kv_lora_rank, float scale, Tensor* lse) {
  const int64_t T = q.dim(0), H = q.dim(1), D = q.dim(2);
  Tensor o = Tensor::zeros({T, H, kv_lora_rank}, DType::F32);
  if (lse) *lse = Tensor::zeros({T, H}, DType::F32);
  for (const BatchSequence& s : sequences) {
    const int64_t ctx = s.start_pos + s.num_tokens;
    Tensor rows = gather_cache(pool, s.block_table, ctx);  // [ctx, Dc + Dr]: keys, and values in [:Dc]
    std::vector<float> scratch(static_cast<size_t>(ctx));
    for (int64_t i = 0; i < s.num_tokens; ++i)
      for (int64_t h = 0; h < H; ++h) {
        const int64_t row = (s.token_start + i) * H + h;
        const float l = attend_one(q.data<float>() + row * D, rows.data<float>(), D, rows.data<float>(), D,
                                   s.start_pos + i + 1, D, kv_lora_rank, scale, o.data<float>() + row * kv_lora_rank,
                                   scratch.data());
        if (lse) lse->data<float>()[row] = l;
      }
  }
  return o;
}

void merge_attention_partials(Tensor& o, Tensor& lse, const Tensor& o_part, const Tensor& lse_part) {
  const int64_t rows = lse.numel(), D = o.dim(2);
  for (int64_t r = 0; r < rows; ++r) {
    const float a = lse.data<float>()[r], b = lse_part.data<float>()[r];
    if (b == -INFINITY) continue;  // the part saw no key: nothing to add
    const double m = std::fmax(a, b);
    const double wa = a == -INFINITY ? 0.0 : std::exp(double(a) - m), wb = std::exp(double(b) - m);
    const double sum = wa + wb;
    float* acc = o.data<float>() + r * D;
    const float* part = o_part.data<float>() + r * D;
    for (int64_t d = 0; d < D; ++d) acc[d] = float((wa * acc[d] + wb * part[d]) / sum);
    lse.data<float>()[r] = float(m + std::log(sum));
  }
}

void lse_merge_rescale(Tensor& o, const Tensor& lse_all, int64_t rank) {
  const int64_t T = o.dim(0), H = o.dim(1), D = o.dim(2), N = lse_all.dim(1) / H;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h) {
      const float* l = lse_all.data<float>() + t * N * H + h;  // rank r's value at l[r * H]
      float m = -INFINITY;
      for (int64_t r = 0; r < N; ++r) m = std::fmax(m, l[r * H]);
      double sum = 0;
      for (int64_t r = 0; r < N && m != -INFINITY; ++r) sum += std::exp(double(l[r * H]) - m);
      const float own = l[rank * H];
      const float w = own == -INFINITY ? 0.0f : float(std::exp(double(own) - m) / sum);
      float* row = o.data<float>() + (t * H + h) * D;
      for (int64_t d = 0; d < D; ++d) row[d] *= w;
    }
}

}  // namespace mlarun::ops::cpu
