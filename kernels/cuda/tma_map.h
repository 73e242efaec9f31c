// Tensor maps for Hopper's TMA copies (kernels/cuda/tma_sm90.cuh): a row-major bf16 matrix [rows x cols] with a row
// stride in bytes, read in boxes of [box_rows x 64] columns into 128-byte-swizzled shared memory (the slab layout
// of wgmma_sm90.cuh). The paged latent cache is such a matrix (num_blocks * block_size rows of 576 values), and a
// box of a block's rows lands as a slab's rows. The map is encoded on the host by the driver's
// cuTensorMapEncodeTiled, looked up at run time (cudaGetDriverEntryPointByVersion), so nothing links the driver
// library and a machine without one fails only when a map is asked for. Every argument is checked first, naming
// the value. Plain C++ header.
#pragma once

#include <cuda.h>

#include <cstdint>

namespace mlarun::ops::cuda {

struct TmaMatrixBf16 {
  const void* base = nullptr;  // 16-byte aligned device address of row 0
  uint64_t rows = 0, cols = 0;  // 1 .. 2^32 each
  uint64_t row_stride_bytes = 0;  // a multiple of 16, at least cols * 2, below 2^40
  uint32_t box_rows = 0;  // 1 .. 256 rows per copy
};
constexpr uint32_t kTmaBoxCols = 64;  // 128 bytes of bf16: the swizzle's width, one slab row

// Checks `m` (throws mlarun::Error naming the field and value) without touching CUDA.
void check_tma_matrix(const TmaMatrixBf16& m);
// The tensor map of `m` for boxes of box_rows x kTmaBoxCols, 128-byte swizzle, zeros outside the matrix. Throws
// mlarun::Error when the driver has no cuTensorMapEncodeTiled or rejects the map.
CUtensorMap make_tma_map(const TmaMatrixBf16& m);

}  // namespace mlarun::ops::cuda
