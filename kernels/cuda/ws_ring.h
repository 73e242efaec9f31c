// The hand-off protocol of the warp-specialized wgmma kernels (a loading warpgroup and computing warpgroups that
// meet at mbarriers: mla_decode's attend_wgmma_ws.cuh / _ws.cu / _seesaw.cu, flash_prefill's kernel_wgmma_ws.cuh)
// as plain arithmetic, shared by the kernels and by the CPU test that plays their threads out under random
// interleavings against a model of mbarriers (tests/kernels/test_ws_ring.cpp: no deadlock, no stage or q
// rewritten while read, every read sees the tile or piece it expects), so the parities the kernels wait for are
// checked without a GPU. The pipelined flash kernel (kernel_wgmma_pipelined.cuh) has no loading warpgroup but
// keeps the ring's parities, and its turns are below.
//
// An mbarrier counts arrivals; when a phase's count is in, the phase completes and the next begins. A wait names the
// parity of the phase it waits for, and passes once that phase has completed, which a fresh barrier's phase "before
// the first" (parity 1) has. Tile n of a CTA (counted over its pieces) goes to stage n % stages, its (n / stages)-th
// use of that stage; piece number p (counted over the pieces the CTA does not skip) is q's p-th use.
#pragma once

#include <cstdint>

#include "kernels/host_device.h"

namespace mlarun::ops::cuda::ws {

MLARUN_HOST_DEVICE constexpr int stage_of(int n, int stages) { return int(unsigned(n) % unsigned(stages)); }
// The computing warpgroups wait on full[stage_of(n)] for the phase that tile n's copies complete.
MLARUN_HOST_DEVICE constexpr uint32_t full_parity(int n, int stages) { return (unsigned(n) / unsigned(stages)) & 1u; }
// The loader waits on empty[stage_of(n)] for the phase in which the stage's previous tile, n - stages, was released:
// for the first use of a stage, the phase before the first, which has passed.
MLARUN_HOST_DEVICE constexpr uint32_t empty_parity(int n, int stages) { return full_parity(n, stages) ^ 1u; }
// A barrier one side arrives on and the other waits for once per use (the seesaw's signals between its computing
// warpgroups): use k waits for the phase of parity k & 1.
MLARUN_HOST_DEVICE constexpr uint32_t use_parity(int use) { return uint32_t(use) & 1u; }
// The same for q, one use per piece.
MLARUN_HOST_DEVICE constexpr uint32_t q_full_parity(int piece) { return uint32_t(piece) & 1u; }
MLARUN_HOST_DEVICE constexpr uint32_t q_empty_parity(int piece) { return q_full_parity(piece) ^ 1u; }

// The pipelined flash kernel's turns (FlashPrefillParams::pingpong): its two computing warpgroups take turns at
// issuing their MMAs, each waiting on a named barrier of its own before a turn and arriving on the other's after
// it, so one's softmax runs while the other's MMAs do. Warpgroup 1 opens warpgroup 0's first turn; every turn
// but warpgroup 1's last hands over (so each barrier gets exactly the arrivals its waits take).
MLARUN_HOST_DEVICE constexpr bool opens_first_turn(int group) { return group == 1; }
MLARUN_HOST_DEVICE constexpr bool hands_turn_over(int group, int turn, int turns) {
  return group == 0 || turn + 1 < turns;
}

}  // namespace mlarun::ops::cuda::ws
