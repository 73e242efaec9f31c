// Tile constants of the flash prefill kernel, one row per supported (d_qk, d_v) pair, kept apart from the kernel
// so a tuning change is a one-line diff (FlashMLA's config.h style). Stage A of the plan in NOTES.md (this
// folder): mma.sync m16n8k16, one 16-row MMA tile of queries per warp
// ("split-Q": no cross-warp reduction), a single K and a single V buffer in swizzled shared memory, loaded with
// cp.async so that V(j) arrives during S = Q K(j)^T and K(j-1) during O += P V(j).
// Plain C++ (no CUDA types): the host dispatch and the tests include it to name the supported pairs.
#pragma once

namespace mlarun::ops::cuda::flash {

// FlashPrefillParams::longest_first's default for stage A's kernel: on since the flash tests passed with it on an
// H200 and the workbench's varlen batch ran 4.5% faster in that order (NOTES.md in this folder).
constexpr bool kLongestFirst = true;
// ... and for the wgmma kernel: off, as that batch ran 6-8% slower longest first on an H100 and, in three runs of
// the kernel as it is now, on an H200 (NOTES.md).
constexpr bool kLongestFirstWgmma = false;

// kBlockM query rows x kBlockN key rows per iteration; kWarps = kBlockM / 16 (one m16 tile per warp).
// Shared memory = (kBlockM + kBlockN) * d_qk * 2 B + kBlockN * d_v * 2 B (single stage).
template <int kHeadDimQK, int kHeadDimV>
struct TileConfig;

// MLA naive prefill: 128 x 64, 8 warps; smem 48 + 24 + 16 = 88 KB -> 2 CTAs per SM.
template <> struct TileConfig<192, 128> { static constexpr int kBlockM = 128, kBlockN = 64; };
// hdim 128: 128 x 64, 8 warps; smem 32 + 16 + 16 = 64 KB -> 3 CTAs per SM.
template <> struct TileConfig<128, 128> { static constexpr int kBlockM = 128, kBlockN = 64; };
// hdim 64: 128 x 128, 8 warps; smem 16 + 16 + 16 = 48 KB.
template <> struct TileConfig<64, 64> { static constexpr int kBlockM = 128, kBlockN = 128; };
// hdim 256: 64 x 64, 4 warps (the O accumulator is 128 fp32 registers per thread); smem 32 + 32 + 32 = 96 KB.
template <> struct TileConfig<256, 256> { static constexpr int kBlockM = 64, kBlockN = 64; };

// Derived quantities and the invariants the kernel's index math relies on.
template <int kHeadDimQK, int kHeadDimV>
struct Traits : TileConfig<kHeadDimQK, kHeadDimV> {
  using Tile = TileConfig<kHeadDimQK, kHeadDimV>;
  static constexpr int kDQK = kHeadDimQK, kDV = kHeadDimV;
  static constexpr int kWarps = Tile::kBlockM / 16;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kSmemQ = Tile::kBlockM * kDQK;  // elements
  static constexpr int kSmemK = Tile::kBlockN * kDQK;
  static constexpr int kSmemV = Tile::kBlockN * kDV;
  static constexpr int kSmemBytes = (kSmemQ + kSmemK + kSmemV) * 2;
  // __launch_bounds__ minimum CTAs per SM. 1 lets ptxas use up to 255 registers (182-246 today, no spills);
  // 2 caps 8-warp CTAs at 128 registers, which spills 40-64 bytes per thread as the code stands (sm_90a, nvcc 13.0).
  static constexpr int kMinBlocksPerSm = 1;

  // The XOR swizzle permutes the 8 16-byte chunks of every 128-byte row segment: dims must be multiples of 64.
  static_assert(kDQK % 64 == 0 && kDV % 64 == 0, "head dims must be multiples of 64");
  // The output is staged through the Q buffer with Q's row stride.
  static_assert(kDV <= kDQK, "d_v must not exceed d_qk");
  static_assert(Tile::kBlockM % 16 == 0 && Tile::kBlockN % 16 == 0, "tiles are made of 16x16 MMA blocks");
  static_assert(kThreads <= 256, "one CTA holds at most 8 warps here");
  static_assert(kSmemBytes <= 227 * 1024, "shared memory per CTA is limited to 227 KB on H100");
};

// ---- The Hopper kernel (kernel_wgmma.cuh; sm_90a) ----------------------------------------------------------------
// FlashPrefillParams::wgmma's default: on. On an H100 it passed every flash test and compute-sanitizer, and ran
// 1.36-1.69x stage A's TFLOP/s on every workbench shape (NOTES.md).
constexpr bool kWgmmaPrefill = true;
// 128 query rows per CTA, two warpgroups of 64 rows each (wgmma's M), kBlockN keys per step; Q, K and V in
// 128-byte-swizzled slabs of 64 columns (kernels/cuda/wgmma_sm90.cuh), one buffer each, loaded as stage A loads
// them. Registers per thread: S kBlockN / 2, O d_v / 2, P kBlockN / 4.
template <int kHeadDimQK, int kHeadDimV>
struct WgmmaTile {
  static constexpr int kBlockM = 128, kBlockN = kHeadDimV > 128 ? 64 : 128, kThreads = 256;
  static constexpr int kSmemBytes = (kBlockM + kBlockN) * kHeadDimQK * 2 + kBlockN * kHeadDimV * 2 + 1024;
  static_assert(kHeadDimQK % 64 == 0 && kHeadDimV % 64 == 0, "whole slabs of 64 columns");
  static_assert(kSmemBytes <= 227 * 1024, "227 KB of shared memory per CTA");
};

// Q and a two-stage ring of K and V tiles in shared memory, K and V of a stage each with a `full` and an `empty`
// mbarrier (kv_ring.cuh): what the two ring kernels below share. Head dims up to 128 for V (192/128, 128/128,
// 64/64): at d_v 256 a computing thread holds 128 output accumulators, and ptxas serialized the ring kernels' wgmma
// and spilled about 1 KB (the wgmma kernel above takes 254 registers there), so that pair keeps the kernel above.
template <int kHeadDimQK, int kHeadDimV>
struct WgmmaRingTile : WgmmaTile<kHeadDimQK, kHeadDimV> {
  using Base = WgmmaTile<kHeadDimQK, kHeadDimV>;
  static constexpr int kStages = 2;
  static_assert(kHeadDimV <= 128, "d_v up to 128");
  static constexpr int kQBytes = Base::kBlockM * kHeadDimQK * 2;
  static constexpr int kKBytes = Base::kBlockN * kHeadDimQK * 2, kVBytes = Base::kBlockN * kHeadDimV * 2;
  static constexpr int kBarriers = 4 * kStages + 2;  // full[stage][K, V], empty[stage][K, V], q_full, q_empty
  static constexpr int kSmemBytes = kQBytes + kStages * (kKBytes + kVBytes) + 1024 + 8 * kBarriers;
  static_assert(kSmemBytes <= 227 * 1024, "227 KB of shared memory per CTA");
};

// The warp-specialized variant (FlashPrefillParams::warp_specialized, kernel_wgmma_ws.cuh): the same tiles and
// computing warpgroups, with a third warpgroup that loads Q once and K and V into the ring. Off by default: on an
// H200 it passed its tests and sanitizers but ran 0.90-0.97x the kernel above at d_v 128 (1.04-1.07x at 64/64;
// NOTES.md).
constexpr bool kWarpSpecializedPrefill = false;
template <int kHeadDimQK, int kHeadDimV>
struct WgmmaWsTile : WgmmaRingTile<kHeadDimQK, kHeadDimV> {
  static constexpr int kThreads = 384;
  // Registers per thread after setmaxnreg, and the loader's load passes unrolled (all of them spilled at 56).
  static constexpr int kLoaderRegs = 56, kMathRegs = 224, kLoaderUnroll = 4;
  static_assert(128 * kLoaderRegs + 256 * kMathRegs <= 65536 / kThreads / 8 * 8 * kThreads,
                "setmaxnreg only moves the registers the CTA was launched with (65536 / 384, rounded down to 8)");
};

// The pipelined variant (FlashPrefillParams::pipelined, kernel_wgmma_pipelined.cuh): the same ring, no loading
// warps (two warpgroups, so 255 registers a thread at launch), each warpgroup's scores of the next key tile and
// P V of this one in flight together. Off in FlashPrefillParams; the model's default kernel choice (`auto`,
// kernels/cuda/fast_attention.cpp) takes it with turns where pipelined_prefill_by_default says (NOTES.md, H200
// 2026-11-27: 1.07-1.09x the wgmma kernel at 192/128, 0.94-0.96x at 128/128, 0.76-0.82x at 64/64).
constexpr bool kPipelinedPrefill = false;
constexpr bool pipelined_prefill_by_default(int head_dim_qk, int head_dim_v) {
  return head_dim_qk > 128 && head_dim_v <= 128;
}
// ... and its warpgroups' turns at the tensor cores (FlashPrefillParams::pingpong): off in FlashPrefillParams, on in
// `auto` (on an H200: 0.99-1.01x the kernel without turns at 192/128, 1.07-1.08x at 64/64).
constexpr bool kPingPongPrefill = false;
// ... and its persistent grid (FlashPrefillParams::persistent: -1 a CTA per SM): off (0); it ran 0.56-0.97x the
// wgmma kernel on an H200 (a CTA takes every gridDim.x-th tile, so the causal tiles' lengths do not even out).
constexpr int kPersistentPrefill = 0;
// ... and its tile order when FlashPrefillParams::longest_first is -1: the list without empty m-blocks, every head
// of a tile together (4), where the batch's query lengths differ (the workbench's varlen batch: 0.90-0.92 of the
// uniform batch's TFLOP/s against 0.86-0.87 in the plain order, H200), else the plain grid.
constexpr int kPipelinedVarlenOrder = 4;
template <int kHeadDimQK, int kHeadDimV>
struct WgmmaPipelinedTile : WgmmaRingTile<kHeadDimQK, kHeadDimV> {
  static constexpr int kThreads = 256;
};

// The (d_qk, d_v) pairs that have an instantiation (one .cu each per dtype).
struct HeadDims {
  int qk, v;
};
inline constexpr HeadDims kSupportedHeadDims[] = {{192, 128}, {128, 128}, {64, 64}, {256, 256}};

}  // namespace mlarun::ops::cuda::flash
