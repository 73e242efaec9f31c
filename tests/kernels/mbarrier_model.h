// A model of mbarriers and of threads that meet at them, for playing a kernel's hand-off protocol out on the CPU
// (tests/kernels/test_ws_ring.cpp: the warp-specialized wgmma kernels). Each thread is a program of waits,
// arrivals, writes (issued, then landed), and reads of shared resources; `interleave` runs the programs in a
// random interleaving until all finish, one writes what another is reading, one reads what has not landed as it
// expects, or none can move (a deadlock).
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace mlarun::test::mbarrier_model {

// An mbarrier: `count` arrivals complete a phase. A wait for parity p passes once the phase of that parity has
// completed: the current phase's parity is completed & 1, so p passes while it differs from it (a fresh barrier
// passes parity 1: the phase "before the first").
struct MBarrier {
  int count = 1, pending = 1, completed = 0;
  void arrive() {
    if (--pending == 0) ++completed, pending = count;
  }
  bool passed(uint32_t parity) const { return (uint32_t(completed) & 1u) != parity; }
};
inline MBarrier barrier_of(int count) { return MBarrier{count, count, 0}; }

enum class Op { Wait, Arrive, Write, Land, ReadBegin, ReadEnd, Read };
struct Step {
  Op op;
  int a = 0;        // the barrier or the resource
  int value = 0;    // Write/Land: what this thread writes; ReadBegin/Read: what the writers must have written
  int writer = 0;   // ReadBegin/Read: the group whose writes are expected
  uint32_t parity = 0;
};
// A thread's sequence, and how many collective operations it has passed (its group's barrier's phases).
struct Program {
  std::vector<Step> steps;
  int collectives = 0;
  void push_back(const Step& s) { steps.push_back(s); }
};

inline void wait(Program& p, int bar, uint32_t parity) { p.push_back({Op::Wait, bar, 0, 0, parity}); }
inline void arrive(Program& p, int bar) { p.push_back({Op::Arrive, bar}); }
inline void store(Program& p, int res, int value) {  // a write that lands before the thread goes on
  p.push_back({Op::Write, res, value});
  p.push_back({Op::Land, res, value});
}
inline void read_begin(Program& p, int res, int writer, int value) {
  p.push_back({Op::ReadBegin, res, value, writer});
}
inline void read_end(Program& p, int res) { p.push_back({Op::ReadEnd, res}); }
inline void read(Program& p, int res, int writer, int value) { p.push_back({Op::Read, res, value, writer}); }
// A collective operation of the thread's group (wgmma.wait_group: every thread of the group has issued what it
// waits for), on `group_barrier`, a barrier of the group's size.
inline void collective_on(Program& p, int group_barrier) {
  arrive(p, group_barrier);
  wait(p, group_barrier, uint32_t(p.collectives++) & 1u);
}

struct Outcome {
  bool finished = false;
  std::string hazard;  // empty: none
};

// Runs `programs` (thread t in group groups[t], named group_names[groups[t]]) against `bars` over `resources`
// shared resources in a random interleaving.
//   content[r][t]: what thread t last wrote into resource r (-1: in flight; -3: overwritten by another group);
// writers[r] / writer_group[r]: writes in flight; reading[r][t]: thread t's read windows open on r. A thread's
// window is its part of a warpgroup's wgmma, which completes for the whole warpgroup before any of its threads
// passes the wait that closes the window: so a write conflicts with its own thread's open window and with other
// groups' ones, not with its own group's other threads' (their reads are done once the writer's wait passed).
inline Outcome interleave(const std::vector<Program>& programs, const std::vector<int>& groups,
                          const std::vector<std::string>& group_names, std::vector<MBarrier> bars, int resources,
                          std::mt19937& rng) {
  const int threads = int(programs.size());
  std::vector<size_t> pc(programs.size(), 0);
  std::vector<std::vector<int>> content(size_t(resources), std::vector<int>(size_t(threads), -2));
  std::vector<std::vector<int>> reading(size_t(resources), std::vector<int>(size_t(threads), 0));
  std::vector<int> writers(size_t(resources), 0), writer_group(size_t(resources), -1);
  const auto read_by_others = [&](int r, int t) {
    for (int u = 0; u < threads; ++u)
      if (reading[size_t(r)][size_t(u)] > 0 && (u == t || groups[size_t(u)] != groups[size_t(t)])) return true;
    return false;
  };
  const auto landed = [&](int r, int writer, int value) {
    if (writers[size_t(r)] > 0) return false;
    for (int t = 0; t < threads; ++t)
      if (groups[size_t(t)] == writer && content[size_t(r)][size_t(t)] != value) return false;
    return true;
  };
  Outcome out;
  for (;;) {
    std::vector<int> ready;
    bool all_done = true;
    for (int t = 0; t < threads; ++t) {
      const std::vector<Step>& prog = programs[size_t(t)].steps;
      if (pc[size_t(t)] == prog.size()) continue;
      all_done = false;
      const Step& s = prog[pc[size_t(t)]];
      if (s.op != Op::Wait || bars[size_t(s.a)].passed(s.parity)) ready.push_back(t);
    }
    if (all_done) {
      out.finished = true;
      return out;
    }
    if (ready.empty()) return out;  // deadlock
    const int t = ready[std::uniform_int_distribution<size_t>(0, ready.size() - 1)(rng)];
    const Step& s = programs[size_t(t)].steps[pc[size_t(t)]++];
    const int g = groups[size_t(t)];
    const std::string who = group_names[size_t(g)] + " " + std::to_string(t);
    const std::string what = "resource " + std::to_string(s.a);
    const size_t r = size_t(s.a);
    switch (s.op) {
      case Op::Wait: break;
      case Op::Arrive: bars[r].arrive(); break;
      case Op::Write:
        if (read_by_others(s.a, t)) out.hazard = who + " writes " + what + " while it is read";
        if (writers[r] > 0 && writer_group[r] != g) out.hazard = who + " writes " + what + " while another group does";
        content[r][size_t(t)] = -1, ++writers[r], writer_group[r] = g;
        break;
      case Op::Land:
        for (int u = 0; u < threads; ++u)  // what other groups wrote there is gone
          if (groups[size_t(u)] != g) content[r][size_t(u)] = -3;
        content[r][size_t(t)] = s.value, --writers[r];
        break;
      case Op::ReadBegin:
      case Op::Read:
        if (!landed(s.a, s.writer, s.value))
          out.hazard = who + " reads " + what + " for " + std::to_string(s.value) + " before it has landed";
        reading[r][size_t(t)] += s.op == Op::ReadBegin;
        break;
      case Op::ReadEnd: --reading[r][size_t(t)]; break;
    }
    if (!out.hazard.empty()) return out;
  }
}

}  // namespace mlarun::test::mbarrier_model
