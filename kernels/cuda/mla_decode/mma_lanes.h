// Where each lane of the tensor-core attend kernel (attend_mma.cu) points its ldmatrix loads, and which
// elements of an m16n8 accumulator it holds: plain arithmetic shared by the kernel and by the CPU test that
// replays the kernel's fragment traffic through an emulation of ldmatrix and mma.sync
// (tests/kernels/test_mla_decode_mma_lanes.cpp), so the index math is checked without a GPU.
// Tiles (config.h): 32 (query token, head) rows x 32 cached tokens per step, 8 warps.
#pragma once

#include "kernels/cuda/mla_decode/config.h"
#include "kernels/host_device.h"

namespace mlarun::ops::cuda::mla::lanes {

// Scores S[32 x 32] = Q . K^T: warp w owns the 16 x 8 tile at rows score_row0(w), tokens score_tok0(w).
MLARUN_HOST_DEVICE constexpr int score_row0(int warp) { return (warp >> 2) * 16; }
MLARUN_HOST_DEVICE constexpr int score_tok0(int warp) { return (warp & 3) * 8; }
// A operand (q rows, ldmatrix.x4): the lane's row within the 16-row tile and its column offset in a k-step.
MLARUN_HOST_DEVICE constexpr int a_row(int lane) { return lane & 15; }
MLARUN_HOST_DEVICE constexpr int a_col(int lane) { return (lane >> 4) * 8; }
// B operand of the scores (cached rows, ldmatrix.x4, not transposed): the lane's token within the 8-token tile
// and its column offset within a pair of k-steps (matrices: b0, b1 of step k, then b0, b1 of step k + 16).
MLARUN_HOST_DEVICE constexpr int k_tok(int lane) { return lane & 7; }
MLARUN_HOST_DEVICE constexpr int k_col(int lane) { return (lane >> 3) * 8; }
// P.V: warp w owns output columns [pv_col0(w), pv_col0(w) + 64), both 16-row tiles.
MLARUN_HOST_DEVICE constexpr int pv_col0(int warp) { return warp * 64; }
// B operand of P.V (cached rows as V, ldmatrix.x4.trans): the lane's token within a 16-token k-step and its
// column offset within a pair of n8 tiles (matrices: b0, b1 of the first tile, then of the second).
MLARUN_HOST_DEVICE constexpr int v_tok(int lane) { return (lane & 7) + ((lane >> 3) & 1) * 8; }
MLARUN_HOST_DEVICE constexpr int v_col(int lane) { return (lane >> 4) * 8; }
// Accumulator element e (0..3) of an m16n8 tile: row and column within the tile.
MLARUN_HOST_DEVICE constexpr int c_row(int lane, int e) { return (lane >> 2) + (e >> 1) * 8; }
MLARUN_HOST_DEVICE constexpr int c_col(int lane, int e) { return (lane & 3) * 2 + (e & 1); }

// ---- The fitted kernel (attend_mma_fitted.cu): M = 16, 32 or 64 rows x 32 tokens per step, 8 warps ----------
// Scores: the (M / 16) x 4 tiles of 16 x 8 go to the warps, fit_warps_per_mtile(M) per m16 tile. Four or more
// warps on one m16 tile take one token tile each and split the 576 values between them (fit_k0 .. + fit_k_len);
// two take two token tiles each over all 576 (so one q fragment serves two tiles).
MLARUN_HOST_DEVICE constexpr int fit_warps_per_mtile(int m) { return 8 / (m / 16); }
MLARUN_HOST_DEVICE constexpr int fit_tok_tiles_per_warp(int m) { return fit_warps_per_mtile(m) >= 4 ? 1 : 2; }
MLARUN_HOST_DEVICE constexpr int fit_k_splits(int m) {
  return fit_warps_per_mtile(m) >= 4 ? fit_warps_per_mtile(m) / 4 : 1;
}
MLARUN_HOST_DEVICE constexpr int fit_k_len(int m) { return kHeadDimQK / fit_k_splits(m); }
MLARUN_HOST_DEVICE constexpr int fit_score_row0(int m, int warp) { return (warp / fit_warps_per_mtile(m)) * 16; }
MLARUN_HOST_DEVICE constexpr int fit_score_tok0(int m, int warp) {
  return (warp % fit_warps_per_mtile(m)) % (4 / fit_tok_tiles_per_warp(m)) * fit_tok_tiles_per_warp(m) * 8;
}
MLARUN_HOST_DEVICE constexpr int fit_k_split(int m, int warp) {  // which share of the 576 values (score buffer)
  return (warp % fit_warps_per_mtile(m)) / (4 / fit_tok_tiles_per_warp(m));
}
MLARUN_HOST_DEVICE constexpr int fit_k0(int m, int warp) { return fit_k_split(m, warp) * fit_k_len(m); }
// P.V: warp w owns output columns [pv_col0(w), pv_col0(w) + 64) for all M / 16 row tiles, as in the 32-row kernel.

// ---- The cached-row loader of every attend kernel (attend_common.cuh load_kv_rows) --------------------------
// `threads` threads load `rows` rows of `chunks` 16-byte pieces: thread t serves row t / (threads / rows) and its
// pieces t % (threads / rows) + i * (threads / rows) for i < load_iters (the last ones past `chunks` skipped), so a
// warp reads whole 64- or 128-byte runs of 8 or 4 rows and each thread looks its row's block up once.
MLARUN_HOST_DEVICE constexpr int load_threads_per_row(int rows, int threads) { return threads / rows; }
MLARUN_HOST_DEVICE constexpr int load_iters(int rows, int threads, int chunks) {
  return (chunks + load_threads_per_row(rows, threads) - 1) / load_threads_per_row(rows, threads);
}
MLARUN_HOST_DEVICE constexpr int load_row(int rows, int threads, int tid) {
  return tid / load_threads_per_row(rows, threads);
}
MLARUN_HOST_DEVICE constexpr int load_chunk(int rows, int threads, int tid, int i) {
  return tid % load_threads_per_row(rows, threads) + i * load_threads_per_row(rows, threads);
}

}  // namespace mlarun::ops::cuda::mla::lanes
