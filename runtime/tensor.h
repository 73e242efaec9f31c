// Tensor: a contiguous, row-major block of elements with a shape, a dtype and a device, sharing its storage by
// reference count. Views (reshape, a range of rows) share the storage; nothing here computes.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/dtype.h"

namespace mlarun {

enum class Device : uint8_t { CPU, CUDA };
const char* device_name(Device d);

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);  // "[2, 3]"
// Product of the dimensions with overflow and negativity checks; throws mlarun::Error naming `what`.
int64_t checked_numel(const Shape& s, const std::string& what = "tensor");

// Owns one allocation on one device. Freed when the last Tensor referring to it goes.
class Storage {
 public:
  Storage(Device device, size_t nbytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  Device device_;
  size_t nbytes_;
  void* data_ = nullptr;
};

class Tensor {
 public:
  Tensor() = default;
  static Tensor empty(const Shape& shape, DType dtype, Device device = Device::CPU);
  static Tensor zeros(const Shape& shape, DType dtype, Device device = Device::CPU);
  // A CPU f32 tensor holding `values` (size must equal the shape's element count).
  static Tensor from_f32(const Shape& shape, const std::vector<float>& values);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return int(shape_.size()); }
  int64_t dim(int i) const;  // negative i counts from the end
  int64_t numel() const { return numel_; }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device() : Device::CPU; }
  size_t nbytes() const { return size_t(numel_) * dtype_size(dtype_); }

  void* raw() const;
  template <typename T>
  T* data() const;  // checks that T matches the dtype

  // Same elements, new shape (one dimension may be -1). Shares storage.
  Tensor view(const Shape& shape) const;
  // Rows [start, start+len) along dimension 0. Shares storage.
  Tensor rows(int64_t start, int64_t len) const;
  // A `dtype` tensor of `shape` over bytes [byte_offset, ...) of this one: a typed window into a raw buffer (one
  // upload that holds several index arrays, runtime/step_tensors.h). Shares storage; the offset must be aligned
  // to the dtype's size.
  Tensor view_bytes(size_t byte_offset, const Shape& shape, DType dtype) const;
  // Deep copy onto `device` (CPU<->CUDA through the device layer), optionally converting dtype (CPU only).
  Tensor to(Device device) const;
  Tensor to_dtype(DType dtype) const;
  Tensor clone() const;

  std::string describe() const;  // "f32[2, 3] on cpu"

 private:
  std::shared_ptr<Storage> storage_;
  size_t offset_bytes_ = 0;
  Shape shape_;
  int64_t numel_ = 0;
  DType dtype_ = DType::F32;
};

template <typename T>
struct DTypeOf;
template <> struct DTypeOf<float> { static constexpr DType value = DType::F32; };
template <> struct DTypeOf<int32_t> { static constexpr DType value = DType::I32; };
template <> struct DTypeOf<int64_t> { static constexpr DType value = DType::I64; };
template <> struct DTypeOf<uint16_t> { static constexpr DType value = DType::BF16; };  // raw bf16 or f16 bits
template <> struct DTypeOf<uint8_t> { static constexpr DType value = DType::F8_E4M3; };

void check_dtype(const Tensor& t, DType expected, const char* cpp_type);

template <typename T>
T* Tensor::data() const {
  if constexpr (std::is_same_v<T, uint16_t>) {
    if (dtype_ != DType::BF16 && dtype_ != DType::F16) check_dtype(*this, DType::BF16, "uint16_t");
  } else {
    if (dtype_ != DTypeOf<T>::value) check_dtype(*this, DTypeOf<T>::value, "T");
  }
  return static_cast<T*>(raw());
}

}  // namespace mlarun
