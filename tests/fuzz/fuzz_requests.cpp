// libFuzzer harness for `generate --requests FILE.jsonl` (launch/requests_file.h): the input is written to a file
// and read with the default sampling options. Only an unreadable or empty file may throw (mlarun::Error); every
// other line becomes a spec that is either a valid request or carries an error naming FILE:LINE.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_util.h"
#include "launch/requests_file.h"
#include "runtime/error.h"

using namespace mlarun;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::write_input("requests.jsonl", data, size);
  std::vector<cli::RequestSpec> specs;
  try {
    specs = cli::read_requests_file(path, SamplingParams{});
  } catch (const Error&) {
    return 0;
  }
  for (const cli::RequestSpec& spec : specs) {
    FUZZ_CHECK(spec.where.rfind(path + ":", 0) == 0, "spec without FILE:LINE: " + spec.where);
    if (!spec.ok()) {
      FUZZ_CHECK(spec.error.rfind(spec.where, 0) == 0, "error does not start with FILE:LINE: " + spec.error);
      continue;
    }
    try {
      spec.params.validate();
    } catch (const Error& e) {
      FUZZ_CHECK(false, std::string("an accepted request fails validate(): ") + e.what());
    }
    for (int32_t id : spec.prompt) FUZZ_CHECK(id >= 0, "negative prompt id accepted");
  }
  cli::check_requests_vocabulary(specs, 128);
  for (const cli::RequestSpec& spec : specs) {
    if (!spec.ok()) continue;
    for (int32_t id : spec.prompt) FUZZ_CHECK(id < 128, "prompt id outside the vocabulary accepted");
  }
  return 0;
}
