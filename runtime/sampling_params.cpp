// SamplingParams validation: every message names the field and its value.
#include "runtime/sampling_params.h"

#include <cmath>

#include "runtime/error.h"

namespace mlarun {

void SamplingParams::validate() const {
  MLARUN_CHECK(std::isfinite(temperature) && temperature >= 0,
               "SamplingParams.temperature must be a finite number >= 0 (0 = greedy), got ", temperature);
  MLARUN_CHECK(top_p > 0 && top_p <= 1, "SamplingParams.top_p must be in (0, 1], got ", top_p);
  MLARUN_CHECK(top_k >= 0, "SamplingParams.top_k must be >= 0 (0 = off), got ", top_k);
  MLARUN_CHECK(max_tokens >= 1, "SamplingParams.max_tokens must be >= 1, got ", max_tokens);
  for (int32_t id : stop_token_ids)
    MLARUN_CHECK(id >= 0, "SamplingParams.stop_token_ids must hold token ids >= 0, got ", id);
}

}  // namespace mlarun
