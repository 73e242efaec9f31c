// The bf16 parity criterion of the GPU path against a fixture's fp32 reference, shared by the model and CLI
// tests: at every position (prompt, then each greedy continuation token fed back) the logits lie within twice the
// fixture's own bf16 error (metadata bf16_vs_fp32_max_abs: HF's bf16 model against its fp32 one), and the argmax
// agrees at 95% of positions or more, a flip where the reference's top two lie within that error of each other
// (a tie at bf16 precision) counted as agreeing: a short run of 18 positions may not fail on one such tie.
// References are the fixture's prompt.{i}.logits and greedy_logits.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "runtime/safetensors.h"
#include "runtime/tensor.h"

namespace mlarun::testing {

struct ParityTally {
  double worst_abs = 0;   // largest |logit - reference| at any position
  int64_t positions = 0;
  int64_t argmax_agree = 0;
  std::vector<double> flip_margins;  // the reference's top-1 minus top-2 logit where the argmax differs

  // Compares `rows` rows of got against want (both host f32 [rows, vocab]).
  void add(const float* got, const float* want, int64_t rows, int64_t vocab) {
    for (int64_t r = 0; r < rows; ++r) {
      const float* g = got + r * vocab;
      const float* w = want + r * vocab;
      double row_worst = 0;
      for (int64_t v = 0; v < vocab; ++v)
        row_worst = std::isfinite(g[v]) ? std::max(row_worst, double(std::fabs(g[v] - w[v]))) : INFINITY;
      worst_abs = std::max(worst_abs, row_worst);
      const int64_t top_w = std::max_element(w, w + vocab) - w;
      if (std::max_element(g, g + vocab) - g == top_w) {
        ++argmax_agree;
      } else {
        float second = -INFINITY;
        for (int64_t v = 0; v < vocab; ++v)
          if (v != top_w) second = std::max(second, w[v]);
        flip_margins.push_back(double(w[top_w]) - double(second));
      }
      ++positions;
    }
  }
  double agreement() const { return positions ? double(argmax_agree) / double(positions) : 0.0; }
  // Agreement with the flips at bf16 ties (reference margin <= tie_margin) counted as agreeing.
  double agreement_beyond_ties(double tie_margin) const {
    const auto ties = std::count_if(flip_margins.begin(), flip_margins.end(),
                                    [&](double m) { return m <= tie_margin; });
    return positions ? double(argmax_agree + ties) / double(positions) : 0.0;
  }

  // Asserts the criterion and prints one line the GPU check script collects ("GPU parity ...").
  void check(const std::string& what, double bf16_vs_fp32_max_abs) const {
    const double limit = 2 * bf16_vs_fp32_max_abs;
    std::string flips;
    for (double m : flip_margins) flips += (flips.empty() ? "" : ", ") + std::to_string(m);
    std::printf("GPU parity %s: max |logit - fp32 reference| %.4f (limit %.4f), argmax agreement %.1f%% of %lld "
                "positions (%.1f%% counting bf16 ties%s%s)\n",
                what.c_str(), worst_abs, limit, 100 * agreement(), (long long)positions,
                100 * agreement_beyond_ties(bf16_vs_fp32_max_abs), flips.empty() ? "" : "; reference margins at flips ",
                flips.c_str());
    EXPECT_GT(positions, 0) << what;
    EXPECT_LE(worst_abs, limit) << what;
    EXPECT_GE(agreement_beyond_ties(bf16_vs_fp32_max_abs), 0.95) << what;
  }
};

// The fixture's bf16 error from its metadata.
inline double bf16_error_of(const SafetensorsFile& ref) {
  auto it = ref.metadata().find("bf16_vs_fp32_max_abs");
  EXPECT_NE(it, ref.metadata().end()) << "fixture without bf16_vs_fp32_max_abs";
  return it == ref.metadata().end() ? 0.0 : std::stod(it->second);
}

// prompt + greedy[0 .. n-2]: the sequence whose logits at positions L-1 .. L+n-2 are greedy_logits[0 .. n-1].
inline std::vector<int32_t> teacher_forced_tokens(const Tensor& input_ids, const Tensor& greedy) {
  std::vector<int32_t> ids(input_ids.data<int64_t>(), input_ids.data<int64_t>() + input_ids.numel());
  for (int64_t s = 0; s + 1 < greedy.numel(); ++s) ids.push_back(int32_t(greedy.data<int64_t>()[s]));
  return ids;
}

}  // namespace mlarun::testing
