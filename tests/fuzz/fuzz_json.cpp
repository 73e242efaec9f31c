// libFuzzer harness for the strict JSON reader (runtime/json.h): any bytes either parse or fail with
// mlarun::Error, never crash or leak; and what parses must dump (parse accepts nothing dump refuses) and parse
// back to the same tree, compact and indented.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_util.h"
#include "runtime/error.h"
#include "runtime/json.h"

using namespace mlarun;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  (void)json::is_valid_utf8(text);
  json::Value v;
  try {
    v = json::parse(text, "fuzz.json");
  } catch (const Error&) {
    return 0;
  }
  (void)json::show(v);
  (void)json::kind_name(v);
  (void)json::to_int64(v);
  if (v.is_object())
    for (const auto& [key, value] : v.items()) FUZZ_CHECK(json::find(v, key) != nullptr, key);

  // Anything parse accepted, dump writes, and the text parses back to the same tree.
  std::string compact;
  std::string indented;
  try {
    compact = json::dump(v);
    indented = json::dump(v, 2);
  } catch (const Error& e) {
    FUZZ_CHECK(false, std::string("dump refused what parse accepted: ") + e.what());
  }
  FUZZ_CHECK(json::is_valid_utf8(compact), compact);
  json::Value again;
  try {
    again = json::parse(compact, "dumped.json");
    FUZZ_CHECK(again == v, "compact round trip changed the tree: " + compact);
    FUZZ_CHECK(json::parse(indented, "indented.json") == v, "indented round trip changed the tree: " + indented);
  } catch (const Error& e) {
    FUZZ_CHECK(false, std::string("dumped text does not parse: ") + e.what());
  }
  return 0;
}
