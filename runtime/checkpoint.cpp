// Checkpoint directories: finds the safetensors files of a Hugging Face checkpoint and checks that the index
// and the shards agree before any weight is loaded, so a half-copied or mismatched download fails at startup
// with the names of the files involved rather than as a missing weight deep inside model construction.
#include <algorithm>
#include <filesystem>

#include "runtime/error.h"
#include "runtime/json.h"
#include "runtime/safetensors.h"

namespace mlarun {

namespace {

namespace fs = std::filesystem;

using FileList = std::vector<std::unique_ptr<SafetensorsFile>>;
using TensorLocations = std::map<std::string, size_t>;

// Opens `path` and records where each of its tensors lives; a tensor already seen in another file is an error.
void add_file(FileList& files, TensorLocations& where, const fs::path& path) {
  files.push_back(std::make_unique<SafetensorsFile>(path.string()));
  size_t index = files.size() - 1;
  for (const TensorInfo& t : files.back()->tensors()) {
    auto [it, inserted] = where.emplace(t.name, index);
    if (!inserted)
      fail("tensor '", t.name, "' appears in both ", files[it->second]->path(), " and ", path.string());
  }
}

// A shard name from the index must stay inside the checkpoint directory.
void check_shard_name(const std::string& index_path, const std::string& tensor, const std::string& shard) {
  fs::path p(shard);
  bool escapes = shard.empty() || p.is_absolute();
  for (const fs::path& part : p) escapes = escapes || part == "..";
  if (escapes)
    fail(index_path, ": tensor '", tensor, "' maps to shard '", shard,
         "', which is not a file name inside the checkpoint directory");
}

void open_indexed(const fs::path& dir, const fs::path& index_file, FileList& files, TensorLocations& where) {
  const std::string index_path = index_file.string();
  json::Value root = json::parse_file(index_path);
  if (!root.is_object()) fail(index_path, ": expected a JSON object, found a ", json::kind_name(root));
  const json::Value* weight_map = json::find(root, "weight_map");
  if (!weight_map) fail(index_path, ": missing 'weight_map'");
  if (!weight_map->is_object())
    fail(index_path, ": 'weight_map' must be an object, found a ", json::kind_name(*weight_map));

  std::map<std::string, std::string> shard_of;  // tensor -> shard file name, as the index says
  std::map<std::string, size_t> file_of_shard;  // shard file name -> index into files, sorted by name
  for (const auto& [tensor, value] : weight_map->items()) {
    if (!value.is_string())
      fail(index_path, ": weight_map value for tensor '", tensor, "' must be a string, found a ",
           json::kind_name(value));
    const std::string& shard = value.get_ref<const std::string&>();
    check_shard_name(index_path, tensor, shard);
    shard_of[tensor] = shard;
    file_of_shard.emplace(shard, 0);
  }

  for (auto& [shard, file_index] : file_of_shard) {
    fs::path shard_path = dir / shard;
    std::error_code ec;
    if (!fs::is_regular_file(shard_path, ec))
      fail(index_path, ": shard '", shard, "' does not exist (looked for ", shard_path.string(), ")");
    files.push_back(std::make_unique<SafetensorsFile>(shard_path.string()));
    file_index = files.size() - 1;
  }

  for (const auto& [tensor, shard] : shard_of) {
    size_t file_index = file_of_shard.at(shard);
    if (!files[file_index]->contains(tensor))
      fail(index_path, ": tensor '", tensor, "' is mapped to shard '", shard, "', but ",
           files[file_index]->path(), " does not contain it");
    where[tensor] = file_index;
  }

  // Every tensor a shard holds must be one the index assigns to that shard.
  for (const auto& [shard, file_index] : file_of_shard) {
    for (const TensorInfo& t : files[file_index]->tensors()) {
      auto listed = shard_of.find(t.name);
      if (listed == shard_of.end())
        fail(index_path, ": shard '", shard, "' holds tensor '", t.name, "', which the index does not list");
      if (listed->second != shard)
        fail(index_path, ": tensor '", t.name, "' appears in both shard '", listed->second, "' and shard '", shard,
             "'");
    }
  }
}

}  // namespace

Checkpoint::Checkpoint(const std::string& dir) : dir_(dir) {
  fs::path root(dir);
  std::error_code ec;
  if (!fs::is_directory(root, ec)) fail(dir, ": not a directory");

  fs::path index_file = root / "model.safetensors.index.json";
  fs::path single_file = root / "model.safetensors";
  if (fs::exists(index_file, ec)) {
    open_indexed(root, index_file, files_, where_);
  } else if (fs::exists(single_file, ec)) {
    add_file(files_, where_, single_file);
  } else {
    // No index: take every model*.safetensors file (e.g. DeepSeek's model{rank}-mp{world}.safetensors).
    std::vector<fs::path> candidates;
    for (const fs::directory_entry& entry : fs::directory_iterator(root)) {
      std::string name = entry.path().filename().string();
      const std::string suffix = ".safetensors";
      bool matches = name.rfind("model", 0) == 0 && name.size() > suffix.size() &&
                     name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
      if (matches && entry.is_regular_file()) candidates.push_back(entry.path());
    }
    if (candidates.empty()) fail(dir, ": no model.safetensors or model.safetensors.index.json");
    std::sort(candidates.begin(), candidates.end());
    for (const fs::path& p : candidates) add_file(files_, where_, p);
  }
}

std::vector<std::string> Checkpoint::tensor_names() const {
  std::vector<std::string> names;
  names.reserve(where_.size());
  for (const auto& entry : where_) names.push_back(entry.first);
  return names;
}

const SafetensorsFile& Checkpoint::file_of(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) fail(dir_, ": no tensor '", name, "'");
  return *files_[it->second];
}

const TensorInfo& Checkpoint::info(const std::string& name) const { return file_of(name).info(name); }

Tensor Checkpoint::load(const std::string& name, DType dtype) const { return file_of(name).load(name, dtype); }

Tensor Checkpoint::load_slice(const std::string& name, int dim, int64_t begin, int64_t end, DType dtype) const {
  return file_of(name).load_slice(name, dim, begin, end, dtype);
}

int64_t Checkpoint::total_values() const {
  int64_t total = 0;
  for (const auto& [name, file_index] : where_) total += files_[file_index]->info(name).numel();
  return total;
}

}  // namespace mlarun
