// Helpers for the GPU tests (label gpu): skip without a usable GPU (never fail for lack of one), fresh random
// inputs (never zeros), bf16 rounding of host values so the CPU reference sees exactly what the GPU sees, and the
// error measure: the relative L2 error ||out - ref|| / ||ref|| over all elements, with NaN never passing.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "runtime/device.h"
#include "runtime/tensor.h"

#define MLARUN_GPU_OR_SKIP() \
  if (!::mlarun::gpu_available()) GTEST_SKIP() << "no usable GPU: " << ::mlarun::gpu_info().reason

namespace mlarun::testing {

// Tolerances by dtype for ||out - ref|| / ||ref||: bf16 operands and outputs land between 1e-3 and 1e-2; f32
// arithmetic far under 1e-3 (the order of sums differs from the CPU's).
constexpr double kBf16RelTol = 1e-2;
constexpr double kF32RelTol = 1e-5;

// A host f32 tensor of N(mean, scale) values from `rng` (a fresh draw every call).
inline Tensor random_f32(const Shape& shape, std::mt19937& rng, float scale = 1.0f, float mean = 0.0f) {
  std::normal_distribution<float> dist(mean, scale);
  Tensor t = Tensor::empty(shape, DType::F32);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

// The same values rounded to bf16 precision, still host f32 (what a bf16 GPU tensor holds, exactly).
inline Tensor bf16_rounded(const Tensor& host_f32) { return host_f32.to_dtype(DType::BF16).to_dtype(DType::F32); }

// Host f32 -> device tensor of `dtype` (bf16 or f32).
inline Tensor to_gpu(const Tensor& host_f32, DType dtype = DType::BF16) {
  return (dtype == DType::F32 ? host_f32 : host_f32.to_dtype(dtype)).to(Device::CUDA);
}

// Device (or host) tensor -> host f32.
inline Tensor to_host(const Tensor& t) {
  Tensor h = t.device() == Device::CPU ? t : t.to(Device::CPU);
  return h.dtype() == DType::F32 ? h : h.to_dtype(DType::F32);
}

// ||out - ref|| / ||ref|| over tensors of one size, each read as host f32 wherever it lives; +inf on a size
// mismatch or any NaN/inf in out.
inline double rel_error(const Tensor& out_any, const Tensor& ref_any) {
  const Tensor out = to_host(out_any), ref = to_host(ref_any);
  if (out.numel() != ref.numel()) return INFINITY;
  double diff = 0, norm = 0;
  for (int64_t i = 0; i < out.numel(); ++i) {
    const double o = out.data<float>()[i], r = ref.data<float>()[i];
    if (!std::isfinite(o)) return INFINITY;
    diff += (o - r) * (o - r);
    norm += r * r;
  }
  return std::sqrt(diff) / std::max(std::sqrt(norm), 1e-30);
}

// Same dtype, shape and bytes, wherever each lives (any dtype: the step's index tensors are i32/i64).
inline bool bitwise_equal(const Tensor& a_any, const Tensor& b_any) {
  const Tensor a = a_any.device() == Device::CPU ? a_any : a_any.to(Device::CPU);
  const Tensor b = b_any.device() == Device::CPU ? b_any : b_any.to(Device::CPU);
  return a.dtype() == b.dtype() && a.shape() == b.shape() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

}  // namespace mlarun::testing
