// Token choice on the GPU, one block per row of logits: argmax, and temperature / top-k / top-p sampling that makes the
// host sampler's choice (kernels/cpu/sampling.cpp) without sorting the vocabulary. The host walks candidates in order
// (most likely first, ties to the lower index, when top-k or top-p needs an order; index order otherwise) and stops
// where the running mass passes uniform * total. Give every token a 64-bit key that orders it the way the walk does;
// then "the mass walked before and including token j" is the mass of keys >= key(j), and every cut (the k-th token, the
// top-p prefix, the sampled token) is the largest key X whose mass or count of keys >= X passes a threshold: a 64-step
// binary search of block-wide sums. Weights are exp((l - max) / T) in double as on the host; only the order of the sums
// differs, so a uniform within rounding of a boundary may pick a neighbour.
#include <cstdint>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_ops.h"

namespace mlarun::ops::cuda {

namespace {

constexpr int kThreads = 1024;
constexpr uint64_t kIndexMask = 0xFFFFFFFFull;

struct RowParams {  // one per row, uploaded as raw bytes
  double temperature;
  double top_p;
  double uniform;
  int64_t top_k;
};

struct SampleArgs {
  const void* logits;  // [R, V]
  bool bf16;
  int64_t V;
  const RowParams* params;  // [R], or null for argmax only
  int32_t* out;             // [R]; -1: NaN or +inf logits, or all -inf
};

// Float bits mapped to unsigned integers of the same order.
__device__ __forceinline__ uint32_t ordered_bits(float f) {
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Larger key = earlier in the host's walk.
__device__ __forceinline__ uint64_t walk_key(float logit, int64_t i, bool by_value) {
  const uint64_t index_part = kIndexMask - uint64_t(i);
  return by_value ? (uint64_t(ordered_bits(logit)) << 32) | index_part : index_part;
}

enum class Measure { Count, Mass };

// Count or softmax mass of the tokens whose key is >= x (block-wide; every thread gets it).
__device__ double measure_from(const SampleArgs& a, int64_t row, uint64_t x, Measure what, bool by_value, float max_logit,
                               double temperature, double* scratch) {
  double part = 0;
  for (int64_t i = threadIdx.x; i < a.V; i += blockDim.x) {
    const float l = load_f(a.logits, row * a.V + i, a.bf16);
    if (walk_key(l, i, by_value) < x) continue;
    part += what == Measure::Count ? 1.0 : exp((double(l) - double(max_logit)) / temperature);
  }
  return block_sum(part, scratch);
}

// The largest key X >= lo with measure(X) >= threshold (strictly > when `strict`); lo must qualify.
__device__ uint64_t largest_key(const SampleArgs& a, int64_t row, uint64_t lo, Measure what, double threshold,
                                bool strict, bool by_value, float max_logit, double temperature, double* scratch) {
  uint64_t hi = ~0ull;
  while (lo < hi) {
    const uint64_t mid = lo + (hi - lo) / 2 + 1;
    const double m = measure_from(a, row, mid, what, by_value, max_logit, temperature, scratch);
    if (strict ? m > threshold : m >= threshold)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

__global__ void __launch_bounds__(kThreads) sample_kernel(const SampleArgs a) {
  __shared__ double scratch[32];
  __shared__ float best_value[32];
  __shared__ int64_t best_index[32];
  const int64_t row = blockIdx.x;

  // Argmax (ties to the lower index) and the host sampler's validity checks.
  float value = -INFINITY;
  int64_t index = INT64_MAX;
  double bad = 0, finite = 0;
  for (int64_t i = threadIdx.x; i < a.V; i += blockDim.x) {
    const float l = load_f(a.logits, row * a.V + i, a.bf16);
    if (isnan(l) || l == INFINITY) bad = 1;
    if (isfinite(l)) finite = 1;
    if (l > value || (l == value && i < index)) value = l, index = i;
  }
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float v = __shfl_xor_sync(0xffffffffu, value, offset);
    const int64_t j = __shfl_xor_sync(0xffffffffu, index, offset);
    if (v > value || (v == value && j < index)) value = v, index = j;
  }
  if ((threadIdx.x & 31) == 0) best_value[threadIdx.x >> 5] = value, best_index[threadIdx.x >> 5] = index;
  bad = block_sum(bad, scratch);
  finite = block_sum(finite, scratch);  // both sums also order the writes above before the reads below
  for (int w = 0; w < int(blockDim.x >> 5); ++w)
    if (best_value[w] > value || (best_value[w] == value && best_index[w] < index)) value = best_value[w], index = best_index[w];
  if (bad > 0 || finite == 0) {
    if (threadIdx.x == 0) a.out[row] = -1;
    return;
  }
  const RowParams p = a.params ? a.params[row] : RowParams{0, 1, 0, 0};
  if (p.temperature == 0 || p.top_k == 1) {
    if (threadIdx.x == 0) a.out[row] = int32_t(index);
    return;
  }

  const bool use_top_k = p.top_k > 0 && p.top_k < a.V, by_value = use_top_k || p.top_p < 1;
  const float max_logit = value;
  uint64_t cut = 0;  // candidates: keys >= cut
  if (use_top_k)
    cut = largest_key(a, row, 0, Measure::Count, double(p.top_k), false, by_value, max_logit, p.temperature, scratch);
  double total = measure_from(a, row, cut, Measure::Mass, by_value, max_logit, p.temperature, scratch);
  if (p.top_p < 1) {
    cut = largest_key(a, row, cut, Measure::Mass, p.top_p * total, false, by_value, max_logit, p.temperature, scratch);
    total = measure_from(a, row, cut, Measure::Mass, by_value, max_logit, p.temperature, scratch);
  }
  const double target = p.uniform * total;
  // The token where the walk's running mass first exceeds target; the last candidate when rounding leaves none.
  const uint64_t chosen = total > target ? largest_key(a, row, cut, Measure::Mass, target, true, by_value, max_logit,
                                                       p.temperature, scratch)
                                         : cut;
  if (threadIdx.x == 0) a.out[row] = int32_t(kIndexMask - (chosen & kIndexMask));
}

std::vector<int32_t> run(const Tensor& logits, const Tensor* params, const char* op) {
  const bool bf16 = is_bf16(logits, op);
  const int64_t R = logits.dim(0), V = logits.dim(1);
  MLARUN_CHECK(V <= INT32_MAX && R <= INT32_MAX, op, ": [", R, ", ", V, "] logits exceed the kernel's sizes");
  if (R == 0) return {};
  Tensor out = Tensor::empty({R}, DType::I32, Device::CUDA);
  SampleArgs a{logits.raw(), bf16, V, params ? reinterpret_cast<const RowParams*>(params->raw()) : nullptr,
               out.data<int32_t>()};
  sample_kernel<<<unsigned(R), kThreads, 0, stream()>>>(a);
  MLARUN_CUDA_CHECK_LAUNCH("sample_kernel");
  Tensor host = out.to(Device::CPU);
  std::vector<int32_t> tokens(host.data<int32_t>(), host.data<int32_t>() + R);
  for (int64_t r = 0; r < R; ++r)
    MLARUN_CHECK(tokens[size_t(r)] >= 0, op, ": row ", r, " has NaN or +inf logits, or all of them are -inf");
  return tokens;
}

}  // namespace

std::vector<int32_t> argmax_rows(const Tensor& logits) { return run(logits, nullptr, "argmax_rows"); }

std::vector<int32_t> sample_rows(const Tensor& logits, const std::vector<SamplingParams>& params,
                                 const std::vector<double>& uniforms) {
  std::vector<RowParams> rows(params.size());
  for (size_t r = 0; r < params.size(); ++r)
    rows[r] = RowParams{params[r].temperature, params[r].top_p, uniforms[r], params[r].top_k};
  Tensor dev = upload_bytes(rows.data(), rows.size() * sizeof(RowParams));
  return run(logits, &dev, "sample_rows");
}

}  // namespace mlarun::ops::cuda
