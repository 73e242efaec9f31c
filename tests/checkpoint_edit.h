// Making a checkpoint that is well formed but wrong, for the load-time checks: copy a fixture directory and
// relabel one tensor's dtype in its safetensors header, in place. The new name must have the old one's length
// and byte size (F32 -> I32), so every offset stays valid and only the dtype check can catch it.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

namespace mlarun::testing {

// Copies the files of `src` into the existing directory `dst`.
inline void copy_checkpoint(const std::string& src, const std::string& dst) {
  for (const auto& entry : std::filesystem::directory_iterator(src))
    std::filesystem::copy_file(entry.path(), std::filesystem::path(dst) / entry.path().filename(),
                               std::filesystem::copy_options::overwrite_existing);
}

// Rewrites the dtype of `tensor` in whichever *.safetensors file of `dir` holds it; returns that file's path
// ("" and a test failure when no file holds it or the names differ in length).
inline std::string relabel_dtype(const std::string& dir, const std::string& tensor, const std::string& dtype) {
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".safetensors" || entry.path().filename() == "reference.safetensors") continue;
    std::fstream f(entry.path(), std::ios::in | std::ios::out | std::ios::binary);
    uint64_t n = 0;
    f.read(reinterpret_cast<char*>(&n), 8);
    std::string header(n, '\0');
    f.read(header.data(), std::streamsize(n));
    const size_t key = header.find("\"" + tensor + "\"");
    if (key == std::string::npos) continue;
    const size_t field = header.find("\"dtype\"", key);
    const size_t open = header.find('"', header.find(':', field) + 1);
    const size_t close = header.find('"', open + 1);
    EXPECT_LT(field, header.find('}', key)) << "no dtype in the entry of " << tensor;
    EXPECT_EQ(close - open - 1, dtype.size()) << "relabel keeps the header's length: " << header.substr(open, close - open + 1);
    if (close - open - 1 != dtype.size()) return "";
    f.seekp(std::streamoff(8 + open + 1));
    f.write(dtype.data(), std::streamsize(dtype.size()));
    return entry.path().string();
  }
  ADD_FAILURE() << "no safetensors file in " << dir << " holds " << tensor;
  return "";
}

}  // namespace mlarun::testing
