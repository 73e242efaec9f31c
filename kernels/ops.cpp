// Shape checks and device dispatch for the dense ops; the CPU reference does the work (kernels/cpu/).
#include "kernels/ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu/cpu_ops.h"
#include "runtime/error.h"

namespace mlarun::ops {

namespace {
// Until the CUDA kernels land, every op runs on CPU f32 tensors only.
void require_cpu_f32(const char* op, const Tensor& t, const char* arg) {
  MLARUN_CHECK(t.defined(), op, ": argument '", arg, "' is undefined");
  MLARUN_CHECK(t.device() == Device::CPU, op, ": argument '", arg, "' is ", t.describe(),
               "; the CUDA version of this op is not built yet");
  MLARUN_CHECK(t.dtype() == DType::F32, op, ": argument '", arg, "' is ", t.describe(), ", expected f32");
}
}  // namespace

Tensor linear(const Tensor& x, const Tensor& w) {
  require_cpu_f32("linear", x, "x");
  require_cpu_f32("linear", w, "w");
  MLARUN_CHECK(w.ndim() == 2, "linear: weight must be [out, in], got ", w.describe());
  int64_t K = w.dim(1), N = w.dim(0);
  MLARUN_CHECK(x.ndim() >= 1 && x.dim(-1) == K, "linear: x ", x.describe(), " does not match weight ", w.describe());
  int64_t M = x.numel() / K;
  Shape out_shape = x.shape();
  out_shape.back() = N;
  Tensor y = Tensor::empty(out_shape, DType::F32);
  cpu::linear(x.data<float>(), w.data<float>(), y.data<float>(), M, N, K);
  return y;
}

Tensor head_linear(const Tensor& x, const Tensor& w) {
  require_cpu_f32("head_linear", x, "x");
  require_cpu_f32("head_linear", w, "w");
  MLARUN_CHECK(x.ndim() == 3 && w.ndim() == 3 && x.dim(1) == w.dim(0) && x.dim(2) == w.dim(2),
               "head_linear: x ", x.describe(), " does not match per-head weights ", w.describe());
  const int64_t T = x.dim(0), H = x.dim(1), K = x.dim(2), N = w.dim(1);
  Tensor y = Tensor::empty({T, H, N}, DType::F32);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h)
      cpu::linear(x.data<float>() + (t * H + h) * K, w.data<float>() + h * N * K, y.data<float>() + (t * H + h) * N,
                  1, N, K);
  return y;
}

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = a.clone();
  add_inplace(out, b);
  return out;
}

void add_inplace(Tensor& a, const Tensor& b) {
  require_cpu_f32("add", a, "a");
  require_cpu_f32("add", b, "b");
  MLARUN_CHECK(a.numel() == b.numel(), "add: ", a.describe(), " and ", b.describe(), " differ in size");
  float* pa = a.data<float>();
  const float* pb = b.data<float>();
  for (int64_t i = 0; i < a.numel(); ++i) pa[i] += pb[i];
}

Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps) {
  require_cpu_f32("rms_norm", x, "x");
  require_cpu_f32("rms_norm", weight, "weight");
  int64_t dim = weight.numel();
  MLARUN_CHECK(x.ndim() >= 1 && x.dim(-1) == dim, "rms_norm: x ", x.describe(), " vs weight ", weight.describe());
  Tensor y = Tensor::empty(x.shape(), DType::F32);
  cpu::rms_norm(x.data<float>(), weight.data<float>(), y.data<float>(), x.numel() / dim, dim, eps);
  return y;
}

Tensor silu_mul(const Tensor& gate, const Tensor& up) {
  require_cpu_f32("silu_mul", gate, "gate");
  require_cpu_f32("silu_mul", up, "up");
  MLARUN_CHECK(gate.shape() == up.shape(), "silu_mul: gate ", gate.describe(), " vs up ", up.describe());
  Tensor out = Tensor::empty(gate.shape(), DType::F32);
  cpu::silu_mul(gate.data<float>(), up.data<float>(), out.data<float>(), gate.numel());
  return out;
}

Tensor embedding(const std::vector<int32_t>& ids, const Tensor& table, int64_t vocab_start) {
  require_cpu_f32("embedding", table, "table");
  MLARUN_CHECK(table.ndim() == 2, "embedding: table must be [vocab, dim], got ", table.describe());
  int64_t rows = table.dim(0), dim = table.dim(1);
  Tensor out = Tensor::zeros({int64_t(ids.size()), dim}, DType::F32);
  for (size_t t = 0; t < ids.size(); ++t) {
    int64_t local = int64_t(ids[t]) - vocab_start;
    if (local >= 0 && local < rows)
      std::memcpy(out.data<float>() + int64_t(t) * dim, table.data<float>() + local * dim, size_t(dim) * 4);
  }
  return out;
}

RopeTable make_rope_table(const ModelConfig& c) {
  const int64_t dim = c.qk_rope_head_dim, half = dim / 2;
  RopeTable t;
  t.interleaved = c.rope_interleaved;
  t.inv_freq.resize(size_t(half));
  std::vector<float> pos_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) pos_freq[size_t(i)] = std::pow(float(c.rope_theta), float(2 * i) / float(dim));
  if (!c.use_yarn) {
    for (int64_t i = 0; i < half; ++i) t.inv_freq[size_t(i)] = 1.0f / pos_freq[size_t(i)];
    return t;
  }
  // The dimension index whose wavelength makes `rotations` turns over the original context.
  auto correction_dim = [&](double rotations) {
    return double(dim) * std::log(double(c.original_seq_len) / (rotations * 2 * M_PI)) / (2 * std::log(c.rope_theta));
  };
  double low = std::max(std::floor(correction_dim(c.beta_fast)), 0.0);
  double high = std::min(std::ceil(correction_dim(c.beta_slow)), double(dim - 1));
  if (low == high) high += 0.001;
  const float factor = float(c.rope_factor);
  for (int64_t i = 0; i < half; ++i) {
    float ramp = std::clamp(float((float(i) - low) / (high - low)), 0.0f, 1.0f);
    float extrapolation_weight = 1.0f - ramp;
    float extrapolated = 1.0f / pos_freq[size_t(i)];
    float interpolated = 1.0f / (factor * pos_freq[size_t(i)]);
    t.inv_freq[size_t(i)] = interpolated * (1.0f - extrapolation_weight) + extrapolated * extrapolation_weight;
  }
  t.attention_factor = float(c.rope_attention_factor);
  return t;
}

void apply_rope(Tensor& x, const std::vector<int64_t>& positions, const RopeTable& table) {
  require_cpu_f32("apply_rope", x, "x");
  MLARUN_CHECK(x.ndim() == 3, "apply_rope: x must be [tokens, heads, dim], got ", x.describe());
  MLARUN_CHECK(int64_t(positions.size()) == x.dim(0), "apply_rope: ", positions.size(), " positions for ",
               x.describe());
  MLARUN_CHECK(x.dim(2) >= table.rotary_dim(), "apply_rope: rotary dim ", table.rotary_dim(), " exceeds ",
               x.describe());
  cpu::rope(x.data<float>(), x.dim(0), x.dim(1), x.dim(2), positions.data(), table.inv_freq.data(),
            int64_t(table.inv_freq.size()), table.attention_factor, table.interleaved);
}

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale, int64_t q_offset, Tensor* lse) {
  require_cpu_f32("attention", q, "q");
  require_cpu_f32("attention", k, "k");
  require_cpu_f32("attention", v, "v");
  MLARUN_CHECK(q.ndim() == 3 && k.ndim() == 3 && v.ndim() == 3, "attention: q, k, v must be [tokens, heads, dim]");
  const int64_t Tq = q.dim(0), H = q.dim(1), D = q.dim(2), Tk = k.dim(0), Hkv = k.dim(1), Dv = v.dim(2);
  MLARUN_CHECK(k.dim(2) == D && v.dim(0) == Tk && v.dim(1) == Hkv && Hkv > 0 && H % Hkv == 0,
               "attention: q ", q.describe(), ", k ", k.describe(), ", v ", v.describe(), " do not fit together");
  MLARUN_CHECK(q_offset >= 0 && q_offset + Tq <= Tk, "attention: queries at positions [", q_offset, ", ",
               q_offset + Tq, ") need that many keys, have ", Tk);
  Tensor o = Tensor::empty({Tq, H, Dv}, DType::F32);
  if (lse) *lse = Tensor::empty({Tq, H}, DType::F32);
  std::vector<float> scratch(static_cast<size_t>(Tk));
  const int64_t group = H / Hkv;
  for (int64_t i = 0; i < Tq; ++i)
    for (int64_t h = 0; h < H; ++h) {
      int64_t kh = h / group;
      float l = cpu::attend_one(q.data<float>() + (i * H + h) * D, k.data<float>() + kh * D, Hkv * D,
                                v.data<float>() + kh * Dv, Hkv * Dv, q_offset + i + 1, D, Dv, scale,
                                o.data<float>() + (i * H + h) * Dv, scratch.data());
      if (lse) lse->data<float>()[i * H + h] = l;
    }
  return o;
}

void write_cache(Tensor& pool, const std::vector<int64_t>& slot_mapping, const Tensor& rows) {
  require_cpu_f32("write_cache", pool, "pool");
  require_cpu_f32("write_cache", rows, "rows");
  MLARUN_CHECK(pool.ndim() == 3, "write_cache: pool must be [blocks, block_size, width], got ", pool.describe());
  const int64_t width = pool.dim(2), slots = pool.dim(0) * pool.dim(1);
  MLARUN_CHECK(rows.ndim() == 2 && rows.dim(1) == width && rows.dim(0) == int64_t(slot_mapping.size()),
               "write_cache: rows ", rows.describe(), " for ", slot_mapping.size(), " slots of width ", width);
  for (size_t t = 0; t < slot_mapping.size(); ++t) {
    int64_t slot = slot_mapping[t];
    if (slot < 0) continue;
    MLARUN_CHECK(slot < slots, "write_cache: slot ", slot, " outside the pool of ", slots, " slots");
    std::memcpy(pool.data<float>() + slot * width, rows.data<float>() + int64_t(t) * width, size_t(width) * 4);
  }
}

Tensor gather_cache(const Tensor& pool, const std::vector<int32_t>& block_table, int64_t len) {
  require_cpu_f32("gather_cache", pool, "pool");
  const int64_t nb = pool.dim(0), bs = pool.dim(1), width = pool.dim(2);
  MLARUN_CHECK(len >= 0 && len <= int64_t(block_table.size()) * bs, "gather_cache: ", len, " tokens but the block table covers ",
               int64_t(block_table.size()) * bs);
  Tensor out = Tensor::empty({len, width}, DType::F32);
  for (int64_t t = 0; t < len; ++t) {
    int64_t block = block_table[size_t(t / bs)];
    MLARUN_CHECK(block >= 0 && block < nb, "gather_cache: block ", block, " outside the pool of ", nb, " blocks");
    std::memcpy(out.data<float>() + t * width, pool.data<float>() + (block * bs + t % bs) * width, size_t(width) * 4);
  }
  return out;
}

Tensor mla_paged_attention(const Tensor& q, const Tensor& pool, const std::vector<int32_t>& block_table,
                           int64_t kv_lora_rank, float scale, int64_t q_offset, Tensor* lse) {
  require_cpu_f32("mla_paged_attention", q, "q");
  MLARUN_CHECK(q.ndim() == 3 && q.dim(2) == pool.dim(2) && kv_lora_rank > 0 && kv_lora_rank <= q.dim(2),
               "mla_paged_attention: q ", q.describe(), " does not match cache rows of width ", pool.dim(2),
               " with kv_lora_rank ", kv_lora_rank);
  const int64_t Tq = q.dim(0), H = q.dim(1), D = q.dim(2);
  Tensor rows = gather_cache(pool, block_table, q_offset + Tq);  // [ctx, Dc + Dr]: keys, and values in [:Dc]
  Tensor o = Tensor::empty({Tq, H, kv_lora_rank}, DType::F32);
  if (lse) *lse = Tensor::empty({Tq, H}, DType::F32);
  std::vector<float> scratch(static_cast<size_t>(q_offset + Tq));
  for (int64_t i = 0; i < Tq; ++i)
    for (int64_t h = 0; h < H; ++h) {
      float l = cpu::attend_one(q.data<float>() + (i * H + h) * D, rows.data<float>(), D, rows.data<float>(), D,
                                q_offset + i + 1, D, kv_lora_rank, scale, o.data<float>() + (i * H + h) * kv_lora_rank,
                                scratch.data());
      if (lse) lse->data<float>()[i * H + h] = l;
    }
  return o;
}

}  // namespace mlarun::ops
