// Reading `--requests FILE.jsonl`: one JSON object a line with prompt_ids (required) and optional max_tokens,
// temperature, top_p, top_k, seed, ignore_eos, stop_token_ids. Errors name the file, the line and the key.
#pragma once

#include <string>
#include <vector>

#include "engine/sequence.h"

namespace mlarun::cli {

struct RequestSpec {
  std::vector<int32_t> prompt;
  SamplingParams params;
};

// Fields a line leaves out take the values in `defaults` (the command-line sampling options).
std::vector<RequestSpec> read_requests_file(const std::string& path, const SamplingParams& defaults);

}  // namespace mlarun::cli
