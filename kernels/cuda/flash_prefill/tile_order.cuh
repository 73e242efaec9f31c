// Longest-first order of the flash prefill kernel's query tiles (LPT scheduling for causal varlen batches, the
// first half of a persistent scheduler). The kernel's grid is otherwise (m-blocks, heads, sequences), dispatched
// in that order: in a varlen batch the heaviest tiles of a late long sequence start last and the machine idles
// while they finish. Here a one-CTA kernel lists every (sequence, m-block) tile by descending key blocks (a
// counting sort, on the device: nothing waits for the host and a CUDA graph could hold it), and the attention
// kernel takes tile blockIdx.y of the list for every head blockIdx.x, so the longest tiles of all sequences and
// heads go first.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace mlarun::ops::cuda::flash {

// The key blocks [begin, end) of kBlockN keys that the query rows [m0, min(m0 + block_m, len_q)) of a sequence
// see: causal rows up to key off + row, a window from off + m0 - window_left. The kernel's loop bounds and the
// order's work measure, one formula.
struct KeyBlocks {
  int begin, end;
  __host__ __device__ int count() const { return end - begin; }
};
__host__ __device__ inline KeyBlocks tile_key_blocks(int m0, int len_q, int len_k, int off, bool causal,
                                                     int window_left, int block_m, int block_n) {
  const int m_last = (m0 + block_m < len_q ? m0 + block_m : len_q) - 1;
  const int key_end = causal ? (len_k < m_last + off + 1 ? len_k : m_last + off + 1) : len_k;
  const int key_begin = window_left >= 0 ? (m0 + off - window_left > 0 ? m0 + off - window_left : 0) : 0;
  const int begin = key_begin / block_n;
  return {begin, key_end > key_begin ? (key_end + block_n - 1) / block_n : begin};
}

struct TileOrderArgs {
  const int32_t* cu_q;           // device [batch + 1]
  const int32_t* cu_k;           // device [batch + 1]
  const int32_t* causal_offset;  // device [batch] or nullptr (bottom-right)
  int batch, num_tiles;          // num_tiles = sum over sequences of ceil(len_q / block_m)
  int causal, window_left, block_m, block_n;
};
// Bytes of shared memory order_tiles_longest_first needs for `batch` sequences (<= 48 KB up to 8192 of them).
size_t tile_order_smem_bytes(int batch);
// Writes tiles[0 .. num_tiles) = {sequence, m_block} by descending key blocks (ties in no particular order).
void order_tiles_longest_first(const TileOrderArgs& a, int2* tiles, cudaStream_t stream);

}  // namespace mlarun::ops::cuda::flash
