// Argument checks every op shares: tensors defined and on one device (which picks the implementation), and the
// dtypes each implementation computes in (CPU: f32; CUDA: f32 or bf16). Messages name the op and the argument.
// Also the little shape arithmetic both backends share.
#pragma once

#include <initializer_list>

#include "runtime/error.h"
#include "runtime/tensor.h"

namespace mlarun::ops::detail {

struct Arg {
  const char* name;
  const Tensor& tensor;
};

// Every argument defined and on the same device; returns that device.
inline Device device_of(const char* op, std::initializer_list<Arg> args) {
  const Arg* first = nullptr;
  for (const Arg& a : args) {
    MLARUN_CHECK(a.tensor.defined(), op, ": argument '", a.name, "' is undefined");
    if (!first) first = &a;
    MLARUN_CHECK(a.tensor.device() == first->tensor.device(), op, ": argument '", a.name, "' is ",
                 a.tensor.describe(), " but '", first->name, "' is ", first->tensor.describe(),
                 "; all arguments must live on one device");
  }
  return first ? first->tensor.device() : Device::CPU;
}

// The CPU reference computes in f32 only.
inline void require_f32(const char* op, std::initializer_list<Arg> args) {
  for (const Arg& a : args)
    MLARUN_CHECK(a.tensor.dtype() == DType::F32, op, ": argument '", a.name, "' is ", a.tensor.describe(),
                 ", expected f32 (the CPU reference computes in f32)");
}

// CUDA kernels read and write f32 or bf16.
inline void require_float_or_bf16(const char* op, std::initializer_list<Arg> args) {
  for (const Arg& a : args)
    MLARUN_CHECK(a.tensor.dtype() == DType::F32 || a.tensor.dtype() == DType::BF16, op, ": argument '", a.name,
                 "' is ", a.tensor.describe(), ", expected f32 or bf16");
}

inline void require_same_dtype(const char* op, const Arg& a, const Arg& b) {
  MLARUN_CHECK(a.tensor.dtype() == b.tensor.dtype(), op, ": '", a.name, "' is ", a.tensor.describe(), " but '",
               b.name, "' is ", b.tensor.describe(), "; they must have one dtype");
}

// Rows of x seen as [rows, last dimension].
inline int64_t leading_rows(const Tensor& x) {
  int64_t n = 1;
  for (int i = 0; i + 1 < x.ndim(); ++i) n *= x.dim(i);
  return n;
}

}  // namespace mlarun::ops::detail
