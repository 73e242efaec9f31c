// CPU reference kernels on raw f32 buffers (row-major, contiguous). Shapes were checked by kernels/ops.cpp;
// these loops favour being obviously right, with f32 accumulation in a fixed order so results are repeatable.
#pragma once

#include <cstdint>

namespace mlarun::cpu {

// y[m, n] = sum_k x[m, k] * w[n, k]
void linear(const float* x, const float* w, float* y, int64_t M, int64_t N, int64_t K);
void rms_norm(const float* x, const float* weight, float* y, int64_t rows, int64_t dim, float eps);
void silu_mul(const float* gate, const float* up, float* out, int64_t n);
// Rotates the last 2*half values of each row of width `width`: pairs (2i, 2i+1) when interleaved, else (i, i+half).
void rope(float* x, int64_t tokens, int64_t rows_per_token, int64_t width, const int64_t* positions,
          const float* inv_freq, int64_t half, float attention_factor, bool interleaved);
// One query row against keys: o[dv] = softmax(scale * q.k_t for t < n_keys) . v_t; returns the log-sum-exp.
// k rows are `k_stride` floats apart, v rows `v_stride` apart.
float attend_one(const float* q, const float* k, int64_t k_stride, const float* v, int64_t v_stride,
                 int64_t n_keys, int64_t dqk, int64_t dv, float scale, float* o, float* scratch);

}  // namespace mlarun::cpu
