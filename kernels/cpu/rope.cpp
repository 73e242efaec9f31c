// CPU rotary position embedding (twin of cuda/rope.cu): rotates the last rotary_dim values of every row of
// x[T, H, D] in place. Angles in f32 (as HF's f32 matmul of positions x inv_freq), cos/sin in double.
#include <cmath>

#include "kernels/cpu/cpu_ops.h"

namespace mlarun::ops::cpu {

void apply_rope(const Tensor& x, const std::vector<int64_t>& positions, const RopeTable& table) {
  const int64_t tokens = x.dim(0), rows_per_token = x.dim(1), width = x.dim(2);
  const int64_t half = int64_t(table.inv_freq.size());
  float* data = x.data<float>();
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t i = 0; i < half; ++i) {
      float angle = float(positions[size_t(t)]) * table.inv_freq[size_t(i)];
      float c = float(std::cos(double(angle))) * table.attention_factor;
      float s = float(std::sin(double(angle))) * table.attention_factor;
      for (int64_t r = 0; r < rows_per_token; ++r) {
        float* tail = data + (t * rows_per_token + r) * width + (width - 2 * half);
        float* first = table.interleaved ? tail + 2 * i : tail + i;
        float* second = table.interleaved ? first + 1 : tail + half + i;
        float a = *first, b = *second;
        *first = a * c - b * s;
        *second = a * s + b * c;
      }
    }
  }
}

}  // namespace mlarun::ops::cpu
