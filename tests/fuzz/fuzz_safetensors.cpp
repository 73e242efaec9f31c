// libFuzzer harness for the safetensors reader and the sharded checkpoint (runtime/safetensors.h). An input that
// starts with '{' is a model.safetensors.index.json in a directory holding links to the deepseek-v3-tiny shards
// (tests/data), so index mutations meet real shards; any other input is one .safetensors file, opened and then
// every tensor loaded whole and as a row slice. Malformed input must be an mlarun::Error, never a crash, an
// out-of-bounds read or a leak.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

#include "fuzz_util.h"
#include "runtime/error.h"
#include "runtime/safetensors.h"

using namespace mlarun;
namespace fs = std::filesystem;

namespace {

std::string checkpoint_dir() { return fuzz::scratch_dir() + "/checkpoint"; }

void fuzz_file(const std::string& path) {
  try {
    SafetensorsFile f(path);
    (void)f.metadata();
    for (const TensorInfo& t : f.tensors()) {
      FUZZ_CHECK(t.begin <= t.end, t.name);
      FUZZ_CHECK(f.contains(t.name) && f.info(t.name).end == t.end, t.name);
      (void)f.bytes(t.name);
      try {
        (void)f.load(t.name, DType::F32);
      } catch (const Error&) {
      }
      if (!t.shape.empty() && t.shape[0] > 0) {
        try {
          (void)f.load_slice(t.name, 0, t.shape[0] / 2, t.shape[0], DType::BF16);
        } catch (const Error&) {
        }
      }
    }
  } catch (const Error&) {
  }
}

void fuzz_index(const uint8_t* data, size_t size) {
  fuzz::write_input("checkpoint/model.safetensors.index.json", data, size);
  try {
    Checkpoint c(checkpoint_dir());
    int64_t total = 0;
    for (const std::string& name : c.tensor_names()) {
      FUZZ_CHECK(c.contains(name), name);
      total += c.info(name).numel();
      (void)c.location_of(name);
    }
    FUZZ_CHECK(total == c.total_values(), "total_values disagrees with the tensors' sizes");
  } catch (const Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fs::create_directories(checkpoint_dir());
  const fs::path shards = fs::path(MLARUN_TEST_DATA_DIR) / "deepseek-v3-tiny";
  for (const fs::directory_entry& e : fs::directory_iterator(shards)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("model-", 0) == 0) fs::create_symlink(e.path(), fs::path(checkpoint_dir()) / name);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 0 && data[0] == '{')
    fuzz_index(data, size);
  else
    fuzz_file(fuzz::write_input("input.safetensors", data, size));
  return 0;
}
