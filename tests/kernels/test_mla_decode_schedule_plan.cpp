// The MLA decode scheduler's arithmetic (kernels/cuda/mla_decode/schedule_plan.h) on the CPU: the plan that
// schedule.cu builds on the device is rebuilt here from the same functions, in the kernel's order (starts on the
// line, pieces per sequence, then each part's first piece from the pieces' part tags), for random and extreme
// batches, and every promise the header makes is checked: full ordered coverage of every sequence's tiles, no
// empty piece, pieces in part order, fewer than `parts` parts used, each part's cost within one fixed cost of
// the units per part, and the piece bound the workspace is sized by (config.h workspace_layout).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/mla_decode/config.h"
#include "kernels/cuda/mla_decode/schedule_plan.h"

namespace {

namespace mla = mlarun::ops::cuda::mla;
namespace plan = mlarun::ops::cuda::mla::plan;

struct Piece {
  int32_t seq, begin, end, part;
};
struct Plan {
  std::vector<Piece> pieces;
  std::vector<int32_t> seq_piece_begin, part_piece_begin;
  int64_t units = 0;
};

Plan build(const std::vector<int32_t>& tiles, int parts) {
  Plan r;
  int64_t total = 0;
  for (int32_t t : tiles) total += plan::seq_cost(t);
  r.units = plan::part_units(total, parts);
  int64_t start = 0;
  for (size_t b = 0; b < tiles.size(); ++b) {
    r.seq_piece_begin.push_back(int32_t(r.pieces.size()));
    const plan::SeqPieces sp = plan::seq_pieces(start, tiles[b], r.units);
    for (int k = 0; k < sp.count; ++k) {
      const plan::PieceTiles t = plan::piece_tiles(start, tiles[b], r.units, sp.first_part + k);
      r.pieces.push_back({int32_t(b), t.begin, t.end, sp.first_part + k});
    }
    start += plan::seq_cost(tiles[b]);
  }
  const int n = int(r.pieces.size());
  r.seq_piece_begin.push_back(n);
  r.part_piece_begin.assign(size_t(parts) + 1, -1);
  for (int i = 0; i < n; ++i)  // the kernel's step 4, one piece at a time
    for (int p = (i > 0 ? r.pieces[i - 1].part : -1) + 1; p <= r.pieces[i].part; ++p) r.part_piece_begin[p] = i;
  for (int p = n > 0 ? r.pieces[n - 1].part + 1 : 0; p <= parts; ++p) r.part_piece_begin[p] = n;
  return r;
}

void check(const std::vector<int32_t>& tiles, int parts) {
  SCOPED_TRACE(std::to_string(tiles.size()) + " sequences, " + std::to_string(parts) + " parts");
  const Plan r = build(tiles, parts);
  int64_t total = 0, nonempty = 0;
  for (int32_t t : tiles) total += plan::seq_cost(t), nonempty += t > 0;
  // Every sequence's tiles, in order, in its own consecutive pieces; none empty.
  for (size_t b = 0; b < tiles.size(); ++b) {
    int32_t next = 0;
    for (int i = r.seq_piece_begin[b]; i < r.seq_piece_begin[b + 1]; ++i) {
      const Piece& pc = r.pieces[i];
      ASSERT_EQ(pc.seq, int32_t(b));
      ASSERT_EQ(pc.begin, next) << "piece " << i;
      ASSERT_LT(pc.begin, pc.end) << "piece " << i;
      next = pc.end;
    }
    ASSERT_EQ(next, std::max(tiles[b], 0)) << "sequence " << b;
  }
  // Part order, parts used, the part ranges, each part's cost, the piece bound.
  std::vector<int64_t> cost(size_t(parts), 0);
  for (size_t i = 0; i < r.pieces.size(); ++i) {
    const Piece& pc = r.pieces[i];
    ASSERT_GE(pc.part, 0);
    ASSERT_LT(pc.part, parts);
    if (i > 0) {
      ASSERT_LE(r.pieces[i - 1].part, pc.part);
    }
    cost[size_t(pc.part)] += pc.end - pc.begin + mla::kFixedCostTiles;
  }
  ASSERT_EQ(r.part_piece_begin[0], 0);
  ASSERT_EQ(r.part_piece_begin[size_t(parts)], int32_t(r.pieces.size()));
  for (int p = 0; p < parts; ++p) {
    ASSERT_LE(r.part_piece_begin[p], r.part_piece_begin[p + 1]);
    for (int i = r.part_piece_begin[p]; i < r.part_piece_begin[p + 1]; ++i) ASSERT_EQ(r.pieces[i].part, p);
    ASSERT_LE(cost[size_t(p)], r.units + mla::kFixedCostTiles) << "part " << p;
  }
  ASSERT_EQ(r.units, std::max<int64_t>(1, (total + parts - 1) / parts));
  ASSERT_LE(int64_t(r.pieces.size()), nonempty + std::max(parts - 1, 0));
  ASSERT_LT(int64_t(r.pieces.size()), int64_t(tiles.size()) + parts);  // workspace_layout's max_pieces
}

TEST(MlaDecodeSchedulePlan, EdgeBatches) {
  for (int parts : {1, 2, 5, 132, 264, 1024, 2048}) {
    check({0}, parts);                        // nothing to do
    check({0, 0, 0}, parts);
    check({1}, parts);                        // less work than parts
    check({1, 0, 1, 0, 1}, parts);
    check({int32_t(mla::kMaxSeqLen / mla::kBlockN)}, parts);  // one sequence of 2^30 tokens over every part
    check(std::vector<int32_t>(128, 256), parts);             // the TP 8 workbench shape: 128 x 8192 tokens
    check(std::vector<int32_t>(mla::kMaxBatch, 1), parts);    // the largest batch, one tile each
  }
}

TEST(MlaDecodeSchedulePlan, RandomBatches) {
  std::mt19937 rng(20261127);
  for (int trial = 0; trial < 400; ++trial) {
    const int batch = 1 + int(rng() % (trial % 10 == 0 ? mla::kMaxBatch : 300));
    const int parts = 1 + int(rng() % 1024);
    std::vector<int32_t> tiles(static_cast<size_t>(batch), 0);
    for (auto& t : tiles) {  // empty, short, typical and very long sequences mixed
      const uint32_t kind = rng() % 8;
      t = kind == 0 ? 0 : kind < 4 ? int32_t(1 + rng() % 4) : kind < 7 ? int32_t(rng() % 512) : int32_t(rng() % 65536);
    }
    check(tiles, parts);
    if (HasFatalFailure()) return;
  }
}

}  // namespace
