// The OpenAI side of `mlarun serve`, kept apart from HTTP and threads so it reads as the API does: request
// bodies of /v1/completions and /v1/chat/completions parsed into token ids and SamplingParams (vLLM's extra
// fields: top_k, seed, stop_token_ids, ignore_eos), errors as OpenAI's error JSON naming the field, and the
// incremental detokenizer that streams text (skipping special tokens, holding back incomplete UTF-8 and what
// could still become a stop string) so that a stream concatenates to exactly the non-streamed text.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/tokenizer.h"
#include "runtime/json.h"
#include "runtime/sampling_params.h"

namespace mlarun::cli {

// An HTTP error with OpenAI's body: {"error": {"message", "type", "param", "code"}}.
struct ApiError : std::runtime_error {
  int status;
  std::string param;  // the request field at fault ("" when none)
  ApiError(int status_, const std::string& message, std::string param_ = "")
      : std::runtime_error(message), status(status_), param(std::move(param_)) {}
  json::Value body() const;
};

struct ServeConfig {
  std::string model_name;  // --served-model-name (default: --model)
  int64_t max_model_len = 0;
  int64_t vocab_size = 0;  // the model's
};

struct GenerateRequest {
  std::vector<std::vector<int32_t>> prompts;  // one choice each
  std::vector<SamplingParams> params;         // per prompt (max_tokens fitted to the prompt)
  std::vector<std::string> stop;              // stop strings (not part of the text returned)
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool return_token_ids = false;  // vLLM's: non-streamed choices also carry prompt_token_ids and token_ids
};

// Throws ApiError (400 naming the field, 404 for another model's name).
GenerateRequest parse_completion_request(const json::Value& body, const Tokenizer& tok, const ServeConfig& cfg);
GenerateRequest parse_chat_request(const json::Value& body, const Tokenizer& tok, const ServeConfig& cfg);
void check_model_field(const json::Value& body, const ServeConfig& cfg);

// /tokenize and /detokenize bodies as vLLM has them; throw ApiError.
json::Value tokenize_response(const json::Value& body, const Tokenizer& tok, const ServeConfig& cfg);
json::Value detokenize_response(const json::Value& body, const Tokenizer& tok, const ServeConfig& cfg);

// Text of a growing list of generated tokens, a piece at a time.
class TextStream {
 public:
  TextStream(const Tokenizer& tok, std::vector<std::string> stop);
  // All generated tokens so far -> the text not returned before that is now certain. `final`: the request
  // finished, so nothing is held back. After a stop string matched, stopped() is true and nothing more comes.
  std::string update(const std::vector<int32_t>& tokens, bool final);
  bool stopped() const { return stopped_; }
  const std::string& text() const { return text_; }  // everything returned so far

 private:
  const Tokenizer& tok_;
  std::vector<std::string> stop_;
  size_t hold_ = 0;  // longest stop string - 1: bytes that could still start one
  bool stopped_ = false;
  std::string text_;
};

}  // namespace mlarun::cli
