// Sampler: greedy / temperature / top-k / top-p over host logits (contract in sampling.h), and the CPU backend of
// the batch ops argmax_rows / sample_rows (twin of cuda/sampling.cu), which apply it row by row.
#include "kernels/cpu/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "runtime/error.h"

namespace mlarun {

double uniform_unit(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

int32_t argmax_token(const float* logits, int64_t vocab) {
  int64_t best = 0;
  for (int64_t i = 1; i < vocab; ++i)
    if (logits[i] > logits[best]) best = i;
  return static_cast<int32_t>(best);
}

namespace {
void check_logits(const float* logits, int64_t vocab) {
  MLARUN_CHECK(logits != nullptr, "sample: logits is null");
  MLARUN_CHECK(vocab >= 1 && vocab <= INT32_MAX, "sample: vocab must be in [1, 2^31), got ", vocab);
  bool any_finite = false;
  for (int64_t i = 0; i < vocab; ++i) {
    MLARUN_CHECK(!std::isnan(logits[i]) && logits[i] != INFINITY, "sample: logits[", i, "] is ", logits[i]);
    any_finite = any_finite || std::isfinite(logits[i]);
  }
  MLARUN_CHECK(any_finite, "sample: all ", vocab, " logits are -inf");
}
}  // namespace

namespace {
// Temperature, top-k and top-p over checked logits and params, with the uniform already drawn.
int32_t pick(const float* logits, int64_t vocab, const SamplingParams& params, double uniform);
}  // namespace

int32_t sample(const float* logits, int64_t vocab, const SamplingParams& params, std::mt19937_64& rng) {
  check_logits(logits, vocab);
  params.validate();
  if (params.temperature == 0 || params.top_k == 1) return argmax_token(logits, vocab);
  return pick(logits, vocab, params, uniform_unit(rng));
}

int32_t sample_with_uniform(const float* logits, int64_t vocab, const SamplingParams& params, double uniform) {
  check_logits(logits, vocab);
  params.validate();
  if (params.temperature == 0 || params.top_k == 1) return argmax_token(logits, vocab);
  MLARUN_CHECK(uniform >= 0 && uniform < 1, "sample: uniform ", uniform, " is outside [0, 1)");
  return pick(logits, vocab, params, uniform);
}

namespace {
int32_t pick(const float* logits, int64_t vocab, const SamplingParams& params, double uniform) {
  // Candidates, most likely first when an order is needed (ties broken by the lower index).
  std::vector<int32_t> candidates(static_cast<size_t>(vocab));
  std::iota(candidates.begin(), candidates.end(), 0);
  const auto more_likely = [logits](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  if (params.top_k > 0 && params.top_k < vocab) {
    std::partial_sort(candidates.begin(), candidates.begin() + params.top_k, candidates.end(), more_likely);
    candidates.resize(static_cast<size_t>(params.top_k));
  } else if (params.top_p < 1) {
    std::sort(candidates.begin(), candidates.end(), more_likely);
  }

  // Unnormalised softmax weights in double, shifted by the largest logit.
  const float max_logit = logits[argmax_token(logits, vocab)];
  std::vector<double> weights(candidates.size());
  double total = 0;
  for (size_t j = 0; j < candidates.size(); ++j) {
    weights[j] = std::exp((static_cast<double>(logits[candidates[j]]) - max_logit) / params.temperature);
    total += weights[j];
  }

  if (params.top_p < 1) {  // candidates are sorted: keep the shortest prefix holding top_p of the mass
    double kept = 0;
    size_t keep = candidates.size();
    for (size_t j = 0; j < candidates.size(); ++j) {
      kept += weights[j];
      if (kept >= params.top_p * total) {
        keep = j + 1;
        break;
      }
    }
    candidates.resize(keep);
    weights.resize(keep);
    total = kept;
  }

  const double target = uniform * total;
  double acc = 0;
  for (size_t j = 0; j < candidates.size(); ++j) {
    acc += weights[j];
    if (target < acc) return candidates[j];
  }
  return candidates.back();  // rounding left target at the very top of the range
}
}  // namespace

}  // namespace mlarun

namespace mlarun::ops::cpu {

std::vector<int32_t> argmax_rows(const Tensor& logits) {
  const int64_t R = logits.dim(0), V = logits.dim(1);
  std::vector<int32_t> out(static_cast<size_t>(R));
  for (int64_t r = 0; r < R; ++r) out[size_t(r)] = argmax_token(logits.data<float>() + r * V, V);
  return out;
}

std::vector<int32_t> sample_rows(const Tensor& logits, const std::vector<SamplingParams>& params,
                                 const std::vector<double>& uniforms) {
  const int64_t R = logits.dim(0), V = logits.dim(1);
  std::vector<int32_t> out(static_cast<size_t>(R));
  for (int64_t r = 0; r < R; ++r)
    out[size_t(r)] = sample_with_uniform(logits.data<float>() + r * V, V, params[size_t(r)], uniforms[size_t(r)]);
  return out;
}

}  // namespace mlarun::ops::cpu
