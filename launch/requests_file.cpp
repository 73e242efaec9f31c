// JSONL request parsing (see requests_file.h): each line through the strict JSON parse (nlohmann-json underneath),
// named FILE:LINE so a syntax error, a duplicate key or a bad value points at its line; a bad line is kept as a
// failed request rather than thrown, so the lines around it still run.
#include "launch/requests_file.h"

#include <filesystem>
#include <fstream>

#include "runtime/config_reader.h"
#include "runtime/error.h"
#include "runtime/json.h"

namespace mlarun::cli {

namespace {

std::vector<int32_t> id_array(const json::Value* v, const std::string& where, const char* key) {
  std::vector<int32_t> ids;
  if (!v) return ids;
  if (!v->is_array()) fail(where, ": key '", key, "': expected an array of token ids, got ", json::show(*v));
  for (const json::Value& x : *v) {
    std::optional<int64_t> id = json::to_int64(x);
    if (!id || *id < 0 || *id > INT32_MAX) fail(where, ": key '", key, "': ", json::show(x), " is not a token id");
    ids.push_back(int32_t(*id));
  }
  return ids;
}

RequestSpec parse_request(const std::string& line, const std::string& where, const SamplingParams& defaults) {
  json::Value j = json::parse(line, where);
  if (!j.is_object()) fail(where, ": expected a JSON object, got ", json::show(j));
  ConfigReader r(j, where);
  RequestSpec spec;
  spec.where = where;
  const json::Value* prompt = json::find(j, "prompt_ids");
  if (!prompt) fail(where, ": missing required key 'prompt_ids'");
  spec.prompt = id_array(prompt, where, "prompt_ids");
  r.ignore_keys({"prompt_ids", "stop_token_ids", "id"});
  spec.params = defaults;
  spec.params.max_tokens = r.get_int("max_tokens", defaults.max_tokens);
  spec.params.temperature = r.get_double("temperature", defaults.temperature);
  spec.params.top_p = r.get_double("top_p", defaults.top_p);
  spec.params.top_k = r.get_int("top_k", defaults.top_k);
  int64_t seed = r.get_int("seed", int64_t(defaults.seed));
  spec.params.seed = uint64_t(seed);
  spec.params.ignore_eos = r.get_bool("ignore_eos", defaults.ignore_eos);
  if (const json::Value* stop = json::find(j, "stop_token_ids"))
    spec.params.stop_token_ids = id_array(stop, where, "stop_token_ids");
  r.reject_unknown_keys();
  try {
    spec.params.validate();
  } catch (const Error& e) {
    fail(where, ": ", e.what());
  }
  return spec;
}

// The first id of `ids` outside [0, vocab), or -1.
int64_t first_outside(const std::vector<int32_t>& ids, int64_t vocab) {
  for (int32_t id : ids)
    if (id < 0 || id >= vocab) return id;
  return -1;
}

}  // namespace

std::vector<RequestSpec> read_requests_file(const std::string& path, const SamplingParams& defaults) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail("cannot read requests file '", path, "': it is a directory");
  std::ifstream in(path);
  if (!in) fail("cannot open requests file '", path, "'");
  std::vector<RequestSpec> specs;
  std::string line;
  for (int64_t line_no = 1; std::getline(in, line); ++line_no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(line_no);
    try {
      specs.push_back(parse_request(line, where, defaults));
    } catch (const std::exception& e) {  // mlarun::Error, or a JSON type error the checks above did not foresee
      RequestSpec bad;
      bad.where = where;
      bad.error = std::string(e.what()).rfind(where, 0) == 0 ? e.what() : where + ": " + e.what();
      specs.push_back(std::move(bad));
    }
  }
  if (in.bad()) fail("cannot read requests file '", path, "'");
  if (specs.empty()) fail(path, ": no requests in the file");
  return specs;
}

void check_requests_vocabulary(std::vector<RequestSpec>& specs, int64_t vocab_size) {
  for (RequestSpec& spec : specs) {
    if (!spec.ok()) continue;
    int64_t id = first_outside(spec.prompt, vocab_size);
    const char* key = "prompt_ids";
    if (id < 0) {
      id = first_outside(spec.params.stop_token_ids, vocab_size);
      key = "stop_token_ids";
    }
    if (id >= 0)
      spec.error = detail::concat(spec.where, ": key '", key, "': token id ", id, " is outside the vocabulary [0, ",
                                  vocab_size, ")");
  }
}

void check_ids_in_vocabulary(const std::vector<int32_t>& ids, int64_t vocab_size, const std::string& option) {
  const int64_t id = first_outside(ids, vocab_size);
  if (id >= 0) fail("option ", option, ": token id ", id, " is outside the vocabulary [0, ", vocab_size, ")");
}

}  // namespace mlarun::cli
