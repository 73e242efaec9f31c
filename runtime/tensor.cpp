// Tensor bookkeeping: shapes with checked arithmetic, 64-byte aligned host storage (device storage comes from the
// caching allocator through runtime/device.h), views and copies.
#include "runtime/tensor.h"

#include <cstdlib>
#include <cstring>
#include <limits>
#include <sstream>

#include "runtime/device.h"
#include "runtime/error.h"

namespace mlarun {

const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

int64_t checked_numel(const Shape& s, const std::string& what) {
  int64_t n = 1;
  for (int64_t d : s) {
    MLARUN_CHECK(d >= 0, what, ": negative dimension in shape ", shape_str(s));
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d)
      fail(what, ": shape ", shape_str(s), " has more elements than fit in 64 bits");
    n *= d;
  }
  return n;
}

Storage::Storage(Device device, size_t nbytes) : device_(device), nbytes_(nbytes) {
  if (device == Device::CPU) {
    size_t padded = (nbytes + 63) / 64 * 64;
    data_ = padded ? std::aligned_alloc(64, padded) : nullptr;
    if (padded && !data_) fail("out of host memory allocating ", nbytes, " bytes");
  } else {
    data_ = nbytes ? device_malloc(nbytes) : nullptr;
  }
}

Storage::~Storage() {
  if (device_ == Device::CPU)
    std::free(data_);
  else
    device_free(data_);
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  Tensor t;
  t.numel_ = checked_numel(shape);
  if (t.numel_ > int64_t(std::numeric_limits<size_t>::max() / 8))
    fail("tensor of shape ", shape_str(shape), " is too large");
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.storage_ = std::make_shared<Storage>(device, t.nbytes());
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  if (device == Device::CPU) {
    if (t.nbytes()) std::memset(t.raw(), 0, t.nbytes());
  } else {
    device_memset_zero(t.raw(), t.nbytes());
  }
  return t;
}

Tensor Tensor::from_f32(const Shape& shape, const std::vector<float>& values) {
  Tensor t = empty(shape, DType::F32);
  MLARUN_CHECK(int64_t(values.size()) == t.numel(), "from_f32: ", values.size(), " values for shape ",
               shape_str(shape));
  if (!values.empty()) std::memcpy(t.raw(), values.data(), values.size() * 4);
  return t;
}

int64_t Tensor::dim(int i) const {
  int n = ndim();
  int j = i < 0 ? i + n : i;
  MLARUN_CHECK(j >= 0 && j < n, "dimension ", i, " out of range for ", describe());
  return shape_[size_t(j)];
}

void* Tensor::raw() const {
  MLARUN_CHECK(storage_ != nullptr, "use of an undefined tensor");
  return static_cast<char*>(storage_->data()) + offset_bytes_;
}

void check_dtype(const Tensor& t, DType expected, const char* cpp_type) {
  if (t.dtype() != expected)
    fail("tensor ", t.describe(), " accessed as ", cpp_type, " (", dtype_name(expected), ")");
}

Tensor Tensor::view(const Shape& shape) const {
  Shape s = shape;
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      MLARUN_CHECK(infer < 0, "view ", shape_str(shape), ": only one dimension may be -1");
      infer = int(i);
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0) {
    MLARUN_CHECK(known > 0 && numel_ % known == 0, "cannot view ", describe(), " as ", shape_str(shape));
    s[size_t(infer)] = numel_ / known;
  }
  MLARUN_CHECK(checked_numel(s) == numel_, "cannot view ", describe(), " as ", shape_str(shape));
  Tensor t = *this;
  t.shape_ = s;
  return t;
}

Tensor Tensor::rows(int64_t start, int64_t len) const {
  MLARUN_CHECK(ndim() >= 1, "rows() on a scalar tensor");
  MLARUN_CHECK(start >= 0 && len >= 0 && start + len <= shape_[0], "rows [", start, ", ", start + len,
               ") out of range for ", describe());
  Tensor t = *this;
  int64_t row_elems = shape_[0] ? numel_ / shape_[0] : 0;
  t.offset_bytes_ += size_t(start * row_elems) * dtype_size(dtype_);
  t.shape_[0] = len;
  t.numel_ = len * row_elems;
  return t;
}

Tensor Tensor::view_bytes(size_t byte_offset, const Shape& shape, DType dtype) const {
  const int64_t n = checked_numel(shape, "view_bytes");
  const size_t bytes = size_t(n) * dtype_size(dtype);
  MLARUN_CHECK(defined() && byte_offset % dtype_size(dtype) == 0 && byte_offset + bytes <= nbytes(), "view_bytes: ",
               bytes, " bytes of ", dtype_name(dtype), " at offset ", byte_offset, " of ", describe());
  Tensor t = *this;
  t.offset_bytes_ += byte_offset;
  t.shape_ = shape;
  t.numel_ = n;
  t.dtype_ = dtype;
  return t;
}

Tensor Tensor::to(Device device) const {
  Tensor t = empty(shape_, dtype_, device);
  copy_bytes(t.raw(), device, raw(), this->device(), nbytes());
  return t;
}

Tensor Tensor::clone() const { return to(device()); }

Tensor Tensor::to_dtype(DType dtype) const {
  MLARUN_CHECK(device() == Device::CPU, "to_dtype on ", describe(), ": only CPU tensors convert here");
  if (dtype == dtype_) return clone();
  Tensor t = empty(shape_, dtype, Device::CPU);
  if (dtype == DType::F32) {
    convert_to_f32(raw(), dtype_, t.data<float>(), size_t(numel_));
  } else {
    MLARUN_CHECK(dtype_ == DType::F32, "to_dtype: ", dtype_name(dtype_), " -> ", dtype_name(dtype),
                 " goes through f32 first");
    convert_from_f32(data<float>(), dtype, t.raw(), size_t(numel_));
  }
  return t;
}

std::string Tensor::describe() const {
  std::ostringstream os;
  os << dtype_name(dtype_) << shape_str(shape_) << " on " << device_name(device());
  return os.str();
}

}  // namespace mlarun
