// Simple, correct attention on the GPU (the fast prefill and decode kernels are kernels/cuda/flash_prefill* and
// mla_decode*): one block per (head, query token), its four warps taking every fourth key with an online softmax
// in f32 (running max, sum and output per warp), merged at the end; output rounded once, log-sum-exp in f32.
// Two key sources share the kernel: dense K/V of one sequence (ops::attention, causal from q_offset, GQA heads)
// and the paged latent cache of a batch of sequences (ops::mla_paged_attention: key = the cached row, value = its
// first kv_lora_rank values). Heads of one token run side by side, so the rows they all read stay in L2.
#include <algorithm>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_ops.h"

namespace mlarun::ops::cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kValuesPerLane = 16;            // value dims up to 32 * 16 = 512 (MLA's latent)
constexpr int kMaxValueDim = 32 * kValuesPerLane;
constexpr int kMaxGridY = 65535;

struct AttentionArgs {
  const void* q = nullptr;  // [T, H, D]
  int64_t H = 0, D = 0, Dv = 0;
  bool paged = false;
  // Dense: k [Tk, Hkv, D], v [Tk, Hkv, Dv]; token t sees keys [0, q_offset + t] clipped to [0, Tk) (any
  // q_offset: the pieces of a chunked prefill give rows that see none of a piece's keys, or all of them).
  const void* k = nullptr;
  const void* v = nullptr;
  int64_t Hkv = 1, Tk = 0, q_offset = 0;
  // Paged: token t sees n_keys[t] rows of its sequence, whose block table starts at tables[table_start[t]].
  const void* pool = nullptr;  // [blocks, block_size, D]
  const int32_t* tables = nullptr;
  const int32_t* table_start = nullptr;
  const int32_t* n_keys = nullptr;
  int64_t block_size = 1;
  bool bf16 = true;
  float scale = 1.0f;
  void* o = nullptr;      // [T, H, Dv]
  float* lse = nullptr;   // [T, H] or null
  int64_t token_base = 0; // first token of this launch (grid.y is limited)
};

__global__ void __launch_bounds__(kWarps * 32) attention_kernel(const AttentionArgs a) {
  extern __shared__ float smem[];
  float* q_s = smem;                    // [D]
  float* acc_s = q_s + a.D;             // [kWarps, Dv]
  float* m_s = acc_s + kWarps * a.Dv;   // [kWarps]
  float* l_s = m_s + kWarps;            // [kWarps]
  const int64_t h = blockIdx.x, t = a.token_base + blockIdx.y, row = t * a.H + h;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  for (int64_t d = threadIdx.x; d < a.D; d += blockDim.x) q_s[d] = load_f(a.q, row * a.D + d, a.bf16);
  __syncthreads();

  const int64_t n = a.paged ? int64_t(a.n_keys[t]) : min(max(a.q_offset + t + 1, int64_t(0)), a.Tk);
  const int64_t kh = a.paged ? 0 : h / (a.H / a.Hkv);
  float m = -INFINITY, l = 0.0f, acc[kValuesPerLane];
#pragma unroll
  for (int j = 0; j < kValuesPerLane; ++j) acc[j] = 0.0f;

  for (int64_t key = warp; key < n; key += kWarps) {
    const void* kbase;
    const void* vbase;
    int64_t koff, voff;
    if (a.paged) {
      const int64_t slot = int64_t(a.tables[a.table_start[t] + key / a.block_size]) * a.block_size + key % a.block_size;
      kbase = vbase = a.pool;
      koff = voff = slot * a.D;
    } else {
      kbase = a.k;
      vbase = a.v;
      koff = (key * a.Hkv + kh) * a.D;
      voff = (key * a.Hkv + kh) * a.Dv;
    }
    float dot = 0.0f;
    for (int64_t d = lane; d < a.D; d += 32) dot += q_s[d] * load_f(kbase, koff + d, a.bf16);
    const float s = warp_sum(dot) * a.scale;
    const float m_new = fmaxf(m, s);
    const float corr = expf(m - m_new), p = expf(s - m_new);
    l = l * corr + p;
#pragma unroll
    for (int j = 0; j < kValuesPerLane; ++j) {
      const int64_t d = lane + 32 * j;
      if (d < a.Dv) acc[j] = acc[j] * corr + p * load_f(vbase, voff + d, a.bf16);
    }
    m = m_new;
  }
  if (lane == 0) {
    m_s[warp] = m;
    l_s[warp] = l;
  }
#pragma unroll
  for (int j = 0; j < kValuesPerLane; ++j) {
    const int64_t d = lane + 32 * j;
    if (d < a.Dv) acc_s[warp * a.Dv + d] = acc[j];
  }
  __syncthreads();

  float M = -INFINITY;
  for (int w = 0; w < kWarps; ++w) M = fmaxf(M, m_s[w]);
  if (M == -INFINITY) {  // no visible key: zeros and lse = -inf
    for (int64_t d = threadIdx.x; d < a.Dv; d += blockDim.x) store_f(a.o, row * a.Dv + d, 0.0f, a.bf16);
    if (a.lse && threadIdx.x == 0) a.lse[row] = -INFINITY;
    return;
  }
  float L = 0.0f, w_scale[kWarps];
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    w_scale[w] = expf(m_s[w] - M);
    L += l_s[w] * w_scale[w];
  }
  for (int64_t d = threadIdx.x; d < a.Dv; d += blockDim.x) {
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) sum += acc_s[w * a.Dv + d] * w_scale[w];
    store_f(a.o, row * a.Dv + d, sum / L, a.bf16);
  }
  if (a.lse && threadIdx.x == 0) a.lse[row] = M + logf(L);
}

void launch(AttentionArgs a, int64_t tokens) {
  MLARUN_CHECK(a.Dv <= kMaxValueDim, "attention: value dim ", a.Dv, " exceeds the simple kernel's ", kMaxValueDim);
  const size_t smem = size_t(a.D + kWarps * a.Dv + 2 * kWarps) * sizeof(float);
  MLARUN_CHECK(smem <= 48 * 1024, "attention: head dims ", a.D, "/", a.Dv, " need ", smem,
               " bytes of shared memory, over the simple kernel's 48 KiB");
  MLARUN_CHECK(a.H <= INT32_MAX, "attention: ", a.H, " heads");
  for (int64_t base = 0; base < tokens; base += kMaxGridY) {
    a.token_base = base;
    dim3 grid(unsigned(a.H), unsigned(std::min<int64_t>(kMaxGridY, tokens - base)));
    attention_kernel<<<grid, kWarps * 32, smem, stream()>>>(a);
    MLARUN_CUDA_CHECK_LAUNCH("attention_kernel");
  }
}

}  // namespace

namespace {

// q [Tq, H, D] against contiguous k [Tk, Hkv, D] and v [Tk, Hkv, Dv].
AttentionArgs contiguous_args(const Tensor& q, const Tensor& k, const Tensor& v, float scale, const char* who) {
  AttentionArgs a;
  a.bf16 = is_bf16(q, who);
  MLARUN_CHECK(k.dtype() == q.dtype() && v.dtype() == q.dtype(), who, ": q ", q.describe(), ", k ", k.describe(),
               ", v ", v.describe(), " must share one dtype");
  a.q = q.raw();
  a.H = q.dim(1);
  a.D = q.dim(2);
  a.Dv = v.dim(2);
  a.k = k.raw();
  a.v = v.raw();
  a.Hkv = k.dim(1);
  a.Tk = k.dim(0);
  a.scale = scale;
  return a;
}

// Runs `a` over q's rows into a new output [Tq, H, Dv] in q's dtype, and a new f32 lse [Tq, H] when asked.
Tensor run_attention(AttentionArgs& a, const Tensor& q, Tensor* lse) {
  const int64_t Tq = q.dim(0);
  Tensor o = Tensor::empty({Tq, a.H, a.Dv}, q.dtype(), Device::CUDA);
  if (lse) *lse = Tensor::empty({Tq, a.H}, DType::F32, Device::CUDA);
  a.o = o.raw();
  a.lse = lse ? lse->data<float>() : nullptr;
  if (Tq * a.H > 0) launch(a, Tq);
  return o;
}

}  // namespace

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale, int64_t q_offset, Tensor* lse) {
  AttentionArgs a = contiguous_args(q, k, v, scale, "attention");
  a.q_offset = q_offset;
  return run_attention(a, q, lse);
}

Tensor mla_paged_attention(const Tensor& q, const Tensor& pool, const std::vector<BatchSequence>& sequences,
                           int64_t kv_lora_rank, float scale, Tensor* lse) {
  is_bf16(q, "mla_paged_attention");  // the dtype checks of the overload below, before any upload
  MLARUN_CHECK(pool.dtype() == q.dtype(), "mla_paged_attention: q ", q.describe(), " and pool ", pool.describe(),
               " must share one dtype");
  const int64_t T = q.dim(0);
  // Per query token: how many cached rows it sees and where its sequence's block table starts.
  std::vector<int32_t> n_keys(size_t(T), 0), table_start(size_t(T), 0), tables;
  for (const BatchSequence& s : sequences) {
    const int32_t start = int32_t(tables.size());
    tables.insert(tables.end(), s.block_table.begin(), s.block_table.end());
    for (int64_t i = 0; i < s.num_tokens; ++i) {
      n_keys[size_t(s.token_start + i)] = int32_t(s.start_pos + i + 1);
      table_start[size_t(s.token_start + i)] = start;
    }
  }
  if (tables.empty()) tables.push_back(0);
  return mla_paged_attention(q, pool, upload(tables), upload(table_start), upload(n_keys), kv_lora_rank, scale, lse);
}

Tensor mla_paged_attention(const Tensor& q, const Tensor& pool, const Tensor& tables, const Tensor& table_start,
                           const Tensor& n_keys, int64_t kv_lora_rank, float scale, Tensor* lse) {
  AttentionArgs a;
  a.bf16 = is_bf16(q, "mla_paged_attention");
  MLARUN_CHECK(pool.dtype() == q.dtype(), "mla_paged_attention: q ", q.describe(), " and pool ", pool.describe(),
               " must share one dtype");
  a.q = q.raw();
  a.H = q.dim(1);
  a.D = q.dim(2);
  a.Dv = kv_lora_rank;
  a.paged = true;
  a.pool = pool.raw();
  a.tables = tables.data<int32_t>();
  a.table_start = table_start.data<int32_t>();
  a.n_keys = n_keys.data<int32_t>();
  a.block_size = pool.dim(1);
  a.scale = scale;
  return run_attention(a, q, lse);
}

namespace {
// One thread per (row, head): the log-sum-exp over the N ranks, then this rank's weight on its D values.
__global__ void lse_merge_rescale_kernel(void* o, const float* lse_all, int64_t rows, int64_t H, int64_t D, int64_t N,
                                         int64_t rank, bool bf16) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < rows * H; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / H, h = i % H;
    const float* l = lse_all + t * N * H + h;
    float m = -INFINITY;
    for (int64_t r = 0; r < N; ++r) m = fmaxf(m, l[r * H]);
    float sum = 0;
    for (int64_t r = 0; r < N && m != -INFINITY; ++r) sum += expf(l[r * H] - m);
    const float own = l[rank * H];
    const float w = own == -INFINITY ? 0.0f : expf(own - m) / sum;
    for (int64_t d = 0; d < D; ++d) store_f(o, i * D + d, load_f(o, i * D + d, bf16) * w, bf16);
  }
}

// One warp per (row, head), its lanes across the row (coalesced): the running output (f32 or bf16) and the part's
// merged by their log-sum-exps. Lane 0 writes the merged lse once every lane has read the old one.
__global__ void merge_partials_kernel(void* o, float* lse, const void* o_part, const float* lse_part, int64_t rows,
                                      int64_t D, bool o_bf16, bool part_bf16) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  for (int64_t i = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / 32; i < rows; i += warps) {
    const float a = lse[i], b = lse_part[i];
    if (b == -INFINITY) continue;  // the part saw no key: nothing to add
    const float m = fmaxf(a, b);
    const float wa = a == -INFINITY ? 0.0f : expf(a - m), wb = expf(b - m), sum = wa + wb;
    for (int64_t d = lane; d < D; d += 32) {
      const float acc = wa == 0.0f ? 0.0f : wa * load_f(o, i * D + d, o_bf16);
      store_f(o, i * D + d, (acc + wb * load_f(o_part, i * D + d, part_bf16)) / sum, o_bf16);
    }
    __syncwarp();
    if (lane == 0) lse[i] = m + logf(sum);
  }
}
}  // namespace

void merge_attention_partials(const Tensor& o, const Tensor& lse, const Tensor& o_part, const Tensor& lse_part) {
  const bool o_bf16 = is_bf16(o, "merge_attention_partials"), part_bf16 = is_bf16(o_part, "merge_attention_partials");
  const int64_t rows = lse.numel(), D = o.dim(2);
  if (rows == 0) return;
  constexpr int kThreads = 128;
  merge_partials_kernel<<<grid_for(rows * 32, kThreads), kThreads, 0, stream()>>>(
      o.raw(), lse.data<float>(), o_part.raw(), lse_part.data<float>(), rows, D, o_bf16, part_bf16);
  MLARUN_CUDA_CHECK_LAUNCH("merge_partials_kernel");
}

void lse_merge_rescale(const Tensor& o, const Tensor& lse_all, int64_t rank) {
  const bool bf16 = is_bf16(o, "lse_merge_rescale");
  const int64_t T = o.dim(0), H = o.dim(1), D = o.dim(2), N = lse_all.dim(1) / H;
  if (T * H == 0) return;
  constexpr int kThreads = 128;
  lse_merge_rescale_kernel<<<grid_for(T * H, kThreads), kThreads, 0, stream()>>>(o.raw(), lse_all.data<float>(), T, H,
                                                                              D, N, rank, bf16);
  MLARUN_CUDA_CHECK_LAUNCH("lse_merge_rescale_kernel");
}

}  // namespace mlarun::ops::cuda
