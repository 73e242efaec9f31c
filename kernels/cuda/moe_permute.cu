// MoE token permutation and combine on the GPU, so routing never leaves the device: the assignments (token, k) of
// this rank's experts sorted by (expert, token) exactly as the host counting sort orders them
// (kernels/cpu/moe_routing.cpp group_by_expert), each assignment's index in that order, and the weighted combine
// that sums each token's expert outputs in ascending expert order in f32 (the order of scatter_add_rows over the
// same permutation). Compact layout: the per-expert offsets come back to the host in one small copy, each
// expert's GEMM sized by its row count; capacity layout (permute_to_capacity): T rows per expert, nothing comes
// back, so a decode step stays capturable in a CUDA graph (docs/kernels.md, "MoE").
#include <vector>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_ops.h"

namespace mlarun::ops::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kMaxTopK = 64;

// One block: counts per local expert, then the exclusive scan into offsets[0..n]; slot_of starts at -1.
__global__ void count_kernel(const int32_t* experts, int64_t assignments, int64_t first, int64_t n,
                             int64_t* offsets, int64_t* slot_of) {
  for (int64_t j = threadIdx.x; j <= n; j += blockDim.x) offsets[j] = 0;
  __syncthreads();
  for (int64_t i = threadIdx.x; i < assignments; i += blockDim.x) {
    slot_of[i] = -1;
    const int64_t local = int64_t(experts[i]) - first;
    if (local >= 0 && local < n) atomicAdd(reinterpret_cast<unsigned long long*>(&offsets[local + 1]), 1ull);
  }
  __syncthreads();
  if (threadIdx.x == 0)
    for (int64_t j = 0; j < n; ++j) offsets[j + 1] += offsets[j];
}

// Block e writes expert e's assignments in assignment order (= token order): a block-wide ordered compaction.
// The c-th one lands at row offsets[e] + c (compact layout, with its weight) or c * n + e (capacity layout: T
// rows per expert; rows and slots nobody writes were set to -1 first; the count goes to counts[e]).
template <bool kCapacity>
__global__ void place_kernel(const int32_t* experts, const float* weights, int64_t assignments, int64_t top_k,
                             int64_t first, int64_t n, const int64_t* offsets, int64_t* tokens, float* out_weights,
                             int64_t* slot_of, int64_t* counts) {
  __shared__ int warp_counts[kThreads / 32];
  const int64_t e = blockIdx.x;
  int64_t placed = 0;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int64_t chunk = 0; chunk < assignments; chunk += blockDim.x) {
    const int64_t i = chunk + threadIdx.x;
    const bool mine = i < assignments && int64_t(experts[i]) - first == e;
    const unsigned ballot = __ballot_sync(0xffffffffu, mine);
    if (lane == 0) warp_counts[warp] = __popc(ballot);
    __syncthreads();
    int before = 0, total = 0;
    for (int w = 0; w < int(blockDim.x >> 5); ++w) {
      if (w < warp) before += warp_counts[w];
      total += warp_counts[w];
    }
    if (mine) {
      const int64_t c = placed + before + __popc(ballot & ((1u << lane) - 1u));
      // Capacity: c < T, as a token picks an expert at most once (routing's contract).
      const int64_t at = kCapacity ? c * n + e : offsets[e] + c;
      tokens[at] = i / top_k;
      slot_of[i] = at;
      if constexpr (!kCapacity) out_weights[at] = weights[i];
    }
    placed += total;
    __syncthreads();  // warp_counts is rewritten by the next chunk
  }
  if (kCapacity && threadIdx.x == 0) counts[e] = placed;
}

// y[t, :] = sum over t's assignments with a local expert, in ascending expert order, of w * x[slot, :], in f32.
__global__ void combine_kernel(const void* x, bool x_bf16, const int64_t* slot_of, const int32_t* experts,
                               const float* weights, int64_t top_k, int64_t D, float* y) {
  __shared__ int64_t order_slot[kMaxTopK];
  __shared__ float order_w[kMaxTopK];
  __shared__ int32_t order_e[kMaxTopK];
  __shared__ int count;
  const int64_t t = blockIdx.x;
  if (threadIdx.x == 0) {
    int c = 0;
    for (int64_t k = 0; k < top_k; ++k) {  // insertion sort by expert id (top_k is small)
      const int64_t s = slot_of[t * top_k + k];
      if (s < 0) continue;
      const int32_t e = experts[t * top_k + k];
      int j = c++;
      for (; j > 0 && order_e[j - 1] > e; --j) {
        order_e[j] = order_e[j - 1];
        order_slot[j] = order_slot[j - 1];
        order_w[j] = order_w[j - 1];
      }
      order_e[j] = e;
      order_slot[j] = s;
      order_w[j] = weights[t * top_k + k];
    }
    count = c;
  }
  __syncthreads();
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    float acc = 0.0f;
    for (int j = 0; j < count; ++j) acc += order_w[j] * load_f(x, order_slot[j] * D + d, x_bf16);
    y[t * D + d] = acc;
  }
}

}  // namespace

ExpertPermutation permute_by_expert(const Tensor& experts, const Tensor& weights, int64_t first_expert,
                                    int64_t num_experts) {
  const int64_t T = experts.dim(0), K = experts.dim(1), A = T * K;
  ExpertPermutation p;
  Tensor offsets = Tensor::empty({num_experts + 1}, DType::I64, Device::CUDA);
  Tensor tokens = Tensor::empty({std::max<int64_t>(A, 1)}, DType::I64, Device::CUDA);
  Tensor w = Tensor::empty({std::max<int64_t>(A, 1)}, DType::F32, Device::CUDA);
  p.slot_of = Tensor::empty({T, K}, DType::I64, Device::CUDA);
  count_kernel<<<1, 1024, 0, stream()>>>(experts.data<int32_t>(), A, first_expert, num_experts,
                                         offsets.data<int64_t>(), p.slot_of.data<int64_t>());
  MLARUN_CUDA_CHECK_LAUNCH("count_kernel");
  if (num_experts > 0 && A > 0) {
    place_kernel<false><<<unsigned(num_experts), kThreads, 0, stream()>>>(
        experts.data<int32_t>(), weights.data<float>(), A, K, first_expert, num_experts, offsets.data<int64_t>(),
        tokens.data<int64_t>(), w.data<float>(), p.slot_of.data<int64_t>(), nullptr);
    MLARUN_CUDA_CHECK_LAUNCH("place_kernel");
  }
  p.offsets.assign(size_t(num_experts + 1), 0);
  copy_bytes(p.offsets.data(), Device::CPU, offsets.raw(), Device::CUDA, offsets.nbytes());  // the one sync
  const int64_t n = p.offsets.back();
  p.tokens = tokens.rows(0, n);
  p.weights = w.rows(0, n);
  return p;
}

ExpertCapacityLayout permute_to_capacity(const Tensor& experts, int64_t first_expert, int64_t num_experts) {
  const int64_t T = experts.dim(0), K = experts.dim(1), A = T * K;
  ExpertCapacityLayout c;
  c.num_experts = num_experts;
  c.tokens = Tensor::empty({T * num_experts}, DType::I64, Device::CUDA);
  c.slot_of = Tensor::empty({T, K}, DType::I64, Device::CUDA);
  c.counts = Tensor::zeros({num_experts}, DType::I64, Device::CUDA);
  // All bits set is -1 in two's complement: every row empty and every slot non-local until placed.
  MLARUN_CUDA_CHECK(cudaMemsetAsync(c.tokens.raw(), 0xff, c.tokens.nbytes(), stream()));
  MLARUN_CUDA_CHECK(cudaMemsetAsync(c.slot_of.raw(), 0xff, c.slot_of.nbytes(), stream()));
  if (num_experts > 0 && A > 0) {
    place_kernel<true><<<unsigned(num_experts), kThreads, 0, stream()>>>(
        experts.data<int32_t>(), nullptr, A, K, first_expert, num_experts, nullptr, c.tokens.data<int64_t>(), nullptr,
        c.slot_of.data<int64_t>(), c.counts.data<int64_t>());
    MLARUN_CUDA_CHECK_LAUNCH("place_kernel");
  }
  return c;  // no copy to the host: T alone sized everything
}

Tensor combine_experts(const Tensor& expert_out, const Tensor& slot_of, const Tensor& experts,
                       const Tensor& weights) {
  const bool bf16 = is_bf16(expert_out, "combine_experts");
  const int64_t T = slot_of.dim(0), K = slot_of.dim(1), D = expert_out.ndim() == 2 ? expert_out.dim(1) : 0;
  MLARUN_CHECK(K <= kMaxTopK, "combine_experts: top_k ", K, " over the kernel's ", kMaxTopK);
  Tensor y = Tensor::zeros({T, D}, DType::F32, Device::CUDA);
  if (T == 0 || D == 0 || expert_out.dim(0) == 0) return y;
  combine_kernel<<<unsigned(T), kThreads, 0, stream()>>>(expert_out.raw(), bf16, slot_of.data<int64_t>(),
                                                         experts.data<int32_t>(), weights.data<float>(), K, D,
                                                         y.data<float>());
  MLARUN_CUDA_CHECK_LAUNCH("combine_kernel");
  return y;
}

}  // namespace mlarun::ops::cuda
