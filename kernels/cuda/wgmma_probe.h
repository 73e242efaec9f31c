// First light for the wgmma layer (kernels/cuda/wgmma_sm90*.cuh): three small products on one CTA that exercise
// exactly what the Hopper attention kernels build on, so a GPU session learns in seconds whether the descriptors,
// swizzle, fragment maps and fences are right before a kernel's larger failure has to be read:
//   Scores        S[64 x 64] = Q[64 x 576] . K[64 x 576]^T: both operands K-major in nine slabs (ss, N 64);
//   PV            O[64 x 512] = P[64 x 64] . V[64 x 512]: P from registers, V N-major in eight slabs, two
//                 warpgroups of 256 columns each (rs, N 256, B transposed);
//   Attention     O = bf16(S / 32) . V with S of the first product kept in registers and turned into P fragments,
//                 V the first 512 columns of K (the MLA decode step's two products over one 64-token tile);
//   Scores by TMA the keys gathered from a paged pool by TMA copies counted on an mbarrier (wgmma_tma_probe).
// Plain C++ header. Device pointers, bf16 as raw 16-bit patterns, row-major; out is fp32 row-major.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace mlarun::ops::cuda {

enum class WgmmaProbe { Scores, PV, Attention };
constexpr int kProbeRows = 64, kProbeTokens = 64, kProbeDimQK = 576, kProbeDimV = 512;
constexpr float kProbeScoreScale = 1.0f / 32;  // Attention: P = bf16(S * this)

// Scores: a = Q [64 x 576], b = K [64 x 576], out [64 x 64]. PV: a = P [64 x 64], b = V [64 x 512], out [64 x 512].
// Attention: a = Q [64 x 576], b = K [64 x 576] (V = its first 512 columns), out [64 x 512]. Synchronous; throws
// mlarun::Error on a CUDA error.
void wgmma_probe(WgmmaProbe which, const uint16_t* a, const uint16_t* b, float* out);

// Scores again, the keys copied by TMA (kernels/cuda/tma_sm90.cuh, tma_map.h) from a paged pool of bf16 rows
// [pool_rows x 576] as the latent cache holds them: `runs` runs of box_rows rows (64 rows in all; box_rows a
// multiple of 8), run j from pool row first_row[j], each as nine boxes of 64 columns into the key slabs, all
// counted on one mbarrier by the thread that issues them; the other warpgroup waits on the barrier and computes
// S = Q . K^T. q [64 x 576], out [64 x 64]. Synchronous; throws mlarun::Error on a bad layout or a CUDA error.
struct TmaProbeKeys {
  const uint16_t* pool = nullptr;
  int64_t pool_rows = 0;
  int box_rows = 0, runs = 0;
  int32_t first_row[8] = {};
};
void wgmma_tma_probe(const uint16_t* q, const TmaProbeKeys& keys, float* out);

}  // namespace mlarun::ops::cuda
