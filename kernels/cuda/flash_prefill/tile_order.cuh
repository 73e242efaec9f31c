// Lists of the flash prefill kernel's query tiles, for launch orders other than its plain grid (m-blocks, heads,
// sequences), which is sized by the longest sequence: in a varlen batch it launches a CTA for every empty m-block
// of the shorter sequences, and the heaviest tiles of a late long sequence start last while the machine idles.
// A one-CTA kernel lists every (sequence, m-block) tile, on the device (nothing waits for the host and a CUDA graph
// could hold it), either longest first (by descending key blocks: a counting sort; LPT scheduling for causal
// varlen batches, the first half of a persistent scheduler) or in the plain grid's order without the empty
// m-blocks (sequence by sequence, the heaviest causal m-block first). The attention kernel takes its tile from the
// list and its head from the other grid dimension.
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
  int longest_first = 1;         // 1: by descending key blocks; 0: the plain grid's order, empty m-blocks left out
};
// Bytes of shared memory order_tiles needs for `batch` sequences (<= 48 KB up to 8192 of them).
size_t tile_order_smem_bytes(int batch);
// Writes tiles[0 .. num_tiles) = {sequence, m_block}: longest first, by descending key blocks (ties in no particular
// order), or in the plain order (sequences ascending; m-blocks descending when causal, else ascending).
void order_tiles(const TileOrderArgs& a, int2* tiles, cudaStream_t stream);

}  // namespace mlarun::ops::cuda::flash
