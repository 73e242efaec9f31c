// A random MoE routing for the permutation tests: each of T tokens picks K distinct experts of E (the routing's
// contract), with weights in [0.1, 1).
#pragma once

#include <algorithm>
#include <random>
#include <vector>

#include "kernels/op_types.h"

namespace mlarun::testing {

inline ops::Routing random_routing(int64_t T, int64_t K, int64_t E, std::mt19937& rng) {
  Tensor experts = Tensor::empty({T, K}, DType::I32), weights = Tensor::empty({T, K}, DType::F32);
  std::vector<int32_t> all(static_cast<size_t>(E));
  for (int32_t e = 0; e < int32_t(E); ++e) all[size_t(e)] = e;
  std::uniform_real_distribution<float> weight(0.1f, 1.0f);
  for (int64_t t = 0; t < T; ++t) {
    std::shuffle(all.begin(), all.end(), rng);
    for (int64_t k = 0; k < K; ++k) {
      experts.data<int32_t>()[t * K + k] = all[size_t(k)];
      weights.data<float>()[t * K + k] = weight(rng);
    }
  }
  return {experts, weights};
}

}  // namespace mlarun::testing
