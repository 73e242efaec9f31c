// Safetensors reader and writer. The whole header is validated at open, in the order of the reference Rust
// reader (docs/layouts.md §3.2), so that afterwards every tensor's bytes are known to lie inside the mapping.
// Tensor bytes are only ever memcpy'd out of the mapping: the format does not promise aligned data.
// nlohmann-json parses the header text (strictly: see json.h); the format's rules on the tree are checked here.
#include "runtime/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <numeric>

#include "runtime/error.h"
#include "runtime/json.h"

namespace mlarun {

namespace {

const SafetensorsDType kSafetensorsDTypes[] = {
    {"BOOL", 8},        {"U8", 8},          {"I8", 8},          {"F8_E5M2", 8},     {"F8_E4M3", 8},
    {"F8_E8M0", 8},     {"F8_E4M3FNUZ", 8}, {"F8_E5M2FNUZ", 8}, {"I16", 16},        {"U16", 16},
    {"F16", 16},        {"BF16", 16},       {"I32", 32},        {"U32", 32},        {"F32", 32},
    {"I64", 64},        {"U64", 64},        {"F64", 64},        {"C64", 64},        {"F4", 4},
    {"F6_E2M3", 6},     {"F6_E3M2", 6},
};

const DType kRuntimeDTypes[] = {DType::F32, DType::BF16, DType::F16, DType::F8_E4M3, DType::I32, DType::I64};

bool is_float_dtype(DType t) { return t != DType::I32 && t != DType::I64 && t != DType::I8; }

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// A JSON integer in [0, 2^63), or an error naming the file, the tensor and the field. No file holds 2^63 bytes;
// the bound keeps dimensions in int64_t and sums of offsets from wrapping.
uint64_t non_negative_int(const json::Value& v, const std::string& path, const std::string& tensor,
                          const char* field) {
  std::optional<int64_t> i = json::to_int64(v);
  if (i && *i >= 0) return uint64_t(*i);
  std::string found = i                        ? std::string("a negative integer")
                      : v.is_number_integer() ? json::show(v) + ", above 2^63 - 1"
                                              : std::string("a ") + json::kind_name(v);
  fail(path, ": tensor '", tensor, "': ", field, " must hold non-negative integers, found ", found);
}

TensorInfo parse_tensor_entry(const std::string& path, const std::string& name, const json::Value& entry) {
  if (!entry.is_object())
    fail(path, ": tensor '", name, "': expected an object with dtype, shape and data_offsets, found a ",
         json::kind_name(entry));
  for (const auto& [key, value] : entry.items())
    if (key != "dtype" && key != "shape" && key != "data_offsets")
      fail(path, ": tensor '", name, "': unexpected field '", key, "'");
  const json::Value* dtype = json::find(entry, "dtype");
  const json::Value* shape = json::find(entry, "shape");
  const json::Value* offsets = json::find(entry, "data_offsets");
  const std::pair<const char*, const json::Value*> fields[] = {
      {"dtype", dtype}, {"shape", shape}, {"data_offsets", offsets}};
  for (const auto& [field, value] : fields)
    if (!value) fail(path, ": tensor '", name, "': missing field '", field, "'");

  TensorInfo info;
  info.name = name;
  if (!dtype->is_string())
    fail(path, ": tensor '", name, "': dtype must be a string, found a ", json::kind_name(*dtype));
  info.dtype = dtype->get<std::string>();
  if (!find_safetensors_dtype(info.dtype))
    fail(path, ": tensor '", name, "': unknown dtype '", info.dtype, "'");
  if (!shape->is_array())
    fail(path, ": tensor '", name, "': shape must be an array, found a ", json::kind_name(*shape));
  for (const json::Value& d : *shape) info.shape.push_back(int64_t(non_negative_int(d, path, name, "shape")));
  if (!offsets->is_array() || offsets->size() != 2)
    fail(path, ": tensor '", name, "': data_offsets must be an array of 2 integers [BEGIN, END]");
  info.begin = non_negative_int((*offsets)[0], path, name, "data_offsets");
  info.end = non_negative_int((*offsets)[1], path, name, "data_offsets");
  return info;
}

// Byte size the shape and dtype call for, with every multiplication checked.
uint64_t expected_bytes(const std::string& path, const TensorInfo& t) {
  uint64_t numel = 1;
  for (int64_t d : t.shape) {
    if (d != 0 && numel > std::numeric_limits<uint64_t>::max() / uint64_t(d))
      fail(path, ": tensor '", t.name, "': shape ", shape_str(t.shape), " overflows the element count");
    numel *= uint64_t(d);
  }
  if (numel > uint64_t(std::numeric_limits<int64_t>::max()))
    fail(path, ": tensor '", t.name, "': shape ", shape_str(t.shape), " overflows the element count");
  uint64_t bits_per = uint64_t(find_safetensors_dtype(t.dtype)->bits);
  if (numel > std::numeric_limits<uint64_t>::max() / bits_per)
    fail(path, ": tensor '", t.name, "': shape ", shape_str(t.shape), " overflows the bit count for ", t.dtype);
  uint64_t bits = numel * bits_per;
  if (bits % 8 != 0)
    fail(path, ": tensor '", t.name, "': ", numel, " elements of ", t.dtype, " are ", bits,
         " bits, not a whole number of bytes");
  return bits / 8;
}

// Checks that the tensors cover the data buffer contiguously from 0 (in offset order) with the right sizes;
// returns the end of the last one.
uint64_t validate_offsets(const std::string& path, const std::vector<TensorInfo>& tensors) {
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return std::pair(tensors[a].begin, tensors[a].end) < std::pair(tensors[b].begin, tensors[b].end);
  });
  uint64_t expected_begin = 0;
  const TensorInfo* previous = nullptr;
  for (size_t i : order) {
    const TensorInfo& t = tensors[i];
    std::string where = "tensor '" + t.name + "' data_offsets [" + std::to_string(t.begin) + ", " +
                        std::to_string(t.end) + "]";
    if (!previous && t.begin != 0)
      fail(path, ": ", where, ": the first tensor in the data buffer must begin at offset 0");
    if (t.begin > expected_begin)
      fail(path, ": ", where, ": gap of ", t.begin - expected_begin, " bytes after tensor '", previous->name,
           "' (which ends at ", expected_begin, ")");
    if (t.begin < expected_begin)
      fail(path, ": ", where, ": overlaps tensor '", previous->name, "' (which ends at ", expected_begin, ")");
    if (t.end < t.begin) fail(path, ": ", where, ": END is before BEGIN");
    uint64_t bytes = expected_bytes(path, t);
    if (t.end - t.begin != bytes)
      fail(path, ": ", where, ": holds ", t.end - t.begin, " bytes but ", t.dtype, shape_str(t.shape),
           " needs ", bytes);
    expected_begin = t.end;
    previous = &t;
  }
  return expected_begin;
}

// The runtime dtype a tensor loads from, checking that it converts to `target`.
DType loadable_source(const std::string& path, const TensorInfo& t, DType target) {
  DType source = DType::F32;
  bool known = false;
  for (DType d : kRuntimeDTypes)
    if (t.dtype == safetensors_dtype_name(d)) source = d, known = true;
  if (!known)
    fail(path, ": tensor '", t.name, "' has dtype ", t.dtype,
         ", which mlarun cannot load (supported: F32, BF16, F16, F8_E4M3, I32, I64)");
  bool ok = is_float_dtype(source) ? is_float_dtype(target) : (target == source || target == DType::F32);
  if (!ok)
    fail(path, ": tensor '", t.name, "': cannot convert ", t.dtype, " to ", dtype_name(target));
  return source;
}

// Copies n elements from possibly unaligned `src` (type `from`) to aligned `dst` (type `to`), converting
// through f32 in chunks when the types differ.
void copy_converted(const uint8_t* src, DType from, void* dst, DType to, size_t n) {
  if (n == 0) return;
  size_t from_size = dtype_size(from), to_size = dtype_size(to);
  if (from == to) {
    std::memcpy(dst, src, n * from_size);
    return;
  }
  constexpr size_t kChunk = 4096;
  std::vector<uint64_t> staging(kChunk);  // 8-byte aligned copy of the source elements
  std::vector<float> f32(kChunk);
  uint8_t* out = static_cast<uint8_t*>(dst);
  for (size_t done = 0; done < n; done += kChunk) {
    size_t m = std::min(kChunk, n - done);
    std::memcpy(staging.data(), src + done * from_size, m * from_size);
    convert_to_f32(staging.data(), from, f32.data(), m);
    convert_from_f32(f32.data(), to, out + done * to_size, m);
  }
}

}  // namespace

const SafetensorsDType* find_safetensors_dtype(const std::string& name) {
  for (const SafetensorsDType& d : kSafetensorsDTypes)
    if (d.name == name) return &d;
  return nullptr;
}

const char* safetensors_dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::BF16: return "BF16";
    case DType::F16: return "F16";
    case DType::F8_E4M3: return "F8_E4M3";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
    case DType::I8: return "I8";
  }
  return "?";
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) fail(path, ": cannot open: ", std::strerror(errno));
  try {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) fail(path, ": cannot stat: ", std::strerror(errno));
    if (!S_ISREG(st.st_mode)) fail(path, ": not a regular file");
    uint64_t file_size = uint64_t(st.st_size);
    if (file_size < 8)
      fail(path, ": file is ", file_size, " bytes, too small for the 8-byte header length (HeaderTooSmall)");
    void* map = ::mmap(nullptr, size_t(file_size), PROT_READ, MAP_PRIVATE, fd_, 0);
    if (map == MAP_FAILED) fail(path, ": cannot mmap ", file_size, " bytes: ", std::strerror(errno));
    map_ = static_cast<const uint8_t*>(map);
    map_size_ = size_t(file_size);

    uint64_t header_len = read_u64_le(map_);
    if (header_len > kMaxHeaderBytes)
      fail(path, ": header length ", header_len, " exceeds the limit of ", kMaxHeaderBytes,
           " bytes (HeaderTooLarge)");
    if (8 + header_len > file_size)
      fail(path, ": header length ", header_len, " runs past the end of the ", file_size,
           "-byte file (InvalidHeaderLength)");
    std::string header(reinterpret_cast<const char*>(map_ + 8), size_t(header_len));
    if (!json::is_valid_utf8(header)) fail(path, ": header is not valid UTF-8 (InvalidHeader)");
    if (header.empty() || header[0] != '{') fail(path, ": header must be a JSON object starting with '{'");
    json::Value root = json::parse(header, path + " (safetensors header)");
    if (!root.is_object()) fail(path, ": header is not a JSON object");

    for (const auto& [key, value] : root.items()) {
      if (key == "__metadata__") {
        if (!value.is_object()) fail(path, ": __metadata__ must be an object, found a ", json::kind_name(value));
        for (const auto& [mkey, mvalue] : value.items()) {
          if (!mvalue.is_string())
            fail(path, ": __metadata__ value of '", mkey, "' must be a string, found a ", json::kind_name(mvalue));
          metadata_[mkey] = mvalue.get<std::string>();
        }
        continue;
      }
      tensors_.push_back(parse_tensor_entry(path, key, value));
    }
    uint64_t data_len = validate_offsets(path, tensors_);
    uint64_t needed = 8 + header_len + data_len;  // < 2^64: header_len <= 1e8, data_len < 2^63
    if (needed > file_size)
      fail(path, ": tensor data needs ", needed, " bytes but the file has only ", file_size,
           " (MetadataIncompleteBuffer)");
    if (needed < file_size)
      fail(path, ": ", file_size - needed, " trailing bytes after the last tensor (MetadataIncompleteBuffer)");
    data_ = map_ + 8 + header_len;
    for (size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;
  } catch (...) {
    if (map_) ::munmap(const_cast<uint8_t*>(map_), map_size_);
    ::close(fd_);
    throw;
  }
  ::close(fd_);  // the mapping stays valid without the descriptor
  fd_ = -1;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(const_cast<uint8_t*>(map_), map_size_);
  if (fd_ >= 0) ::close(fd_);
}

bool SafetensorsFile::contains(const std::string& name) const { return index_.count(name) != 0; }

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) fail(path_, ": no tensor '", name, "'");
  return tensors_[it->second];
}

const uint8_t* SafetensorsFile::bytes(const std::string& name) const { return data_ + info(name).begin; }

Tensor SafetensorsFile::load(const std::string& name, DType dtype) const {
  const TensorInfo& t = info(name);
  DType source = loadable_source(path_, t, dtype);
  Tensor out = Tensor::empty(t.shape, dtype);
  copy_converted(data_ + t.begin, source, out.numel() ? out.raw() : nullptr, dtype, size_t(out.numel()));
  return out;
}

Tensor SafetensorsFile::load_slice(const std::string& name, int dim, int64_t begin, int64_t end,
                                   DType dtype) const {
  const TensorInfo& t = info(name);
  int rank = int(t.shape.size());
  if (rank == 0) fail(path_, ": tensor '", name, "' is a scalar and cannot be sliced");
  int d = dim < 0 ? dim + rank : dim;
  if (d < 0 || d >= rank)
    fail(path_, ": tensor '", name, "' of shape ", shape_str(t.shape), ": no dimension ", dim, " to slice");
  if (begin < 0 || end < begin || end > t.shape[size_t(d)])
    fail(path_, ": tensor '", name, "' of shape ", shape_str(t.shape), ": slice [", begin, ", ", end,
         ") of dimension ", d, " is out of range [0, ", t.shape[size_t(d)], "]");
  DType source = loadable_source(path_, t, dtype);

  Shape out_shape = t.shape;
  out_shape[size_t(d)] = end - begin;
  Tensor out = Tensor::empty(out_shape, dtype);
  if (out.numel() == 0) return out;
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < d; ++i) outer *= t.shape[size_t(i)];
  for (int i = d + 1; i < rank; ++i) inner *= t.shape[size_t(i)];
  const int64_t src_block = t.shape[size_t(d)] * inner;  // elements per outer index in the file
  const int64_t dst_block = (end - begin) * inner;        // elements per outer index in the slice
  const size_t src_size = dtype_size(source), dst_size = dtype_size(dtype);
  uint8_t* dst = static_cast<uint8_t*>(out.raw());
  for (int64_t o = 0; o < outer; ++o) {
    const uint8_t* src = data_ + t.begin + size_t(o * src_block + begin * inner) * src_size;
    copy_converted(src, source, dst + size_t(o * dst_block) * dst_size, dtype, size_t(dst_block));
  }
  return out;
}

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  json::Value header = json::Value::object();
  if (!metadata.empty()) {
    json::Value& meta = header["__metadata__"] = json::Value::object();
    for (const auto& [key, value] : metadata) meta[key] = value;
  }
  std::map<std::string, bool> seen;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__") fail(path, ": '__metadata__' cannot be a tensor name");
    if (!seen.emplace(name, true).second) fail(path, ": tensor '", name, "' given twice");
    if (!t.defined()) fail(path, ": tensor '", name, "' is undefined");
    if (t.device() != Device::CPU) fail(path, ": tensor '", name, "' must be on the CPU to be written");
    json::Value& entry = header[name] = json::Value::object();
    entry["dtype"] = safetensors_dtype_name(t.dtype());
    entry["shape"] = json::Value::array();
    for (int64_t d : t.shape()) entry["shape"].push_back(d);
    entry["data_offsets"] = json::Value::array({offset, offset + t.nbytes()});
    offset += t.nbytes();
  }
  std::string text = json::dump(header);
  text.append((8 - text.size() % 8) % 8, ' ');  // the data buffer starts 8-byte aligned

  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) fail(path, ": cannot open for writing: ", std::strerror(errno));
  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = uint8_t(uint64_t(text.size()) >> (8 * i));
  out.write(reinterpret_cast<const char*>(length), 8);
  out.write(text.data(), std::streamsize(text.size()));
  for (const auto& entry : tensors) {
    const Tensor& t = entry.second;
    if (t.nbytes()) out.write(static_cast<const char*>(t.raw()), std::streamsize(t.nbytes()));
  }
  out.close();
  if (!out) fail(path, ": write failed: ", std::strerror(errno));
}

}  // namespace mlarun
