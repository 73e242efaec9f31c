// Reading Hugging Face safetensors files and sharded checkpoints. Files are memory-mapped and every rule of
// the format is checked before any tensor byte is touched (docs/layouts.md §3), so a malformed file is
// an mlarun::Error naming the file and the tensor, never a crash or an out-of-bounds read.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/tensor.h"
#include "runtime/weight_source.h"

namespace mlarun {

// A dtype string of the safetensors format ("BF16", "F8_E4M3", ...). Only some can become Tensors.
struct SafetensorsDType {
  std::string name;
  int bits = 0;  // 4, 6, 8, 16, 32 or 64
};
// Looks up a safetensors dtype string; nullptr if the format does not define it.
const SafetensorsDType* find_safetensors_dtype(const std::string& name);

struct TensorInfo {
  std::string name;
  std::string dtype;      // as in the file: "BF16", "F32", ...
  Shape shape;
  uint64_t begin = 0;     // offsets into the data buffer (after the header)
  uint64_t end = 0;
  int64_t numel() const;  // product of shape (already checked for overflow)
};

// One mapped .safetensors file, fully validated at open.
class SafetensorsFile {
 public:
  static constexpr uint64_t kMaxHeaderBytes = 100'000'000;

  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // in file (header) order
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;  // throws naming file and tensor

  // Raw bytes of one tensor inside the mapping (valid while this object lives).
  const uint8_t* bytes(const std::string& name) const;

  // Loads the tensor converted to `dtype` on the CPU. Float sources (F32, BF16, F16, F8_E4M3) convert to any
  // float dtype; I32/I64 load as themselves or convert to F32. Others are an error naming the dtype.
  Tensor load(const std::string& name, DType dtype = DType::F32) const;
  // Loads rows [row_begin, row_end) of dimension `dim` only (the tensor-parallel slice of one rank), converted
  // to `dtype`. Reads just the bytes it needs.
  Tensor load_slice(const std::string& name, int dim, int64_t begin, int64_t end, DType dtype = DType::F32) const;

 private:
  std::string path_;
  int fd_ = -1;
  const uint8_t* map_ = nullptr;
  size_t map_size_ = 0;
  const uint8_t* data_ = nullptr;  // start of the data buffer
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Writes tensors (CPU; any DType) to a new safetensors file, with optional string metadata. Used by the CLI to
// write logits and by tests to build fixtures and corrupt files.
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Safetensors name of a runtime dtype ("F32", "BF16", "F16", "F8_E4M3", "I32", "I64").
const char* safetensors_dtype_name(DType t);

// A Hugging Face checkpoint directory: `model.safetensors`, or `model.safetensors.index.json` and its shards,
// or (without an index) every `*.safetensors` file in it. Validates that every shard named by the index exists,
// every tensor sits in the shard the index names, and no tensor appears twice.
class Checkpoint final : public WeightSource {
 public:
  explicit Checkpoint(const std::string& dir);
  const std::string& dir() const { return dir_; }
  size_t num_files() const { return files_.size(); }
  std::vector<std::string> tensor_names() const;  // sorted
  bool contains(const std::string& name) const override { return where_.count(name) != 0; }
  std::string source_name() const override { return dir_; }
  Shape shape_of(const std::string& name) const override { return info(name).shape; }
  std::string dtype_of(const std::string& name) const override { return info(name).dtype; }
  std::string location_of(const std::string& name) const override { return file_of(name).path(); }
  const TensorInfo& info(const std::string& name) const;
  const SafetensorsFile& file_of(const std::string& name) const;  // throws "<dir>: no tensor '<name>'"
  Tensor load(const std::string& name, DType dtype = DType::F32) const override;
  Tensor load_slice(const std::string& name, int dim, int64_t begin, int64_t end,
                    DType dtype = DType::F32) const override;
  // Sum of element counts over all tensors.
  int64_t total_values() const;

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, size_t> where_;  // tensor name -> index into files_
};

}  // namespace mlarun
