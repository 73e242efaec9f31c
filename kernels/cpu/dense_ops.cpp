// CPU reference for the dense ops: matrix product, RMSNorm, SiLU-mul, RoPE.
#include <cmath>

#include "kernels/cpu/cpu_ops.h"

namespace mlarun::cpu {

namespace {
// Dot product with 8 independent partial sums, so the compiler can vectorise without -ffast-math.
inline float dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  float tail = 0;
  for (; i < n; ++i) tail += a[i] * b[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}
}  // namespace

void linear(const float* x, const float* w, float* y, int64_t M, int64_t N, int64_t K) {
  // Blocks of 4 output rows reuse each x row from cache; fine for the reference and the tiny fixtures.
  for (int64_t m = 0; m < M; ++m) {
    const float* xr = x + m * K;
    float* yr = y + m * N;
    for (int64_t n = 0; n < N; ++n) yr[n] = dot(xr, w + n * K, K);
  }
}

void rms_norm(const float* x, const float* weight, float* y, int64_t rows, int64_t dim, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += double(xr[i]) * xr[i];
    float inv = float(1.0 / std::sqrt(ss / double(dim) + double(eps)));
    for (int64_t i = 0; i < dim; ++i) y[r * dim + i] = (xr[i] * inv) * weight[i];
  }
}

void silu_mul(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void rope(float* x, int64_t tokens, int64_t rows_per_token, int64_t width, const int64_t* positions,
          const float* inv_freq, int64_t half, float attention_factor, bool interleaved) {
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t i = 0; i < half; ++i) {
      float angle = float(positions[t]) * inv_freq[i];  // f32 product, as HF's f32 matmul of positions x inv_freq
      float c = float(std::cos(double(angle))) * attention_factor;
      float s = float(std::sin(double(angle))) * attention_factor;
      for (int64_t r = 0; r < rows_per_token; ++r) {
        float* tail = x + (t * rows_per_token + r) * width + (width - 2 * half);
        float* first = interleaved ? tail + 2 * i : tail + i;
        float* second = interleaved ? first + 1 : tail + half + i;
        float a = *first, b = *second;
        *first = a * c - b * s;
        *second = a * s + b * c;
      }
    }
  }
}

float attend_one(const float* q, const float* k, int64_t k_stride, const float* v, int64_t v_stride,
                 int64_t n_keys, int64_t dqk, int64_t dv, float scale, float* o, float* scratch) {
  float max_score = -INFINITY;
  for (int64_t t = 0; t < n_keys; ++t) {
    float s = dot(q, k + t * k_stride, dqk) * scale;
    scratch[t] = s;
    max_score = std::fmax(max_score, s);
  }
  double sum = 0;
  for (int64_t t = 0; t < n_keys; ++t) {
    scratch[t] = std::exp(scratch[t] - max_score);
    sum += scratch[t];
  }
  float inv = float(1.0 / sum);
  for (int64_t d = 0; d < dv; ++d) o[d] = 0;
  for (int64_t t = 0; t < n_keys; ++t) {
    float p = scratch[t] * inv;
    const float* vr = v + t * v_stride;
    for (int64_t d = 0; d < dv; ++d) o[d] += p * vr[d];
  }
  return max_score + float(std::log(sum));
}

}  // namespace mlarun::cpu
