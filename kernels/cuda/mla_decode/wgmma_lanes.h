// Where the wgmma attend kernel (attend_wgmma.cu) puts its operands and which descriptors it hands the tensor
// cores: plain arithmetic shared by the kernel and by the CPU test that replays one step of it through an
// emulation of wgmma (tests/kernels/test_mla_decode_wgmma_lanes.cpp), so the kernel's own offsets are checked
// without a GPU. Layout facts (slabs, swizzle, descriptors, fragment maps) come from kernels/cuda/wgmma_sm90.cuh.
// Tiles (config.h): 64 rows x 64 cached tokens per step, nine slabs of 64 columns, two warpgroups.
#pragma once

#include <cstdint>

#include "kernels/cuda/mla_decode/config.h"
#include "kernels/cuda/wgmma_sm90.cuh"

namespace mlarun::ops::cuda::mla::wg {

namespace sm90 = wgmma_sm90;

// Byte offset, in a stage of cached rows or in the q buffer, of the 16-byte piece at byte `off` of row `row`:
// slab off / 128, swizzled (stages and the q buffer are 1024-byte aligned).
MLARUN_HOST_DEVICE constexpr uint32_t row_piece(int row, int off) {
  return uint32_t(off >> 7) * uint32_t(kWgSlabBytes) + sm90::swizzle128(sm90::slab_offset(row, (off & 127) >> 1));
}
// The same place for the loader's pieces (mma_lanes.h load_chunk): piece kFirst + lane_chunk + kThreadsPerRow i of
// row `row`, lane_chunk < kThreadsPerRow. With kThreadsPerRow dividing 8 and kFirst a multiple of 8, the piece's
// swizzled column is (lane_chunk ^ row % 8) ^ kThreadsPerRow (i % (8 / kThreadsPerRow)) (the two terms share no
// bit) and its slab is kFirst / 8 + kThreadsPerRow i / 8: so a thread's pieces are two values it computes once
// (row_piece_base, the first column) and a compile-time term each, not a swizzle per piece.
MLARUN_HOST_DEVICE constexpr uint32_t row_piece_base(int row, int lane_chunk) {
  return uint32_t(row) * sm90::kSlabRowBytes + (uint32_t(lane_chunk ^ (row & 7)) << 4);
}
template <int kThreadsPerRow, int kFirst>
MLARUN_HOST_DEVICE constexpr uint32_t row_piece_of_lane(uint32_t base, int i) {
  static_assert(8 % kThreadsPerRow == 0 && kFirst % 8 == 0, "whole 128-byte runs per slab row");
  return (base ^ (uint32_t(kThreadsPerRow * (i % (8 / kThreadsPerRow))) << 4)) +
         uint32_t(kFirst / 8 + kThreadsPerRow * i / 8) * uint32_t(kWgSlabBytes);
}
// The first of the step's tokens warpgroup `group` scores: all 64 from 0, or its 32 when the scores are split.
MLARUN_HOST_DEVICE constexpr int score_tok0(bool split, int group) { return split ? group * (kWgBlockN / 2) : 0; }
// The split variant's P.V k-steps (16 tokens each, kWgBlockN / 16 a step) in the order warpgroup `group` issues
// them: first the two over its own tokens, whose P it holds in registers (register k-step i of them), then the
// two over the other warpgroup's tokens, read from the shared P slab once the barrier has published it.
MLARUN_HOST_DEVICE constexpr int split_pv_kstep(int group, int i) {
  return (score_tok0(true, group) / 16 + i) % (kWgBlockN / 16);
}
// Scores, k-step k of slab `slab`: Q (A, K-major) and the stage's rows from token `tok0` (B, K-major). Each is
// the descriptor of its operand's first k-step, the same in every (slab, k) of a step's unrolled loop (so made
// once), advanced by a compile-time offset (sm90::desc_advance).
MLARUN_HOST_DEVICE constexpr uint64_t q_desc(uint32_t q_base, int slab, int k) {
  return sm90::desc_advance(sm90::k_major_desc(q_base, 0), uint32_t(slab) * uint32_t(kWgSlabBytes) + 32u * k);
}
MLARUN_HOST_DEVICE constexpr uint64_t k_desc(uint32_t stage, int slab, int k, int tok0) {
  return sm90::desc_advance(sm90::k_major_desc(stage + uint32_t(tok0) * sm90::kSlabRowBytes, 0),
                            uint32_t(slab) * uint32_t(kWgSlabBytes) + 32u * k);
}
// P.V, k-step kk (tokens 16 kk ..): V of warpgroup g's 256 columns (slabs 4 g .. 4 g + 3, read N-major).
MLARUN_HOST_DEVICE constexpr uint64_t v_desc(uint32_t stage, int group, int kk) {
  return sm90::desc_advance(
      sm90::n_major_desc(stage + 4 * uint32_t(group) * uint32_t(kWgSlabBytes), 0, uint32_t(kWgSlabBytes)),
      16u * sm90::kSlabRowBytes * kk);
}
// The split variant's P [64 rows x 64 tokens]: element (row, token) and the A descriptor of k-step kk.
MLARUN_HOST_DEVICE constexpr uint32_t p_offset(int row, int tok) {
  return sm90::swizzle128(sm90::slab_offset(row, tok));
}
MLARUN_HOST_DEVICE constexpr uint64_t p_desc(uint32_t p_base, int kk) {
  return sm90::desc_advance(sm90::k_major_desc(p_base, 0), 32u * kk);
}
// The seesaw kernel's P tile of a step (attend_wgmma_seesaw.cu): laid out as the split variant's P, in slab 8 of the
// step's own stage (k_pe, which only that step's scores read).
MLARUN_HOST_DEVICE constexpr uint32_t p_tile_of_stage(uint32_t stage) {
  return stage + uint32_t(kWgSlabs - 1) * uint32_t(kWgSlabBytes);
}
// The score accumulator element whose pair (e, e + 1) is register i of P's A fragment for k-step kk.
MLARUN_HOST_DEVICE constexpr int p_element(int kk, int i) { return sm90::acc_to_a(kk, i); }

}  // namespace mlarun::ops::cuda::mla::wg
