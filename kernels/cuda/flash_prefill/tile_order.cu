// order_tiles (see tile_order.cuh): one CTA. Tiles per sequence and their prefix by a block scan. Then, in the
// plain order, each tile goes straight to its place; longest first, a counting sort by key blocks: histogram, a
// scan from the heaviest bin down, and each tile's place taken with an atomic in its bin (the order inside a bin
// is free: every tile's result is independent of it).
#include "kernels/cuda/flash_prefill/tile_order.cuh"

#include "runtime/cuda_check.h"
#include "runtime/error.h"

namespace mlarun::ops::cuda::flash {

namespace {

constexpr int kThreads = 1024;
constexpr int kBins = 2048;  // key blocks per tile at most counted apart (more: the heaviest bin)

// Exclusive scan of v over the block (kThreads values, one per thread); `scratch` holds kThreads ints.
__device__ int block_exclusive_scan(int v, int* scratch) {
  scratch[threadIdx.x] = v;
  __syncthreads();
  for (int d = 1; d < kThreads; d <<= 1) {
    const int add = threadIdx.x >= d ? scratch[threadIdx.x - d] : 0;
    __syncthreads();
    scratch[threadIdx.x] += add;
    __syncthreads();
  }
  const int inclusive = scratch[threadIdx.x];
  __syncthreads();
  return inclusive - v;
}

__global__ void __launch_bounds__(kThreads) order_tiles_kernel(const TileOrderArgs a, int2* tiles) {
  extern __shared__ int smem[];
  int* scratch = smem;              // [kThreads]
  int* bins = scratch + kThreads;   // [kBins]: counts, then the next free place of each bin
  int* first = bins + kBins;        // [batch + 1]: the first tile of each sequence
  const int tid = threadIdx.x;
  auto tiles_of = [&](int b) { return (a.cu_q[b + 1] - a.cu_q[b] + a.block_m - 1) / a.block_m; };
  // 1. first[b]: thread t sums the tiles of its run of sequences, the block scans the sums.
  const int per = (a.batch + kThreads - 1) / kThreads, b0 = min(a.batch, tid * per), b1 = min(a.batch, b0 + per);
  int mine = 0;
  for (int b = b0; b < b1; ++b) mine += tiles_of(b);
  int at = block_exclusive_scan(mine, scratch);
  for (int b = b0; b < b1; ++b) first[b] = at, at += tiles_of(b);
  if (tid == kThreads - 1) first[a.batch] = at;
  for (int i = tid; i < kBins; i += kThreads) bins[i] = 0;
  __syncthreads();
  // 2. Each tile's sequence (binary search in first[]) and work: its key blocks, plus one for loading Q and
  // writing O (so empty tiles still sort behind real ones), clamped to the last bin.
  auto tile = [&](int t, int& seq, int& m_block) {
    int lo = 0, hi = a.batch - 1;
    while (lo < hi) {
      const int mid = (lo + hi + 1) / 2;
      if (first[mid] <= t) lo = mid; else hi = mid - 1;
    }
    seq = lo, m_block = t - first[lo];
    const int len_q = a.cu_q[seq + 1] - a.cu_q[seq], len_k = a.cu_k[seq + 1] - a.cu_k[seq];
    const int off = a.causal_offset != nullptr ? a.causal_offset[seq] : len_k - len_q;
    const KeyBlocks kb =
        tile_key_blocks(m_block * a.block_m, len_q, len_k, off, a.causal != 0, a.window_left, a.block_m, a.block_n);
    return min(max(kb.count(), 0) + 1, kBins - 1);
  };
  if (!a.longest_first) {  // the plain order: place t is tile t, its m-blocks reversed when causal
    for (int t = tid; t < a.num_tiles; t += kThreads) {
      int seq, m_block;
      tile(t, seq, m_block);
      tiles[t] = make_int2(seq, a.causal ? tiles_of(seq) - 1 - m_block : m_block);
    }
    return;
  }
  for (int t = tid; t < a.num_tiles; t += kThreads) {
    int seq, m_block;
    atomicAdd(&bins[tile(t, seq, m_block)], 1);
  }
  __syncthreads();
  // 3. Places: the heaviest bin first. Thread t scans bins [kBins - (t + 1) * 2, kBins - t * 2) (kBins = 2 kThreads).
  constexpr int kPer = kBins / kThreads;
  int sum = 0;
  for (int i = 0; i < kPer; ++i) sum += bins[kBins - 1 - (tid * kPer + i)];
  int place = block_exclusive_scan(sum, scratch);
  for (int i = 0; i < kPer; ++i) {
    const int bin = kBins - 1 - (tid * kPer + i), count = bins[bin];
    bins[bin] = place;
    place += count;
  }
  __syncthreads();
  // 4. Every tile to its place.
  for (int t = tid; t < a.num_tiles; t += kThreads) {
    int seq, m_block;
    const int bin = tile(t, seq, m_block);
    tiles[atomicAdd(&bins[bin], 1)] = make_int2(seq, m_block);
  }
}

static_assert(kBins % kThreads == 0, "each thread scans whole bins");

}  // namespace

size_t tile_order_smem_bytes(int batch) { return size_t(kThreads + kBins + batch + 1) * sizeof(int); }

void order_tiles(const TileOrderArgs& a, int2* tiles, cudaStream_t stream) {
  const size_t smem = tile_order_smem_bytes(a.batch);
  MLARUN_CHECK(smem <= 48 * 1024, "flash_prefill: the tile list of ", a.batch, " sequences needs ", smem,
               " bytes of shared memory (48 KiB at most)");
  if (a.num_tiles == 0) return;
  order_tiles_kernel<<<1, kThreads, smem, stream>>>(a, tiles);
  MLARUN_CUDA_CHECK(cudaGetLastError());
}

}  // namespace mlarun::ops::cuda::flash
