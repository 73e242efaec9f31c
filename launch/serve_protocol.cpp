// OpenAI request parsing, errors and incremental detokenization for `mlarun serve` (see serve_protocol.h).
#include "launch/serve_protocol.h"

#include <algorithm>

#include "engine/chat_template.h"
#include "runtime/error.h"

namespace mlarun::cli {

json::Value ApiError::body() const {
  const char* type = status == 404 ? "NotFoundError" : status == 400 ? "BadRequestError" : "InternalServerError";
  json::Value e = {{"message", what()}, {"type", type}, {"code", status}};
  e["param"] = param.empty() ? json::Value(nullptr) : json::Value(param);
  return {{"error", e}};
}

namespace {

[[noreturn]] void bad(const std::string& param, const std::string& message) { throw ApiError(400, message, param); }

const json::Value* field(const json::Value& body, const char* name) {
  const json::Value* v = json::find(body, name);
  return v && !v->is_null() ? v : nullptr;
}

double number_field(const json::Value& body, const char* name, double fallback) {
  const json::Value* v = field(body, name);
  if (!v) return fallback;
  if (!v->is_number()) bad(name, std::string(name) + " must be a number, got " + json::show(*v));
  return v->get<double>();
}

std::optional<int64_t> int_field(const json::Value& body, const char* name) {
  const json::Value* v = field(body, name);
  if (!v) return std::nullopt;
  auto i = json::to_int64(*v);
  if (!i) bad(name, std::string(name) + " must be an integer, got " + json::show(*v));
  return i;
}

bool bool_field(const json::Value& body, const char* name, bool fallback) {
  const json::Value* v = field(body, name);
  if (!v) return fallback;
  if (!v->is_boolean()) bad(name, std::string(name) + " must be true or false, got " + json::show(*v));
  return v->get<bool>();
}

std::vector<int32_t> id_list(const json::Value& v, const std::string& param, int64_t vocab) {
  std::vector<int32_t> ids;
  for (size_t i = 0; i < v.size(); ++i) {
    auto id = json::to_int64(v[i]);
    if (!id || *id < 0 || *id >= vocab)
      bad(param, param + "[" + std::to_string(i) + "] = " + json::show(v[i]) + " is not a token id (0.." +
                     std::to_string(vocab - 1) + ")");
    ids.push_back(int32_t(*id));
  }
  return ids;
}

bool is_id_list(const json::Value& v) {
  return v.is_array() && !v.empty() && std::all_of(v.begin(), v.end(), [](const json::Value& x) { return x.is_number_integer(); });
}

// The fields both endpoints share; max_tokens is fitted per prompt by finish().
GenerateRequest parse_common(const json::Value& body, const ServeConfig& cfg, std::optional<int64_t>& max_tokens,
                             const char* max_tokens_name) {
  if (!body.is_object()) bad("", "the request body must be a JSON object");
  check_model_field(body, cfg);
  GenerateRequest r;
  SamplingParams p;
  if (max_tokens && *max_tokens < 1)
    bad(max_tokens_name, std::string(max_tokens_name) + " must be at least 1, got " + std::to_string(*max_tokens) + ".");
  p.temperature = number_field(body, "temperature", 1.0);
  if (p.temperature < 0) bad("temperature", "temperature must be non-negative, got " + json::show(body["temperature"]) + ".");
  p.top_p = number_field(body, "top_p", 1.0);
  if (!(p.top_p > 0 && p.top_p <= 1)) bad("top_p", "top_p must be in (0, 1], got " + json::show(body["top_p"]) + ".");
  const int64_t top_k = int_field(body, "top_k").value_or(0);
  if (top_k < -1) bad("top_k", "top_k must be -1 (disable), or at least 1, got " + std::to_string(top_k) + ".");
  p.top_k = top_k < 0 ? 0 : top_k;
  p.seed = uint64_t(int_field(body, "seed").value_or(0));
  p.ignore_eos = bool_field(body, "ignore_eos", false);
  if (const json::Value* ids = field(body, "stop_token_ids")) {
    if (!ids->is_array()) bad("stop_token_ids", "stop_token_ids must be a list of token ids");
    p.stop_token_ids = id_list(*ids, "stop_token_ids", cfg.vocab_size);
  }
  if (const json::Value* stop = field(body, "stop")) {
    if (stop->is_string()) {
      r.stop.push_back(stop->get<std::string>());
    } else if (stop->is_array() && std::all_of(stop->begin(), stop->end(), [](auto& s) { return s.is_string(); })) {
      for (auto& s : *stop) r.stop.push_back(s.get<std::string>());
    } else {
      bad("stop", "stop must be a string or a list of strings, got " + json::show(*stop));
    }
    for (const std::string& s : r.stop)
      if (s.empty()) bad("stop", "stop strings must not be empty");
  }
  if (auto n = int_field(body, "n"); n && *n != 1) bad("n", "n must be 1 (mlarun returns one choice per prompt)");
  r.stream = bool_field(body, "stream", false);
  if (const json::Value* so = field(body, "stream_options")) {
    if (!so->is_object()) bad("stream_options", "stream_options must be an object");
    if (!r.stream) bad("stream_options", "stream_options is only allowed when stream is true");
    r.include_usage = bool_field(*so, "include_usage", false);
  }
  r.return_token_ids = bool_field(body, "return_token_ids", false);
  r.params.push_back(p);  // the template; finish() makes one per prompt
  return r;
}

// Checks each prompt against the model and fits max_tokens (default `fallback`, or what is left of the context).
void finish(GenerateRequest& r, const ServeConfig& cfg, std::optional<int64_t> max_tokens, const char* prompt_field) {
  const SamplingParams base = r.params.at(0);
  r.params.clear();
  for (const auto& prompt : r.prompts) {
    const int64_t n = int64_t(prompt.size());
    if (n == 0) bad(prompt_field, std::string(prompt_field) + " must not be empty");
    if (n >= cfg.max_model_len)
      bad(prompt_field, "This model's maximum context length is " + std::to_string(cfg.max_model_len) +
                            " tokens. However, your request has " + std::to_string(n) +
                            " input tokens, leaving no room to generate (--max-model-len).");
    SamplingParams p = base;
    p.max_tokens = std::min(max_tokens.value_or(cfg.max_model_len - n), cfg.max_model_len - n);
    try {
      p.validate();
    } catch (const Error& e) {
      bad("", e.what());
    }
    r.params.push_back(p);
  }
}

}  // namespace

void check_model_field(const json::Value& body, const ServeConfig& cfg) {
  const json::Value* model = field(body, "model");
  if (!model) return;
  if (!model->is_string()) bad("model", "model must be a string");
  if (model->get<std::string>() != cfg.model_name)
    throw ApiError(404, "The model `" + model->get<std::string>() + "` does not exist.", "model");
}

GenerateRequest parse_completion_request(const json::Value& body, const Tokenizer& tok, const ServeConfig& cfg) {
  std::optional<int64_t> max_tokens = body.is_object() ? int_field(body, "max_tokens") : std::nullopt;
  GenerateRequest r = parse_common(body, cfg, max_tokens, "max_tokens");
  const json::Value* prompt = field(body, "prompt");
  if (!prompt) bad("prompt", "prompt is required");
  auto encode = [&](const std::string& text) {
    if (!json::is_valid_utf8(text)) bad("prompt", "prompt must be valid UTF-8");
    return tok.encode(text, /*add_special_tokens=*/true);  // BOS where tokenizer_config says
  };
  if (prompt->is_string()) {
    r.prompts.push_back(encode(prompt->get<std::string>()));
  } else if (is_id_list(*prompt)) {
    r.prompts.push_back(id_list(*prompt, "prompt", cfg.vocab_size));
  } else if (prompt->is_array() && !prompt->empty()) {
    for (size_t i = 0; i < prompt->size(); ++i) {
      const json::Value& p = (*prompt)[i];
      if (p.is_string())
        r.prompts.push_back(encode(p.get<std::string>()));
      else if (is_id_list(p))
        r.prompts.push_back(id_list(p, "prompt", cfg.vocab_size));
      else
        bad("prompt", "prompt[" + std::to_string(i) + "] must be a string or a non-empty list of token ids");
    }
  } else {
    bad("prompt", "prompt must be a string, a list of token ids, or a list of either");
  }
  finish(r, cfg, max_tokens.value_or(16), "prompt");
  return r;
}

GenerateRequest parse_chat_request(const json::Value& body, const Tokenizer& tok, const ServeConfig& cfg) {
  std::optional<int64_t> max_tokens;
  const char* name = "max_tokens";
  if (body.is_object()) {
    max_tokens = int_field(body, "max_completion_tokens");
    if (max_tokens) name = "max_completion_tokens";
    else max_tokens = int_field(body, "max_tokens");
  }
  GenerateRequest r = parse_common(body, cfg, max_tokens, name);
  const json::Value* messages = field(body, "messages");
  if (!messages || !messages->is_array() || messages->empty()) bad("messages", "messages must be a non-empty list");
  std::string text;
  try {
    text = apply_chat_template(tok, *messages, bool_field(body, "add_generation_prompt", true));
  } catch (const Error& e) {
    bad("messages", e.what());
  }
  r.prompts.push_back(tok.encode(text, /*add_special_tokens=*/false));  // the template wrote BOS itself
  finish(r, cfg, max_tokens, "messages");
  return r;
}

json::Value tokenize_response(const json::Value& body, const Tokenizer& tok, const ServeConfig& cfg) {
  if (!body.is_object()) bad("", "the request body must be a JSON object");
  check_model_field(body, cfg);
  std::vector<int32_t> ids;
  if (const json::Value* messages = field(body, "messages")) {
    if (!messages->is_array()) bad("messages", "messages must be a list");
    try {
      ids = tok.encode(apply_chat_template(tok, *messages, bool_field(body, "add_generation_prompt", true)),
                       bool_field(body, "add_special_tokens", false));
    } catch (const Error& e) {
      bad("messages", e.what());
    }
  } else {
    const json::Value* prompt = field(body, "prompt");
    if (!prompt || !prompt->is_string()) bad("prompt", "prompt must be a string (or give messages)");
    if (!json::is_valid_utf8(prompt->get<std::string>())) bad("prompt", "prompt must be valid UTF-8");
    ids = tok.encode(prompt->get<std::string>(), bool_field(body, "add_special_tokens", true));
  }
  json::Value tokens = json::Value::array();
  for (int32_t t : ids) tokens.push_back(t);
  return {{"count", int64_t(ids.size())}, {"max_model_len", cfg.max_model_len}, {"tokens", tokens},
          {"token_strs", nullptr}};
}

json::Value detokenize_response(const json::Value& body, const Tokenizer& tok, const ServeConfig& cfg) {
  if (!body.is_object()) bad("", "the request body must be a JSON object");
  check_model_field(body, cfg);
  const json::Value* tokens = field(body, "tokens");
  if (!tokens || !tokens->is_array()) bad("tokens", "tokens must be a list of token ids");
  return {{"prompt", tok.decode(id_list(*tokens, "tokens", std::max(cfg.vocab_size, tok.vocab_size())))}};
}

TextStream::TextStream(const Tokenizer& tok, std::vector<std::string> stop) : tok_(tok), stop_(std::move(stop)) {
  for (const std::string& s : stop_) hold_ = std::max(hold_, s.size() - 1);
}

std::string TextStream::update(const std::vector<int32_t>& tokens, bool final) {
  if (stopped_) return "";
  const std::string all = tok_.decode(tokens, /*skip_special_tokens=*/true);
  size_t limit = all.size();
  static const std::string kReplacement = "\xEF\xBF\xBD";  // what an incomplete UTF-8 tail decodes to, for now
  if (!final)
    while (limit >= 3 && all.compare(limit - 3, 3, kReplacement) == 0) limit -= 3;
  // A stop string can only start where the text not yet returned could hold its first byte.
  const size_t from = text_.size() > hold_ ? text_.size() - hold_ : 0;
  size_t stop_at = std::string::npos;
  for (const std::string& s : stop_) {
    const size_t p = all.substr(0, limit).find(s, from);
    if (p != std::string::npos) stop_at = std::min(stop_at, p);
  }
  if (stop_at != std::string::npos) {
    stopped_ = true;
    limit = stop_at;
  } else if (!final) {
    limit = limit > text_.size() + hold_ ? limit - hold_ : text_.size();
    while (limit > text_.size() && (uint8_t(all[limit]) & 0xC0) == 0x80) --limit;  // whole characters only
  }
  if (limit <= text_.size()) return "";
  std::string piece = all.substr(text_.size(), limit - text_.size());
  text_ += piece;
  return piece;
}

}  // namespace mlarun::cli
