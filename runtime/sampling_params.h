// SamplingParams: how one request picks its tokens and when it stops (OpenAI's sampling fields). Its own header
// because both the engine (per request) and the sampling ops (per logit row) take it.
#pragma once

#include <cstdint>
#include <vector>

namespace mlarun {

struct SamplingParams {
  double temperature = 0;                // 0 = greedy (argmax, lowest index on ties)
  double top_p = 1;                      // nucleus mass in (0, 1]; 1 = off
  int64_t top_k = 0;                     // keep the k most likely tokens; 0 = off
  uint64_t seed = 0;                     // seeds this request's own RNG
  int64_t max_tokens = 16;               // completion tokens to generate at most, >= 1
  bool ignore_eos = false;               // keep generating past the model's EOS token
  std::vector<int32_t> stop_token_ids;   // finish (reason "stop") on any of these; applies even with ignore_eos

  void validate() const;  // throws mlarun::Error naming the field and its value
  // Greedy requests take the argmax and draw nothing from their RNG.
  bool is_greedy() const { return temperature == 0 || top_k == 1; }
};

}  // namespace mlarun
