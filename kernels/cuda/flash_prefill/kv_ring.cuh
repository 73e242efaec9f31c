// The shared memory of the Hopper ring kernels (kernel_wgmma_ws.cuh, kernel_wgmma_pipelined.cuh): Q, then a ring of
// config.h WgmmaRingTile::kStages stages of one K tile and one V tile (128-byte-swizzled slabs, wgmma_sm90.cuh), then
// the mbarriers that hand them over: full and empty for each stage's K and for its V, q_full, and q_empty (which a
// kernel that loads Q more than once waits on before it does). Key tile i of a CTA goes to stage i % kStages; the
// parities to wait for are kernels/cuda/ws_ring.h's. One place for the layout, so the two kernels cannot disagree
// on it.
#pragma once

#include <cstdint>

#include "kernels/cuda/tma_sm90.cuh"
#include "kernels/cuda/wgmma_sm90.cuh"

namespace mlarun::ops::cuda::flash {

template <class Tile>
struct KvRing {
  static constexpr int kStages = Tile::kStages;
  uint32_t q;  // Q's slabs, 1024-byte aligned

  // `smem`: the dynamic shared memory's address; Tile::kSmemBytes leave room for aligning it.
  __device__ explicit KvRing(uint32_t smem)
      : q((smem + wgmma_sm90::kAtomBytes - 1) & ~(wgmma_sm90::kAtomBytes - 1)) {}

  __device__ uint32_t k(int stage) const {
    return q + uint32_t(Tile::kQBytes + stage * (Tile::kKBytes + Tile::kVBytes));
  }
  __device__ uint32_t v(int stage) const { return k(stage) + uint32_t(Tile::kKBytes); }
  __device__ uint32_t bars() const { return k(kStages); }
  // part 0: the stage's K, 1: its V.
  __device__ uint32_t full(int stage, int part) const { return bars() + 8 * (2 * stage + part); }
  __device__ uint32_t empty(int stage, int part) const { return bars() + 8 * (2 * kStages + 2 * stage + part); }
  __device__ uint32_t q_full() const { return bars() + 8 * (4 * kStages); }
  __device__ uint32_t q_empty() const { return bars() + 8 * (4 * kStages + 1); }

  // One thread: `fillers` arrivals complete a full phase (one per loading thread), `readers` an empty one (one per
  // computing thread). A __syncthreads follows before anyone uses them.
  __device__ void init(uint32_t fillers, uint32_t readers) const {
    for (int stage = 0; stage < kStages; ++stage)
      for (int part = 0; part < 2; ++part) {
        tma_sm90::mbarrier_init(full(stage, part), fillers);
        tma_sm90::mbarrier_init(empty(stage, part), readers);
      }
    tma_sm90::mbarrier_init(q_full(), fillers);
    tma_sm90::mbarrier_init(q_empty(), readers);
  }
};

}  // namespace mlarun::ops::cuda::flash
