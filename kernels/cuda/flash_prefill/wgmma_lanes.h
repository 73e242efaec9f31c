// Where the Hopper flash prefill kernel (kernel_wgmma.cuh) puts Q, K and V and which descriptors it hands the
// tensor cores: plain arithmetic shared by the kernel and by the CPU test that replays one key tile of it through
// an emulation of wgmma (tests/kernels/test_flash_prefill_wgmma_lanes.cpp). Layout facts come from
// kernels/cuda/wgmma_sm90.cuh; tiles from config.h WgmmaTile (128 query rows in two warpgroups, kBlockN keys).
#pragma once

#include <cstdint>

#include "kernels/cuda/wgmma_sm90.cuh"

namespace mlarun::ops::cuda::flash::wg {

namespace sm90 = wgmma_sm90;

// Byte offset of 16-byte chunk `chunk` of row `row` in a [rows x d] tile stored as slabs of 64 columns (slab
// chunk / 8 holds columns 64 (chunk / 8) .. + 64 of every row, rows x 128 bytes each), swizzled.
MLARUN_HOST_DEVICE constexpr uint32_t chunk_offset(int rows, int row, int chunk) {
  return uint32_t(chunk / 8) * uint32_t(rows) * sm90::kSlabRowBytes +
         sm90::swizzle128(sm90::slab_offset(row, (chunk % 8) * 8));
}
// kernel_wgmma.cuh load_slabs_by_rows' copy of pass `pass` into slab `slab` by thread `tid` of `threads` (8 threads
// a row, a pass threads / 8 rows on): the tile's row and 16-byte chunk it moves, and where it lands, as an offset
// from the thread's first copy (chunk_offset(rows, tid / 8, tid % 8)). The offset does not depend on tid, which is
// what lets the kernel add it as a constant: the swizzle's XOR takes (row & 7), which a pass keeps.
struct ByRowsCopy {
  int row, chunk;
  uint32_t offset;
};
MLARUN_HOST_DEVICE constexpr ByRowsCopy by_rows_copy(int rows, int threads, int tid, int pass, int slab) {
  return {tid / 8 + pass * (threads / 8), 8 * slab + tid % 8,
          uint32_t(slab * rows + pass * (threads / 8)) * sm90::kSlabRowBytes};
}
// S = Q K^T, k-step k of slab `slab`: warpgroup g's 64 of Q's block_m rows (A), all block_n keys of K (B).
MLARUN_HOST_DEVICE constexpr uint64_t q_desc(uint32_t q_base, int block_m, int group, int slab, int k) {
  return sm90::k_major_desc(q_base + uint32_t(slab * block_m + 64 * group) * sm90::kSlabRowBytes, k);
}
MLARUN_HOST_DEVICE constexpr uint64_t k_desc(uint32_t k_base, int block_n, int slab, int k) {
  return sm90::k_major_desc(k_base + uint32_t(slab * block_n) * sm90::kSlabRowBytes, k);
}
// O += P V, k-step kk (keys 16 kk ..): all of V's columns, slabs block_n x 128 bytes apart, read N-major.
MLARUN_HOST_DEVICE constexpr uint64_t v_desc(uint32_t v_base, int block_n, int kk) {
  return sm90::n_major_desc(v_base, 16 * kk, uint32_t(block_n) * sm90::kSlabRowBytes);
}

}  // namespace mlarun::ops::cuda::flash::wg
