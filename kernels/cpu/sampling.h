// Host-side token sampler: greedy, temperature, top-k and top-p (nucleus), drawing from the request's own seeded
// RNG. It is the reference the GPU sampling kernel is held to, and the path used when logits live on the host.
// Deterministic across platforms: candidates are ordered by (logit desc, index asc) and the uniform comes from the
// raw mt19937_64 output (fully specified by the C++ standard), not from std::uniform_real_distribution.
#pragma once

#include <cstdint>
#include <random>

#include "runtime/sampling_params.h"

namespace mlarun {

// Uniform double in [0, 1) from the top 53 bits of one raw 64-bit draw.
double uniform_unit(std::mt19937_64& rng);

// Index of the largest logit, the lowest index among equals.
int32_t argmax_token(const float* logits, int64_t vocab);

// Picks one token from `vocab` logits. temperature 0 (or top_k 1) is greedy and draws nothing; otherwise
// softmax(logits / temperature), restricted to the top_k most likely tokens, then to the smallest most-likely
// prefix whose probability reaches top_p, renormalised, and sampled with exactly one draw from `rng`.
// Throws on NaN or +inf logits, or when every logit is -inf.
int32_t sample(const float* logits, int64_t vocab, const SamplingParams& params, std::mt19937_64& rng);
// The same choice with the uniform in [0, 1) given instead of drawn (what sample() does after its one draw);
// the device sampler (ops::sample_rows) is held to this. Greedy params ignore `uniform`.
int32_t sample_with_uniform(const float* logits, int64_t vocab, const SamplingParams& params, double uniform);

}  // namespace mlarun
