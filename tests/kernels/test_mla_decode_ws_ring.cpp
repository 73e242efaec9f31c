// The warp-specialized wgmma attend kernel's hand-off (attend_wgmma_ws.cu; the parities in ws_ring.h) played out on
// the CPU: each loading and computing thread runs the kernel's sequence of waits, copies, reads and arrivals, in a
// random interleaving, against a model of mbarriers. For random runs of pieces (skipped ones included) it must
// finish (no deadlock), never write a stage or q while a computing thread reads it, and every read must find the
// tile or piece it expects, landed. Broken variants of the protocol (a wrong parity, q released early) must be
// caught, so the model is not one that passes anything.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/mla_decode/config.h"
#include "kernels/cuda/mla_decode/ws_ring.h"

namespace ws = mlarun::ops::cuda::mla::ws;
using mlarun::ops::cuda::mla::kWgStages;

namespace {

// An mbarrier: `count` arrivals complete a phase. A wait for parity p passes once the phase of that parity has
// completed: the current phase's parity is completed & 1, so p passes while it differs from it.
struct MBarrier {
  int count = 1, pending = 1, completed = 0;
  void arrive() {
    if (--pending == 0) ++completed, pending = count;
  }
  bool passed(uint32_t parity) const { return (uint32_t(completed) & 1u) != parity; }
};

// What the kernel's threads wait for; mutations of it must be caught.
struct Protocol {
  uint32_t (*full_parity)(int, int) = ws::full_parity;
  uint32_t (*empty_parity)(int, int) = ws::empty_parity;
  uint32_t (*q_full_parity)(int) = ws::q_full_parity;
  uint32_t (*q_empty_parity)(int) = ws::q_empty_parity;
  bool release_q_after_first_scores = false;  // the kernel releases q after the piece's last scores
};

struct Piece {
  bool skipped;  // this CTA's rows start past the piece's rows: every thread skips it
  int steps;
};

enum class Op { Wait, BeginWrite, Land, Arrive, BeginRead, EndRead, ReadQ };
struct Step {
  Op op;
  int a = 0, value = 0;  // Wait/Arrive: barrier; BeginWrite/Land/BeginRead/EndRead/ReadQ: resource
  uint32_t parity = 0;
};

// Resources: the ring's stages 0 .. kStages - 1 and q; barriers: full[s], empty[s], q_full, q_empty.
constexpr int kStages = kWgStages, kQ = kStages;
constexpr int full_bar(int s) { return s; }
constexpr int empty_bar(int s) { return kStages + s; }
constexpr int kQFull = 2 * kStages, kQEmpty = 2 * kStages + 1, kBarriers = 2 * kStages + 2;

// A loading thread's sequence (load_pieces in the kernel).
std::vector<Step> loader_steps(const std::vector<Piece>& pieces, const Protocol& p) {
  std::vector<Step> out;
  int n = 0, np = 0;
  for (const Piece& piece : pieces) {
    if (piece.skipped) continue;
    for (int it = 0; it < piece.steps; ++it, ++n) {
      const int s = ws::stage_of(n, kStages);
      out.push_back({Op::Wait, empty_bar(s), 0, p.empty_parity(n, kStages)});
      out.push_back({Op::BeginWrite, s, n});
      if (it == 0) {
        out.push_back({Op::Wait, kQEmpty, 0, p.q_empty_parity(np)});
        out.push_back({Op::BeginWrite, kQ, np});
      }
      out.push_back({Op::Land, s, n});  // cp.async.wait_group 0: this thread's copies are in
      if (it == 0) out.push_back({Op::Land, kQ, np});
      if (it == 0) out.push_back({Op::Arrive, kQFull});
      out.push_back({Op::Arrive, full_bar(s)});
    }
    np += piece.steps > 0;
  }
  return out;
}

// A computing thread's sequence (attend_pieces in the kernel): each step's scores read q and the stage, P.V the
// stage again; the stage is released after P.V, q after the piece's last scores.
std::vector<Step> computer_steps(const std::vector<Piece>& pieces, const Protocol& p) {
  std::vector<Step> out;
  int n = 0, np = 0;
  for (const Piece& piece : pieces) {
    if (piece.skipped) continue;
    if (piece.steps > 0) out.push_back({Op::Wait, kQFull, 0, p.q_full_parity(np)});
    for (int it = 0; it < piece.steps; ++it, ++n) {
      const int s = ws::stage_of(n, kStages);
      out.push_back({Op::Wait, full_bar(s), 0, p.full_parity(n, kStages)});
      out.push_back({Op::BeginRead, s, n});
      out.push_back({Op::ReadQ, kQ, np});
      const int release_at = p.release_q_after_first_scores ? 0 : piece.steps - 1;
      if (it == release_at) out.push_back({Op::Arrive, kQEmpty});
      out.push_back({Op::EndRead, s, n});
      out.push_back({Op::Arrive, empty_bar(s)});
    }
    np += piece.steps > 0;
  }
  return out;
}

struct Outcome {
  bool finished = false;
  std::string hazard;  // empty: none
};

// Runs `loaders` loading and `computers` computing threads in a random interleaving until all are done, one is
// caught reading or writing what it must not, or none can move (a deadlock).
Outcome play(const std::vector<Piece>& pieces, const Protocol& p, int loaders, int computers, std::mt19937& rng) {
  std::vector<std::vector<Step>> prog;
  for (int i = 0; i < loaders; ++i) prog.push_back(loader_steps(pieces, p));
  for (int i = 0; i < computers; ++i) prog.push_back(computer_steps(pieces, p));
  std::vector<size_t> pc(prog.size(), 0);
  std::vector<MBarrier> bars(kBarriers);
  for (int b = 0; b < kBarriers; ++b) {
    const bool by_loaders = b == kQFull || b < kStages;
    bars[b].count = bars[b].pending = by_loaders ? loaders : computers;
  }
  // content[r][i]: what loader i's part of resource r holds (-1: a copy in flight); writers / readers in progress.
  std::vector<std::vector<int>> content(kStages + 1, std::vector<int>(size_t(loaders), -2));
  std::vector<int> writers(kStages + 1, 0), readers(kStages + 1, 0);
  Outcome out;
  const auto landed_as = [&](int r, int value) {
    for (int v : content[size_t(r)])
      if (v != value) return false;
    return writers[size_t(r)] == 0;
  };
  for (;;) {
    std::vector<size_t> ready;
    bool all_done = true;
    for (size_t t = 0; t < prog.size(); ++t) {
      if (pc[t] == prog[t].size()) continue;
      all_done = false;
      const Step& s = prog[t][pc[t]];
      if (s.op != Op::Wait || bars[size_t(s.a)].passed(s.parity)) ready.push_back(t);
    }
    if (all_done) {
      out.finished = true;
      return out;
    }
    if (ready.empty()) return out;  // deadlock
    const size_t t = ready[std::uniform_int_distribution<size_t>(0, ready.size() - 1)(rng)];
    const Step& s = prog[t][pc[t]++];
    const std::string who = (t < size_t(loaders) ? "loader " : "computer ") + std::to_string(t);
    const std::string what = s.a == kQ ? "q" : "stage " + std::to_string(s.a);
    switch (s.op) {
      case Op::Wait: break;
      case Op::Arrive: bars[size_t(s.a)].arrive(); break;
      case Op::BeginWrite:
        if (readers[size_t(s.a)] > 0) out.hazard = who + " writes " + what + " while it is read";
        content[size_t(s.a)][t] = -1, ++writers[size_t(s.a)];
        break;
      case Op::Land: content[size_t(s.a)][t] = s.value, --writers[size_t(s.a)]; break;
      case Op::BeginRead:
      case Op::ReadQ:
        if (!landed_as(s.a, s.value))
          out.hazard = who + " reads " + what + " for " + std::to_string(s.value) + " before it has landed";
        readers[size_t(s.a)] += s.op == Op::BeginRead;
        break;
      case Op::EndRead: --readers[size_t(s.a)]; break;
    }
    if (!out.hazard.empty()) return out;
  }
}

std::vector<Piece> random_pieces(std::mt19937& rng) {
  std::vector<Piece> pieces(size_t(std::uniform_int_distribution<int>(0, 6)(rng)));
  for (Piece& piece : pieces) {
    piece.skipped = std::uniform_int_distribution<int>(0, 3)(rng) == 0;
    piece.steps = std::uniform_int_distribution<int>(1, 5)(rng);
  }
  return pieces;
}

}  // namespace

TEST(MlaDecodeWsRing, TheKernelsProtocolFinishesWithoutHazardsInRandomInterleavings) {
  std::mt19937 rng(2026);
  for (int trial = 0; trial < 3000; ++trial) {
    const std::vector<Piece> pieces = random_pieces(rng);
    const int loaders = 1 + trial % 3, computers = 1 + (trial / 3) % 4;
    const Outcome o = play(pieces, Protocol{}, loaders, computers, rng);
    ASSERT_TRUE(o.hazard.empty()) << "trial " << trial << ": " << o.hazard;
    ASSERT_TRUE(o.finished) << "trial " << trial << ": deadlock";
  }
  // The kernel's thread counts (128 loading, 256 computing) on one longer run of pieces.
  const std::vector<Piece> pieces = {{false, 3}, {true, 2}, {false, 1}, {false, 4}, {true, 1}, {false, 2}};
  const Outcome o = play(pieces, Protocol{}, 128, 256, rng);
  EXPECT_TRUE(o.finished && o.hazard.empty()) << o.hazard;
}

// A piece with no step (the scheduler makes none; the kernel's threads then leave q alone) passes too.
TEST(MlaDecodeWsRing, APieceWithoutStepsLeavesQAlone) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    const Outcome o = play({{false, 2}, {false, 0}, {false, 3}, {false, 0}}, Protocol{}, 2, 3, rng);
    ASSERT_TRUE(o.finished && o.hazard.empty()) << "trial " << trial << ": " << o.hazard;
  }
}

// Each broken variant is caught in some trial: a deadlock or a hazard.
TEST(MlaDecodeWsRing, BrokenProtocolsAreCaught) {
  struct Variant {
    const char* name;
    Protocol p;
  };
  Protocol loader_waits_current_phase, reads_before_landing, q_loader_waits_current_phase, q_released_early;
  loader_waits_current_phase.empty_parity = ws::full_parity;
  reads_before_landing.full_parity = ws::empty_parity;
  q_loader_waits_current_phase.q_empty_parity = ws::q_full_parity;
  q_released_early.release_q_after_first_scores = true;
  for (const Variant& v : {Variant{"empty waits on its current phase", loader_waits_current_phase},
                           Variant{"full waits on the phase before", reads_before_landing},
                           Variant{"q_empty waits on its current phase", q_loader_waits_current_phase},
                           Variant{"q released after the first scores", q_released_early}}) {
    std::mt19937 rng(11);
    bool caught = false;
    for (int trial = 0; trial < 500 && !caught; ++trial) {
      std::vector<Piece> pieces = random_pieces(rng);
      pieces.push_back({false, 3});
      pieces.push_back({false, 2});
      const Outcome o = play(pieces, v.p, 2, 2, rng);
      caught = !o.finished || !o.hazard.empty();
    }
    EXPECT_TRUE(caught) << v.name << " was never caught";
  }
}
