// MoE gate routing on the GPU, the CPU reference's selection step for step (kernels/cpu/moe_routing.cpp):
// softmax (f32 exp, double sum) or sigmoid scores; bias-corrected choice scores for noaux_tc; group scores (max, or the sum of
// the top two for noaux_tc) and the topk_groups best groups kept; top_k experts by repeated block-wide argmax
// (ties to the lower index); weights from the unbiased scores, optionally renormalised, times the scale.
// One block per token, the experts spread over its threads.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_ops.h"

namespace mlarun::ops::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kMaxExperts = 1024;
constexpr int kMaxGroups = 64;
constexpr int kMaxTopK = 64;

struct RouteArgs {
  const float* logits;  // [T, E]
  const float* bias;    // [E] or null
  int32_t* experts;     // [T, top_k]
  float* weights;       // [T, top_k]
  int E, n_groups, topk_groups, top_k;
  bool softmax, grouped, normalize;
  float scale;
};

struct Best {
  float value;
  int index;
};

__device__ __forceinline__ Best better(Best a, Best b) {
  return (a.value > b.value || (a.value == b.value && a.index < b.index)) ? a : b;
}

// The best (largest value, then lowest index) over values[e] for e < n with !taken[e]; every thread gets it.
__device__ Best block_argmax(const float* values, const bool* taken, int n, Best* scratch) {
  Best best{-INFINITY, INT32_MAX};
  for (int e = threadIdx.x; e < n; e += blockDim.x)
    if (!taken[e]) best = better(best, Best{values[e], e});
  for (int offset = 16; offset > 0; offset >>= 1) {
    Best other{__shfl_xor_sync(0xffffffffu, best.value, offset), __shfl_xor_sync(0xffffffffu, best.index, offset)};
    best = better(best, other);
  }
  __syncthreads();
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = best;
  __syncthreads();
  Best total = scratch[0];
  for (int w = 1; w < int(blockDim.x >> 5); ++w) total = better(total, scratch[w]);
  return total;
}

__global__ void __launch_bounds__(kThreads) route_kernel(const RouteArgs a) {
  __shared__ float scores[kMaxExperts], choice[kMaxExperts], group_score[kMaxGroups];
  __shared__ bool taken[kMaxExperts], group_taken[kMaxGroups];
  __shared__ float fscratch[32];
  __shared__ double dscratch[32];
  __shared__ Best bscratch[32];
  __shared__ int chosen[kMaxTopK];
  const int64_t t = blockIdx.x;
  const float* row = a.logits + t * a.E;

  if (a.softmax) {
    float mx = -INFINITY;
    for (int e = threadIdx.x; e < a.E; e += blockDim.x) mx = fmaxf(mx, row[e]);
    mx = block_max(mx, fscratch);
    double part = 0;
    for (int e = threadIdx.x; e < a.E; e += blockDim.x) part += (scores[e] = expf(row[e] - mx));
    const double sum = block_sum(part, dscratch);
    for (int e = threadIdx.x; e < a.E; e += blockDim.x) scores[e] = float(double(scores[e]) / sum);
  } else {
    for (int e = threadIdx.x; e < a.E; e += blockDim.x) scores[e] = 1.0f / (1.0f + expf(-row[e]));
  }
  for (int e = threadIdx.x; e < a.E; e += blockDim.x) {
    choice[e] = scores[e] + (a.bias ? a.bias[e] : 0.0f);
    taken[e] = false;
  }
  __syncthreads();

  if (a.grouped) {
    const int per_group = a.E / a.n_groups;
    for (int g = threadIdx.x; g < a.n_groups; g += blockDim.x) {
      float top1 = -INFINITY, top2 = -INFINITY;
      for (int e = g * per_group; e < (g + 1) * per_group; ++e) {
        const float c = choice[e];
        if (c > top1) {
          top2 = top1;
          top1 = c;
        } else if (c > top2) {
          top2 = c;
        }
      }
      group_score[g] = a.bias ? top1 + (per_group > 1 ? top2 : 0.0f) : top1;
      group_taken[g] = false;
    }
    __syncthreads();
    for (int j = 0; j < a.topk_groups; ++j) {
      Best g = block_argmax(group_score, group_taken, a.n_groups, bscratch);
      if (threadIdx.x == 0) group_taken[g.index] = true;
      __syncthreads();
    }
    for (int e = threadIdx.x; e < a.E; e += blockDim.x)
      if (!group_taken[e / per_group]) choice[e] = -INFINITY;
    __syncthreads();
  }

  for (int j = 0; j < a.top_k; ++j) {
    Best b = block_argmax(choice, taken, a.E, bscratch);
    if (threadIdx.x == 0) {
      chosen[j] = b.index;
      taken[b.index] = true;
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    float sum = 0;
    for (int j = 0; j < a.top_k; ++j) sum += scores[chosen[j]];
    for (int j = 0; j < a.top_k; ++j) {
      float w = scores[chosen[j]];
      if (a.normalize) w /= (sum + 1e-20f);
      a.experts[t * a.top_k + j] = chosen[j];
      a.weights[t * a.top_k + j] = w * a.scale;
    }
  }
}

}  // namespace

Routing route(const Tensor& logits, const Tensor& bias, const RoutingParams& p) {
  const int64_t T = logits.dim(0), E = logits.dim(1);
  MLARUN_CHECK(E <= kMaxExperts && p.n_groups <= kMaxGroups && p.top_k <= kMaxTopK, "route: the CUDA kernel takes up to ",
               kMaxExperts, " experts, ", kMaxGroups, " groups and top_k ", kMaxTopK, "; got ", E, ", ", p.n_groups,
               " and ", p.top_k);
  Routing r{Tensor::empty({T, p.top_k}, DType::I32, Device::CUDA),
                 Tensor::empty({T, p.top_k}, DType::F32, Device::CUDA)};
  if (T == 0) return r;
  RouteArgs a;
  a.logits = logits.data<float>();
  a.bias = bias.defined() ? bias.data<float>() : nullptr;
  a.experts = r.experts.data<int32_t>();
  a.weights = r.weights.data<float>();
  a.E = int(E);
  a.n_groups = int(p.n_groups);
  a.topk_groups = int(p.topk_groups);
  a.top_k = int(p.top_k);
  a.softmax = p.score_func == ScoreFunc::Softmax;
  a.grouped = (p.method != TopkMethod::Greedy && p.n_groups > 1) || a.bias != nullptr;
  a.normalize = p.normalize;
  a.scale = p.scale;
  MLARUN_CHECK(T <= INT32_MAX, "route: ", T, " tokens exceed one grid");
  route_kernel<<<unsigned(T), kThreads, 0, stream()>>>(a);
  MLARUN_CUDA_CHECK_LAUNCH("route_kernel");
  return r;
}

}  // namespace mlarun::ops::cuda
