// The warp-specialized wgmma kernels' hand-offs (attend_wgmma_ws.cuh's loader with attend_wgmma_ws.cu's or
// attend_wgmma_seesaw.cu's computing warpgroups, and flash_prefill's kernel_wgmma_ws.cuh; the parities in
// ws_ring.h) played out on the CPU: each thread runs its kernel's sequence of waits, copies, stores, reads and
// arrivals, in a random interleaving, against a model of mbarriers. For random runs of pieces (skipped ones and ones
// without steps included) a run must finish (no deadlock), never write what a thread is reading, and every read must
// find, landed, what its kernel expects there (the tile, q, the other warpgroup's P, maxima and row sums). Broken
// variants of each protocol must be caught, so the model is not one that passes anything.
//   A copy is modelled as landing before its thread goes on. The decode loader does go on (the hardware arrives on
// `full` when its copies land), but a landing waits on nothing, so it cannot close a cycle of waits, and every
// reader waits for the arrival that follows it: the model's deadlocks and hazards are the kernels'.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/mla_decode/config.h"
#include "kernels/cuda/ws_ring.h"
#include "tests/kernels/mbarrier_model.h"

namespace ws = mlarun::ops::cuda::ws;
namespace mbarrier_model = mlarun::test::mbarrier_model;
using mlarun::ops::cuda::mla::kWgStages;
using mbarrier_model::arrive;
using mbarrier_model::MBarrier;
using mbarrier_model::Outcome;
using mbarrier_model::Program;
using mbarrier_model::read;
using mbarrier_model::read_begin;
using mbarrier_model::read_end;
using mbarrier_model::store;
using mbarrier_model::wait;

namespace {

// What the kernels' threads do; each mutation must be caught.
struct Protocol {
  uint32_t (*full_parity)(int, int) = ws::full_parity;
  uint32_t (*empty_parity)(int, int) = ws::empty_parity;
  uint32_t (*q_full_parity)(int) = ws::q_full_parity;
  uint32_t (*q_empty_parity)(int) = ws::q_empty_parity;
  bool release_q_after_first_scores = false;  // the kernels release q after a warpgroup's last scores of a piece
  bool b_writes_l_first = false;              // the seesaw's B writes its row sums only once it has read A's
  bool a_skips_b_ready = false;               // the seesaw's A waits for B's beta before reading it
  bool a_writes_p_during_scores = false;      // the seesaw's A writes its P over slab 8 once its scores are done
  bool a_releases_lo_before_its_product = false;  // A releases a lo half after its product from it
  bool b_releases_hi_before_its_product = false;  // B releases step n + 1's hi half after its P_n+1 V_n+1
  bool flash_releases_k_before_its_scores = false;  // flash_prefill releases a stage's K after its scores
  bool pipelined_releases_v_before_its_product = false;  // ... the pipelined kernel a stage's V after its P V
  bool pipelined_loads_v_a_turn_early = false;            // it loads V(i + 1) in turn i, not V(i + 2)
  bool pipelined_skips_q_empty = false;                   // it loads the next job's Q without waiting on q_empty
  bool (*opens_first_turn)(int) = ws::opens_first_turn;   // ... and, with turns, these rules
  bool (*hands_turn_over)(int, int, int) = ws::hands_turn_over;
};

struct Piece {
  bool skipped;  // this CTA's rows start past the piece's rows: every thread skips it
  int steps;
};

// Thread groups: the loading warpgroup, computing warpgroups 1 (the seesaw's A) and 2 (B).
enum Group { kLoader, kA, kB, kGroups };
// Resources: a stage's lo half (slabs 0-3), the V slabs of its hi half (4-7), its slab 8 (k_pe; A's P tile), q,
// B's P tile, and the seesaw's exchange rows (A's maximum and alpha, B's maximum and beta, the two row sums).
constexpr int kStages = kWgStages;
enum Half { kLo, kHi };
constexpr int res_lo(int s) { return s; }
constexpr int res_hi(int s) { return kStages + s; }
constexpr int res_slab8(int s) { return 2 * kStages + s; }
constexpr int kResQ = 3 * kStages, kResPB = kResQ + 1, kResXA = kResQ + 2, kResXB = kResQ + 3;
constexpr int kResLA = kResQ + 4, kResLB = kResQ + 5, kResources = kResQ + 6;
// flash_prefill's pipelined kernel, where every computing thread copies its share of each tile: warpgroup g's share
// of a stage's K (part kLo) or V (kHi), and of Q.
constexpr int res_share(int s, int part, int g) { return kResources + 4 * s + 2 * part + (g - 1); }
constexpr int res_q_share(int g) { return kResources + 4 * kStages + (g - 1); }
constexpr int kAllResources = kResources + 4 * kStages + 2;
// Barriers: full[s][half], empty[s][half], q_full, q_empty, then the seesaw's signals.
constexpr int full_bar(int s, int h) { return 2 * s + h; }
constexpr int empty_bar(int s, int h) { return 2 * kStages + 2 * s + h; }
constexpr int kQFull = 4 * kStages, kQEmpty = kQFull + 1, kAReady = kQFull + 2, kBReady = kQFull + 3;
constexpr int kPAReady = kQFull + 4, kLAReady = kQFull + 5, kLBReady = kQFull + 6;
// And one per group for its collective operations: a warpgroup's wgmma completes for all of its threads, so none
// passes the wait for it before every thread of the group has issued it (where the reads it models happen).
constexpr int group_bar(int g) { return kQFull + 7 + g; }
// The pipelined flash kernel's turn barriers (named barriers, one per computing warpgroup: its own threads sync on it,
// the other's arrive).
constexpr int turn_bar(int g) { return kQFull + 7 + kGroups + (g - 1); }
constexpr int kBarriers = kQFull + 7 + kGroups + 2;

// wgmma.wait_group: every thread of group g has issued what it waits for.
void collective(Program& p, int g) { mbarrier_model::collective_on(p, group_bar(g)); }

// Values: a tile is its step number n; q its piece number; a P tile, a maximum or a row sum its use number, offset
// so that no two kinds meet.
constexpr int p_of_a(int use) { return 1000000 + use; }
constexpr int p_of_b(int use) { return 2000000 + use; }

enum class Kernel { OwnSteps, Seesaw, Flash, FlashPipelined, FlashPingPong };

// A loading thread of attend_wgmma_ws.cuh (ws_load_pieces): half a stage at a time, each once its readers have
// released it, in the seesaw's order for its pairs; q with a piece's first half once q is released.
Program loader_program(const std::vector<Piece>& pieces, const Protocol& p, bool paired) {
  Program out;
  int n = 0, np = 0;
  for (const Piece& piece : pieces) {
    if (piece.skipped) continue;
    const auto load_half = [&](int it, int half) {
      const int tile = n + it, s = ws::stage_of(tile, kStages);
      wait(out, empty_bar(s, half), p.empty_parity(tile, kStages));
      if (half == kLo) {
        store(out, res_lo(s), tile);
      } else {
        store(out, res_hi(s), tile);
        store(out, res_slab8(s), tile);
      }
      arrive(out, full_bar(s, half));
    };
    for (int it = 0; it < piece.steps; it += paired ? 2 : 1) {
      load_half(it, kLo);
      if (it == 0) {
        wait(out, kQEmpty, p.q_empty_parity(np));
        store(out, kResQ, np);
        arrive(out, kQFull);
      }
      if (paired && it + 1 < piece.steps) {
        load_half(it + 1, kHi);
        load_half(it, kHi);
        load_half(it + 1, kLo);
      } else {
        load_half(it, kHi);
      }
    }
    n += piece.steps;
    np += piece.steps > 0;
  }
  return out;
}

// flash_prefill's kernel (kernel_wgmma_ws.cuh), one piece per CTA: its loader brings Q once, then each tile's K
// (the lo half here) and V (the hi half), each once released; its computing threads score K, release it, and
// release V after P V.
Program flash_loader_program(const std::vector<Piece>& pieces, const Protocol& p) {
  Program out;
  int n = 0;
  for (const Piece& piece : pieces) {
    if (piece.steps > 0) {
      store(out, kResQ, 0);
      arrive(out, kQFull);
    }
    for (int it = 0; it < piece.steps; ++it, ++n) {
      const int s = ws::stage_of(n, kStages);
      for (int half : {kLo, kHi}) {
        wait(out, empty_bar(s, half), p.empty_parity(n, kStages));
        store(out, half == kLo ? res_lo(s) : res_hi(s), n);
        arrive(out, full_bar(s, half));
      }
    }
  }
  return out;
}
Program flash_program(const std::vector<Piece>& pieces, const Protocol& p, int g) {
  Program out;
  int n = 0;
  for (const Piece& piece : pieces) {
    if (piece.steps > 0) wait(out, kQFull, p.q_full_parity(0));
    for (int it = 0; it < piece.steps; ++it, ++n) {
      const int s = ws::stage_of(n, kStages);
      wait(out, full_bar(s, kLo), p.full_parity(n, kStages));
      read_begin(out, res_lo(s), kLoader, n);
      read(out, kResQ, kLoader, 0);
      if (p.flash_releases_k_before_its_scores) arrive(out, empty_bar(s, kLo));
      collective(out, g);  // the scores
      read_end(out, res_lo(s));
      if (!p.flash_releases_k_before_its_scores) arrive(out, empty_bar(s, kLo));
      wait(out, full_bar(s, kHi), p.full_parity(n, kStages));
      read_begin(out, res_hi(s), kLoader, n);
      collective(out, g);  // P V
      read_end(out, res_hi(s));
      arrive(out, empty_bar(s, kHi));
    }
  }
  return out;
}

// flash_prefill's pipelined kernel (kernel_wgmma_pipelined.cuh), its jobs (query tiles) in a row as a persistent
// CTA takes them (one job without `persistent`; a skipped piece is an m-block past its sequence, a piece without
// steps a tile that sees no key). A thread of warpgroup g copies its share of Q and of each key tile, and reads
// both warpgroups' shares. Key tile i of a job is the CTA's tile c0 + i. Turn i reads K(i + 1) and V(i), loads
// K(i + 2) into K(i)'s stage and V(i + 1) into V(i - 1)'s, releases K(i + 1) after the scores (wgmma.wait_group 1;
// Q too after the job's last), waits on V(i + 1)'s `empty` again and releases V(i) after the P V (wait_group 0).
// The next job's Q, K(0), K(1) and V(0) are loaded after the last P V is issued. With `turns`, each issue of MMAs
// is a turn: a sync on the warpgroup's own turn barrier before it, an arrival on the other's after it (ws_ring.h's
// rules).
Program flash_pipelined_program(const std::vector<Piece>& jobs, const Protocol& p, int g, bool turns) {
  Program out;
  const int other = g == kA ? kB : kA;
  int syncs = 0;
  const auto begin_turn = [&] {
    if (!turns) return;
    arrive(out, turn_bar(g));
    wait(out, turn_bar(g), uint32_t(syncs++) & 1u);
  };
  const auto load = [&](int c, int part) {
    const int s = ws::stage_of(c, kStages);
    wait(out, empty_bar(s, part), p.empty_parity(c, kStages));
    store(out, res_share(s, part, g), c);
    arrive(out, full_bar(s, part));
  };
  const auto begin_both = [&](int res_of_a, int res_of_b, int value) {
    read_begin(out, res_of_a, kA, value);
    read_begin(out, res_of_b, kB, value);
  };
  const auto k_res = [](int c, int w) { return res_share(ws::stage_of(c, kStages), kLo, w); };
  const auto v_res = [](int c, int w) { return res_share(ws::stage_of(c, kStages), kHi, w); };
  const auto end_both = [&](int res_of_a, int res_of_b) {
    read_end(out, res_of_a);
    read_end(out, res_of_b);
  };
  const auto first_loads = [&](int c0, int q_use, int tiles) {
    if (!p.pipelined_skips_q_empty) wait(out, kQEmpty, p.q_empty_parity(q_use));
    store(out, res_q_share(g), q_use);
    arrive(out, kQFull);
    load(c0, kLo);
    if (tiles > 1) load(c0 + 1, kLo);
    load(c0, kHi);
  };
  const auto tiles_of = [&](size_t j) { return jobs[j].skipped ? 0 : jobs[j].steps; };
  int c0 = 0, q_use = 0;
  bool loaded = false;
  for (size_t j = 0; j < jobs.size(); ++j) {
    const int tiles = tiles_of(j);
    if (tiles == 0) continue;
    const auto end_turn = [&](int turn) {
      if (turns && p.hands_turn_over(g - 1, turn, tiles + 1)) arrive(out, turn_bar(other));
    };
    const int q_a = res_q_share(kA), q_b = res_q_share(kB);
    if (!loaded) first_loads(c0, q_use, tiles);
    wait(out, kQFull, p.q_full_parity(q_use));
    wait(out, full_bar(ws::stage_of(c0, kStages), kLo), p.full_parity(c0, kStages));
    if (turns && p.opens_first_turn(g - 1)) arrive(out, turn_bar(other));
    begin_turn();
    begin_both(k_res(c0, kA), k_res(c0, kB), c0);
    begin_both(q_a, q_b, q_use);
    end_turn(0);
    collective(out, g);  // S(0)
    end_both(k_res(c0, kA), k_res(c0, kB));
    end_both(q_a, q_b);
    arrive(out, empty_bar(ws::stage_of(c0, kStages), kLo));
    if (tiles == 1 || p.release_q_after_first_scores) arrive(out, kQEmpty);
    for (int i = 0; i + 1 < tiles; ++i) {
      const int c = c0 + i;
      wait(out, full_bar(ws::stage_of(c + 1, kStages), kLo), p.full_parity(c + 1, kStages));
      wait(out, full_bar(ws::stage_of(c, kStages), kHi), p.full_parity(c, kStages));
      begin_turn();
      begin_both(k_res(c + 1, kA), k_res(c + 1, kB), c + 1);
      begin_both(q_a, q_b, q_use);
      begin_both(v_res(c, kA), v_res(c, kB), c);
      end_turn(i + 1);
      if (i + 2 < tiles) load(c + 2, kLo);
      if (!p.pipelined_loads_v_a_turn_early) load(c + 1, kHi);
      else if (i + 2 < tiles) load(c + 2, kHi);
      collective(out, g);  // wait_group 1: S(i + 1)
      end_both(k_res(c + 1, kA), k_res(c + 1, kB));
      end_both(q_a, q_b);
      arrive(out, empty_bar(ws::stage_of(c + 1, kStages), kLo));
      if (i + 2 == tiles && !p.release_q_after_first_scores) arrive(out, kQEmpty);
      if (p.pipelined_releases_v_before_its_product) arrive(out, empty_bar(ws::stage_of(c, kStages), kHi));
      // The kernel's scheduling fence: V(i + 1)'s `empty` wait again, which must still pass here.
      if (!p.pipelined_loads_v_a_turn_early) wait(out, empty_bar(ws::stage_of(c + 1, kStages), kHi),
                                                  p.empty_parity(c + 1, kStages));
      collective(out, g);  // wait_group 0: P(i) V(i)
      end_both(v_res(c, kA), v_res(c, kB));
      if (!p.pipelined_releases_v_before_its_product) arrive(out, empty_bar(ws::stage_of(c, kStages), kHi));
    }
    const int last = c0 + tiles - 1;
    wait(out, full_bar(ws::stage_of(last, kStages), kHi), p.full_parity(last, kStages));
    begin_turn();
    begin_both(v_res(last, kA), v_res(last, kB), last);
    end_turn(tiles);
    // The next job's first loads, under the last P V (a job after it that sees no key has none).
    loaded = false;
    for (size_t k = j + 1; k < jobs.size(); ++k)
      if (tiles_of(k) > 0) {
        first_loads(c0 + tiles, q_use + 1, tiles_of(k));
        loaded = true;
        break;
      }
    collective(out, g);  // the last P V
    end_both(v_res(last, kA), v_res(last, kB));
    arrive(out, empty_bar(ws::stage_of(last, kStages), kHi));
    c0 += tiles, ++q_use;
  }
  return out;
}

// A computing thread of attend_wgmma_ws.cu (OwnSteps): each step's scores read q and the whole stage, P.V its V;
// both halves are released after P.V, q after the piece's last scores.
Program own_steps_program(const std::vector<Piece>& pieces, const Protocol& p, int g) {
  Program out;
  int n = 0, np = 0;
  for (const Piece& piece : pieces) {
    if (piece.skipped) continue;
    if (piece.steps > 0) wait(out, kQFull, p.q_full_parity(np));
    for (int it = 0; it < piece.steps; ++it, ++n) {
      const int s = ws::stage_of(n, kStages);
      wait(out, full_bar(s, kLo), p.full_parity(n, kStages));
      wait(out, full_bar(s, kHi), p.full_parity(n, kStages));
      read_begin(out, res_lo(s), kLoader, n);
      read_begin(out, res_hi(s), kLoader, n);
      read(out, res_slab8(s), kLoader, n);
      read(out, kResQ, kLoader, np);
      collective(out, g);  // the scores
      if (it == (p.release_q_after_first_scores ? 0 : piece.steps - 1)) arrive(out, kQEmpty);
      collective(out, g);  // P.V
      read_end(out, res_lo(s));
      read_end(out, res_hi(s));
      arrive(out, empty_bar(s, kLo));
      arrive(out, empty_bar(s, kHi));
    }
    np += piece.steps > 0;
  }
  return out;
}

// The scores of tile n in stage s, half by half as they land (hi first: B's order): both halves and slab 8 read,
// then the windows the scores alone need are closed (`keep`: the half this warpgroup's P.V still reads).
void scores_by_halves(Program& out, const Protocol& p, int g, int s, int n, int np, bool hi_first, int keep) {
  for (int half : {hi_first ? kHi : kLo, hi_first ? kLo : kHi}) {
    wait(out, full_bar(s, half), p.full_parity(n, kStages));
    read_begin(out, half == kLo ? res_lo(s) : res_hi(s), kLoader, n);
    if (half == kHi) read_begin(out, res_slab8(s), kLoader, n);
  }
  read(out, kResQ, kLoader, np);
  if (g == kA && p.a_writes_p_during_scores) store(out, res_slab8(s), p_of_a(n));
  collective(out, g);
  read_end(out, res_slab8(s));
  read_end(out, keep == kLo ? res_hi(s) : res_lo(s));
}

// A computing thread of attend_wgmma_seesaw.cu, warpgroup A (`is_a`) or B, in the kernel's order.
Program seesaw_program(const std::vector<Piece>& pieces, const Protocol& p, bool is_a) {
  Program out;
  int n = 0, np = 0, na = 0, nb = 0, ne = 0;
  for (const Piece& piece : pieces) {
    if (piece.skipped) continue;
    const int steps = piece.steps;
    if (steps > 0) {
      wait(out, kQFull, p.q_full_parity(np));
      if (!is_a && steps == 1) arrive(out, kQEmpty);
    }
    const int last_scored = is_a ? (steps - 1) & ~1 : steps - 1 - (steps & 1);
    for (int it = 0; it < steps; it += 2, n += 2) {
      const bool pair = it + 1 < steps;
      const int s0 = ws::stage_of(n, kStages), s1 = ws::stage_of(n + 1, kStages);
      const int release_q_at = p.release_q_after_first_scores ? (is_a ? 0 : 1) : last_scored;
      if (is_a) {
        scores_by_halves(out, p, kA, s0, n, np, false, kLo);  // lo stays open: P_n V_n reads it
        if (it == release_q_at) arrive(out, kQEmpty);
        store(out, kResXA, na);
        arrive(out, kAReady);
        if (pair) {
          if (!p.a_skips_b_ready) wait(out, kBReady, ws::use_parity(nb));
          read(out, kResXB, kB, nb);
        }
        if (p.a_releases_lo_before_its_product) arrive(out, empty_bar(s0, kLo));
        collective(out, kA);  // P_n V_n from registers
        read_end(out, res_lo(s0));
        if (!p.a_releases_lo_before_its_product) arrive(out, empty_bar(s0, kLo));
        if (!p.a_writes_p_during_scores) store(out, res_slab8(s0), p_of_a(n));
        arrive(out, kPAReady);
        if (pair) {
          wait(out, full_bar(s1, kLo), p.full_parity(n + 1, kStages));
          read_begin(out, res_lo(s1), kLoader, n + 1);
          read_begin(out, kResPB, kB, p_of_b(nb));
          if (p.a_releases_lo_before_its_product) arrive(out, empty_bar(s1, kLo));
          collective(out, kA);  // P_n+1 V_n+1 from B's P tile
          read_end(out, kResPB);
          read_end(out, res_lo(s1));
          if (!p.a_releases_lo_before_its_product) arrive(out, empty_bar(s1, kLo));
        }
      } else {
        if (pair) {
          scores_by_halves(out, p, kB, s1, n + 1, np, true, kHi);  // hi stays open: P_n+1 V_n+1 reads it
          if (it + 1 == release_q_at) arrive(out, kQEmpty);
        }
        wait(out, kAReady, ws::use_parity(na));
        read(out, kResXA, kA, na);
        if (pair) {
          store(out, kResXB, nb);
          store(out, kResPB, p_of_b(nb));  // no barrier: these scores needed a lo half A released after its read
          arrive(out, kBReady);
          if (p.b_releases_hi_before_its_product) arrive(out, empty_bar(s1, kHi));
        }
        wait(out, kPAReady, ws::use_parity(na));
        wait(out, full_bar(s0, kHi), p.full_parity(n, kStages));
        read_begin(out, res_hi(s0), kLoader, n);
        read_begin(out, res_slab8(s0), kA, p_of_a(n));
        if (pair) {
          collective(out, kB);  // wgmma.wait_group 1: P_n+1 V_n+1 from registers
          read_end(out, res_hi(s1));
          if (!p.b_releases_hi_before_its_product) arrive(out, empty_bar(s1, kHi));
        }
        collective(out, kB);  // P_n V_n from A's P tile
        read_end(out, res_slab8(s0));
        read_end(out, res_hi(s0));
        arrive(out, empty_bar(s0, kHi));
      }
      ++na;
      nb += pair;
    }
    n -= steps & 1;
    np += steps > 0;
    if (is_a) {  // the row sums
      store(out, kResLA, ne);
      arrive(out, kLAReady);
      wait(out, kLBReady, ws::use_parity(ne));
      read(out, kResLB, kB, ne);
    } else {
      if (p.b_writes_l_first) store(out, kResLB, ne);
      wait(out, kLAReady, ws::use_parity(ne));
      read(out, kResLA, kA, ne);
      if (!p.b_writes_l_first) store(out, kResLB, ne);
      arrive(out, kLBReady);
    }
    ++ne;
  }
  return out;
}

// Runs `loaders` loading threads and `per_group` threads in each computing warpgroup in a random interleaving
// until all are done, one is caught writing what is being read or reading what has not landed, or none can move.
Outcome play(Kernel kernel, const std::vector<Piece>& pieces, const Protocol& p, int loaders, int per_group,
             std::mt19937& rng) {
  std::vector<Program> programs;
  std::vector<int> groups;
  const bool flash = kernel == Kernel::Flash, seesaw = kernel == Kernel::Seesaw;
  const bool turns = kernel == Kernel::FlashPingPong;
  const bool pipelined = kernel == Kernel::FlashPipelined || turns;  // (no loading threads: `loaders` is ignored)
  if (pipelined) loaders = 0;
  for (int i = 0; i < loaders; ++i) {
    programs.push_back(flash ? flash_loader_program(pieces, p) : loader_program(pieces, p, seesaw));
    groups.push_back(kLoader);
  }
  for (int g : {kA, kB})
    for (int i = 0; i < per_group; ++i) {
      programs.push_back(seesaw      ? seesaw_program(pieces, p, g == kA)
                         : flash     ? flash_program(pieces, p, g)
                         : pipelined ? flash_pipelined_program(pieces, p, g, turns)
                                     : own_steps_program(pieces, p, g));
      groups.push_back(g);
    }
  std::vector<MBarrier> bars;
  for (int b = 0; b < kBarriers; ++b) {
    int count = per_group;  // the seesaw's signals and the computing groups' own: one warpgroup's threads
    if (b < 2 * kStages || b == kQFull || b == group_bar(kLoader)) count = loaders;  // full halves
    else if ((b < 4 * kStages && !seesaw) || b == kQEmpty) count = 2 * per_group;  // (the seesaw: one releaser)
    if (pipelined && (b < 2 * kStages || b == kQFull)) count = 2 * per_group;  // every computing thread fills
    if (b == turn_bar(kA) || b == turn_bar(kB)) count = 2 * per_group;  // one warpgroup syncs, the other arrives
    bars.push_back(mbarrier_model::barrier_of(count));
  }
  return mbarrier_model::interleave(programs, groups, {"loader", "A", "B"}, bars, kAllResources, rng);
}

std::vector<Piece> random_pieces(std::mt19937& rng, bool with_empty) {
  std::vector<Piece> pieces(size_t(std::uniform_int_distribution<int>(0, 6)(rng)));
  for (Piece& piece : pieces) {
    piece.skipped = std::uniform_int_distribution<int>(0, 3)(rng) == 0;
    piece.steps = std::uniform_int_distribution<int>(with_empty ? 0 : 1, 5)(rng);
  }
  return pieces;
}

void expect_protocol_holds(Kernel kernel, uint32_t seed) {
  std::mt19937 rng(seed);
  for (int trial = 0; trial < 3000; ++trial) {
    const std::vector<Piece> pieces = random_pieces(rng, trial % 4 == 3);  // every fourth with empty pieces
    const int loaders = 1 + trial % 3, per_group = 1 + (trial / 3) % 3;
    const Outcome o = play(kernel, pieces, Protocol{}, loaders, per_group, rng);
    ASSERT_TRUE(o.hazard.empty()) << "trial " << trial << ": " << o.hazard;
    ASSERT_TRUE(o.finished) << "trial " << trial << ": deadlock";
  }
  // The kernels' thread counts (128 loading, 128 in each computing warpgroup) on one longer run of pieces.
  const std::vector<Piece> pieces = {{false, 3}, {true, 2}, {false, 1}, {false, 4}, {true, 1}, {false, 2}};
  const Outcome o = play(kernel, pieces, Protocol{}, 128, 128, rng);
  EXPECT_TRUE(o.finished && o.hazard.empty()) << o.hazard;
}

// Each broken variant is caught in some trial: a deadlock or a hazard.
void expect_caught(Kernel kernel, const char* name, const Protocol& p) {
  std::mt19937 rng(11);
  bool caught = false;
  for (int trial = 0; trial < 1000 && !caught; ++trial) {
    std::vector<Piece> pieces = random_pieces(rng, trial % 2 == 1);
    pieces.push_back({false, 3});
    pieces.push_back({false, 2});
    if (kernel == Kernel::Flash) pieces = {{false, 1 + trial % 6}};  // one piece per CTA
    const Outcome o = play(kernel, pieces, p, 2, 2, rng);
    caught = !o.finished || !o.hazard.empty();
  }
  EXPECT_TRUE(caught) << name << " was never caught";
}

std::vector<std::pair<const char*, Protocol>> broken_ring_protocols() {
  Protocol loader_waits_current_phase, reads_before_landing, q_loader_waits_current_phase, q_released_early;
  loader_waits_current_phase.empty_parity = ws::full_parity;
  reads_before_landing.full_parity = ws::empty_parity;
  q_loader_waits_current_phase.q_empty_parity = ws::q_full_parity;
  q_released_early.release_q_after_first_scores = true;
  return {{"empty waits on its current phase", loader_waits_current_phase},
          {"full waits on the phase before", reads_before_landing},
          {"q_empty waits on its current phase", q_loader_waits_current_phase},
          {"q released after the first scores", q_released_early}};
}

}  // namespace

TEST(WsRing, OwnStepsFinishWithoutHazardsInRandomInterleavings) {  // attend_wgmma_ws.cu
  expect_protocol_holds(Kernel::OwnSteps, 2026);
}

// flash_prefill's warp-specialized kernel (kernel_wgmma_ws.cuh): one piece per CTA (its key tiles; Q loaded once,
// before the first), K and V of a stage handed over apart.
TEST(WsRing, OnePieceAsTheFlashKernelRunsIt) {
  std::mt19937 rng(2028);
  for (int steps = 0; steps <= 9; ++steps)
    for (int trial = 0; trial < 50; ++trial) {
      const Outcome o = play(Kernel::Flash, {{false, steps}}, Protocol{}, 1 + trial % 3, 1 + trial % 2, rng);
      ASSERT_TRUE(o.finished && o.hazard.empty()) << steps << " tiles, trial " << trial << ": " << o.hazard;
    }
}

// flash_prefill's pipelined kernel (kernel_wgmma_pipelined.cuh): no loading warpgroup; both computing warpgroups
// copy their shares of every tile into the ring and read each other's, 0 to 9 key tiles; without and with turns
// at issuing (FlashPrefillParams::pingpong).
TEST(WsRing, PipelinedTurnsAsTheFlashKernelRunsThem) {
  std::mt19937 rng(2029);
  for (const Kernel kernel : {Kernel::FlashPipelined, Kernel::FlashPingPong}) {
    for (int steps = 0; steps <= 9; ++steps)
      for (int trial = 0; trial < 50; ++trial) {
        const Outcome o = play(kernel, {{false, steps}}, Protocol{}, 0, 1 + trial % 3, rng);
        ASSERT_TRUE(o.finished && o.hazard.empty()) << steps << " tiles, trial " << trial << ": " << o.hazard;
      }
    // The kernel's thread counts (128 in each warpgroup).
    const Outcome o = play(kernel, {{false, 7}}, Protocol{}, 0, 128, rng);
    EXPECT_TRUE(o.finished && o.hazard.empty()) << o.hazard;
  }
}

// ... and with `persistent`: random runs of jobs (query tiles), m-blocks past their sequence and tiles that see no
// key among them, the ring and Q handed on from job to job.
TEST(WsRing, PersistentPipelinedJobsFinishWithoutHazards) {
  std::mt19937 rng(2030);
  for (const Kernel kernel : {Kernel::FlashPipelined, Kernel::FlashPingPong})
    for (int trial = 0; trial < 1500; ++trial) {
      const std::vector<Piece> jobs = random_pieces(rng, trial % 2 == 1);
      const Outcome o = play(kernel, jobs, Protocol{}, 0, 1 + trial % 3, rng);
      ASSERT_TRUE(o.finished && o.hazard.empty()) << "trial " << trial << ": " << o.hazard;
    }
  const std::vector<Piece> jobs = {{false, 3}, {true, 2}, {false, 0}, {false, 1}, {false, 4}, {false, 2}};
  const Outcome o = play(Kernel::FlashPingPong, jobs, Protocol{}, 0, 128, rng);
  EXPECT_TRUE(o.finished && o.hazard.empty()) << o.hazard;
}

TEST(WsRing, SeesawFinishesWithoutHazardsInRandomInterleavings) {
  expect_protocol_holds(Kernel::Seesaw, 2027);
}

TEST(WsRing, BrokenProtocolsAreCaught) {
  for (const auto& [name, p] : broken_ring_protocols()) {
    expect_caught(Kernel::OwnSteps, name, p);
    expect_caught(Kernel::Seesaw, name, p);
  }
  // flash_prefill's (no q_empty: one piece).
  for (const auto& [name, p] : broken_ring_protocols())
    if (p.empty_parity != ws::empty_parity || p.full_parity != ws::full_parity) expect_caught(Kernel::Flash, name, p);
  Protocol flash_releases_k_early;
  flash_releases_k_early.flash_releases_k_before_its_scores = true;
  expect_caught(Kernel::Flash, "flash_prefill releases K before its scores", flash_releases_k_early);
  // The pipelined kernel's, its jobs in a row as a persistent CTA runs them. (Q released after a job's first scores
  // is no hazard there: the next job's Q goes out after the last P V's V has landed, which every thread loads after
  // its last scores, but for one-tile jobs, where the first scores are the last.)
  for (const auto& [name, p] : broken_ring_protocols())
    if (!p.release_q_after_first_scores) {
      expect_caught(Kernel::FlashPipelined, name, p);
      expect_caught(Kernel::FlashPingPong, name, p);
    }
  Protocol skips_q_empty;
  skips_q_empty.pipelined_skips_q_empty = true;
  expect_caught(Kernel::FlashPipelined, "the pipelined kernel loads Q without waiting on q_empty", skips_q_empty);
  Protocol releases_v_early, loads_v_early;
  releases_v_early.pipelined_releases_v_before_its_product = true;
  loads_v_early.pipelined_loads_v_a_turn_early = true;
  expect_caught(Kernel::FlashPipelined, "the pipelined kernel releases V before its P V", releases_v_early);
  expect_caught(Kernel::FlashPipelined, "the pipelined kernel loads V a turn early", loads_v_early);
  Protocol wrong_opener, never_hands_over;
  wrong_opener.opens_first_turn = [](int group) { return group == 0; };
  never_hands_over.hands_turn_over = [](int, int, int) { return false; };
  expect_caught(Kernel::FlashPingPong, "warpgroup 0 opens the first turn", wrong_opener);
  expect_caught(Kernel::FlashPingPong, "no turn is handed over", never_hands_over);
  Protocol b_writes_l_first, a_skips_b_ready, a_writes_p_during_scores, a_releases_lo_early, b_releases_hi_early;
  b_writes_l_first.b_writes_l_first = true;
  a_skips_b_ready.a_skips_b_ready = true;
  a_writes_p_during_scores.a_writes_p_during_scores = true;
  a_releases_lo_early.a_releases_lo_before_its_product = true;
  b_releases_hi_early.b_releases_hi_before_its_product = true;
  expect_caught(Kernel::Seesaw, "B writes its row sums before reading A's", b_writes_l_first);
  expect_caught(Kernel::Seesaw, "A reads beta without waiting for it", a_skips_b_ready);
  expect_caught(Kernel::Seesaw, "A writes P over slab 8 during its scores", a_writes_p_during_scores);
  expect_caught(Kernel::Seesaw, "A releases a lo half before its product from it", a_releases_lo_early);
  expect_caught(Kernel::Seesaw, "B releases a hi half before its product from it", b_releases_hi_early);
}
