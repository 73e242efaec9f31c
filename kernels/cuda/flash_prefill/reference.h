// The CPU references the flash prefill kernel is checked against (its test and its workbench share them): per
// query row and all heads, the fp32 reference through ops::attention over the visible keys, and a plain
// low-precision implementation (scores and probabilities rounded to the dtype, fp32 sums) whose error is the
// yardstick: the kernel may be at most twice as far from fp32 as the plain one, plus one output rounding.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "kernels/ops.h"
#include "runtime/dtype.h"

namespace mlarun::ops::cuda {

inline float round_to_dtype(float x, DType t) {
  return t == DType::BF16 ? bf16_to_float(float_to_bf16(x)) : f16_to_float(float_to_f16(x));
}

// Keys [lo, hi) that query i of a sequence with lq queries and lk keys sees (flash_prefill.h's contract:
// causal is bottom-right aligned unless the sequence has its own causal offset `off`, the window reaches
// window_left keys back, -1 = off). Empty when lo == hi.
inline constexpr int kBottomRight = std::numeric_limits<int>::min();
inline std::pair<int, int> flash_prefill_visible_keys(bool causal, int window_left, int i, int lq, int lk,
                                                      int offset = kBottomRight) {
  const int off = offset == kBottomRight ? lk - lq : offset;
  const int hi = causal ? std::clamp(off + i + 1, 0, lk) : lk;
  const int lo = window_left >= 0 ? std::clamp(off + i - window_left, 0, lk) : 0;
  return {lo, std::max(lo, hi)};
}

struct FlashPrefillErrors {
  double kernel = 0;    // max |kernel - fp32 reference|
  double plain = 0;     // max |plain low-precision - fp32 reference|
  double rounding = 0;  // max |round(reference) - reference|: what storing the output in the dtype costs
  double lse = 0;       // max |kernel lse - reference lse|
  int64_t unwritten = 0;  // NaN poison left in the checked rows
  int64_t rows = 0;

  void merge(const FlashPrefillErrors& e) {
    kernel = std::max(kernel, e.kernel), plain = std::max(plain, e.plain);
    rounding = std::max(rounding, e.rounding), lse = std::max(lse, e.lse);
    unwritten += e.unwritten, rows += e.rows;
  }
  bool within_twice_plain() const { return kernel <= 2 * plain + rounding; }
};

struct FlashPrefillShape {
  int dqk, dv, hq, hkv;
  DType dtype;
  bool causal;
  int window_left;
  float scale;
};

// Checks query row `row` (query i of its sequence, whose keys start at k0; lq queries, lk keys) of the kernel's
// `out` [total_q, hq, dv] and `lse` [total_q, hq] (CPU f32) against the references over q, k, v (CPU f32 copies
// of the kernel's inputs).
inline FlashPrefillErrors flash_prefill_check_row(const FlashPrefillShape& sh, const Tensor& q, const Tensor& k,
                                                  const Tensor& v, const Tensor& out, const Tensor& lse, int row,
                                                  int i, int k0, int lq, int lk, int offset = kBottomRight) {
  FlashPrefillErrors e;
  e.rows = 1;
  const auto [lo, hi] = flash_prefill_visible_keys(sh.causal, sh.window_left, i, lq, lk, offset);
  Tensor ref_o, ref_lse;
  if (hi > lo)
    ref_o = ops::attention(q.rows(row, 1), k.rows(k0 + lo, hi - lo), v.rows(k0 + lo, hi - lo), sh.scale,
                           hi - lo - 1, &ref_lse);
  const int group = sh.hq / sh.hkv;
  std::vector<float> s(size_t(std::max(hi - lo, 1))), plain(size_t(sh.dv));
  for (int h = 0; h < sh.hq; ++h) {
    const float* qr = q.data<float>() + (int64_t(row) * sh.hq + h) * sh.dqk;
    const int64_t kv_head = h / group;
    float mx = -INFINITY, sum = 0;
    for (int j = lo; j < hi; ++j) {
      const float* kr = k.data<float>() + ((k0 + j) * int64_t(sh.hkv) + kv_head) * sh.dqk;
      float dot = 0;
      for (int t = 0; t < sh.dqk; ++t) dot += qr[t] * kr[t];
      s[size_t(j - lo)] = round_to_dtype(dot * sh.scale, sh.dtype);
      mx = std::max(mx, s[size_t(j - lo)]);
    }
    for (int j = lo; j < hi; ++j) sum += (s[size_t(j - lo)] = std::exp(s[size_t(j - lo)] - mx));
    std::fill(plain.begin(), plain.end(), 0.f);
    for (int j = lo; j < hi; ++j) {
      const float pj = round_to_dtype(s[size_t(j - lo)] / sum, sh.dtype);
      const float* vr = v.data<float>() + ((k0 + j) * int64_t(sh.hkv) + kv_head) * sh.dv;
      for (int d = 0; d < sh.dv; ++d) plain[size_t(d)] += pj * vr[d];
    }
    for (int d = 0; d < sh.dv; ++d) {
      const float ref = hi > lo ? ref_o.data<float>()[int64_t(h) * sh.dv + d] : 0.f;
      const float got = out.data<float>()[(int64_t(row) * sh.hq + h) * sh.dv + d];
      if (std::isnan(got)) ++e.unwritten;
      e.kernel = std::max(e.kernel, double(std::fabs(got - ref)));
      e.plain = std::max(e.plain, double(std::fabs(round_to_dtype(plain[size_t(d)], sh.dtype) - ref)));
      e.rounding = std::max(e.rounding, double(std::fabs(round_to_dtype(ref, sh.dtype) - ref)));
    }
    const float got_lse = lse.data<float>()[int64_t(row) * sh.hq + h];
    const float ref_l = hi > lo ? ref_lse.data<float>()[h] : -INFINITY;
    if (std::isnan(got_lse)) ++e.unwritten;
    e.lse = std::max(e.lse, got_lse == ref_l ? 0.0 : double(std::fabs(got_lse - ref_l)));
  }
  return e;
}

}  // namespace mlarun::ops::cuda
