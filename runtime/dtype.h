// Element types the runtime stores and converts between. Checkpoints arrive as BF16/F16/F32/F8_E4M3; the CPU
// reference computes in f32 and the GPU in bf16 with f32 accumulation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace mlarun {

// I8: signed bytes (the int8 latent cache's byte pool, kernels/kv_quant.h); no checkpoint tensor uses it.
enum class DType : uint8_t { F32, BF16, F16, F8_E4M3, I32, I64, I8 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);  // "f32", "bf16", ...
// Parses the names used on our command lines ("f32", "bf16", "fp16", "fp8", "i32", "i64"); throws on others.
DType parse_dtype(const std::string& name);

// Scalar conversions (round to nearest even where narrowing; NaN stays NaN).
float bf16_to_float(uint16_t v);
uint16_t float_to_bf16(float v);
float f16_to_float(uint16_t v);
uint16_t float_to_f16(float v);
float fp8_e4m3_to_float(uint8_t v);  // OCP E4M3FN: no infinities, 0x7f/0xff are NaN, max 448
uint8_t float_to_fp8_e4m3(float v);  // saturates to +-448

// Converts n elements of `src` (type `from`) into f32 at `dst`. Integer types are converted by value.
void convert_to_f32(const void* src, DType from, float* dst, size_t n);
// Converts n f32 values to `to` (float types only).
void convert_from_f32(const float* src, DType to, void* dst, size_t n);

}  // namespace mlarun
