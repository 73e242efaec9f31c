// The arithmetic of the MLA decode scheduler (schedule.cu), plain C++ shared by the kernel and by the CPU test
// that checks its promises on random batches (tests/kernels/test_mla_decode_schedule_plan.cpp).
//
// The work of a batch is laid on one line: sequence b takes kFixedCostTiles units (loading q, writing and merging
// its partial) and then one unit per kBlockN-token tile, sequences in batch order. Part p owns the units
// [p W, (p + 1) W) with W = ceil(total / parts), and a sequence's tiles are cut where they cross a part boundary.
// Each sequence's pieces, their tiles and the part each belongs to follow from its start on the line alone, so
// every sequence is placed independently once a prefix sum has given the starts (one scan, no serial loop).
//
// Promises (checked by the test): every tile of every non-empty sequence is in exactly one piece, in order; the
// pieces of a sequence are consecutive, and pieces are in part order; parts used < parts; a part's cost (its tiles
// plus kFixedCostTiles per piece) is at most W + kFixedCostTiles (only its first piece can have its fixed units
// before the part), so the longest part is within two tiles of the mean; a boundary splits at most one sequence,
// so there are at most (non-empty sequences) + parts - 1 pieces.
#pragma once

#include <cstdint>

#include "kernels/cuda/mla_decode/config.h"
#include "kernels/host_device.h"

namespace mlarun::ops::cuda::mla::plan {

// Units on the line of a sequence with `tiles` tiles (an empty or invalid sequence has none).
MLARUN_HOST_DEVICE constexpr int64_t seq_cost(int32_t tiles) {
  return tiles > 0 ? int64_t(tiles) + kFixedCostTiles : 0;
}
// Units per part for `total` units over `parts` parts (at least 1).
MLARUN_HOST_DEVICE constexpr int64_t part_units(int64_t total, int64_t parts) {
  return total > parts ? (total + parts - 1) / parts : 1;
}

// The pieces of a sequence with `tiles` tiles whose units start at `start` on the line: the part of the first
// one and how many there are (one per part its tiles touch).
struct SeqPieces {
  int32_t first_part = 0, count = 0;
};
MLARUN_HOST_DEVICE constexpr SeqPieces seq_pieces(int64_t start, int32_t tiles, int64_t units) {
  if (tiles <= 0) return {};
  const int64_t first = (start + kFixedCostTiles) / units, last = (start + kFixedCostTiles + tiles - 1) / units;
  return {int32_t(first), int32_t(last - first + 1)};
}
// Tiles [begin, end) of the sequence's piece in part `part` (one of those seq_pieces counts).
struct PieceTiles {
  int32_t begin = 0, end = 0;
};
MLARUN_HOST_DEVICE constexpr PieceTiles piece_tiles(int64_t start, int32_t tiles, int64_t units, int32_t part) {
  const int64_t first_unit = start + kFixedCostTiles;  // the line unit of tile 0
  const int64_t lo = int64_t(part) * units - first_unit, hi = (int64_t(part) + 1) * units - first_unit;
  return {int32_t(lo > 0 ? lo : 0), int32_t(hi < tiles ? hi : tiles)};
}

}  // namespace mlarun::ops::cuda::mla::plan
