// Reading `--requests FILE.jsonl`: one JSON object a line with prompt_ids (required) and optional max_tokens,
// temperature, top_p, top_k, seed, ignore_eos, stop_token_ids. Each line is checked as it is read, and once more
// against the model's vocabulary before any weight loads; a line that is not a valid request fails alone (its
// error names FILE:LINE and the key), so one bad line never costs the other requests their run.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/sequence.h"

namespace mlarun::cli {

struct RequestSpec {
  std::vector<int32_t> prompt;
  SamplingParams params;
  std::string where;  // "FILE:LINE" of its line ("" for --prompt-ids)
  std::string error;  // why the line is not a request, starting with FILE:LINE; such a request fails alone
  bool ok() const { return error.empty(); }
};

// Every non-blank line becomes one spec, in file order. Fields a line leaves out take the values in `defaults`
// (the command-line sampling options). A line with bad JSON, a bad key or a bad value becomes a spec with `error`
// set; only a file that cannot be read, or holds no request line at all, throws.
std::vector<RequestSpec> read_requests_file(const std::string& path, const SamplingParams& defaults);

// Sets `error` on every request holding a token id (prompt_ids or stop_token_ids) outside [0, vocab_size).
void check_requests_vocabulary(std::vector<RequestSpec>& specs, int64_t vocab_size);

// Throws unless every id lies in [0, vocab_size), naming the option and the first id outside it.
void check_ids_in_vocabulary(const std::vector<int32_t>& ids, int64_t vocab_size, const std::string& option);

}  // namespace mlarun::cli
