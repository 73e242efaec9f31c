// libFuzzer harness for the config loaders (runtime/model_config.h, runtime/config_value.h): the input is read
// as JSON and as YAML (the in-memory entry points behind load_model_config), and each tree that parses is given
// to both the DeepSeek and the Hugging Face reader. Bad input must be an mlarun::Error; a config that loads must
// validate, check against a few TP degrees and serialize (to_json + dump) without throwing.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_util.h"
#include "runtime/config_value.h"
#include "runtime/error.h"
#include "runtime/json.h"
#include "runtime/model_config.h"

using namespace mlarun;

namespace {

void try_reader(ModelConfig (*read)(const json::Value&, const std::string&), const json::Value& tree) {
  ModelConfig cfg;
  try {
    cfg = read(tree, "fuzz.config");
  } catch (const Error&) {
    return;
  }
  try {
    cfg.validate();
  } catch (const Error& e) {
    FUZZ_CHECK(false, std::string("a loaded config fails validate(): ") + e.what());
  }
  for (int64_t tp : {1, 2, 3, 8}) {
    try {
      cfg.validate_for_tp(tp);
    } catch (const Error&) {
    }
  }
  try {
    (void)json::dump(cfg.to_json(), 2);
  } catch (const Error& e) {
    FUZZ_CHECK(false, std::string("a loaded config does not serialize: ") + e.what());
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::silence_cerr();  // unknown-key warnings
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  for (bool yaml : {false, true}) {
    json::Value tree;
    try {
      tree = yaml ? parse_yaml(text, "fuzz.yaml") : json::parse(text, "fuzz.json");
    } catch (const Error&) {
      continue;
    }
    try_reader(model_config_from_deepseek, tree);
    try_reader(model_config_from_hf, tree);
  }
  return 0;
}
