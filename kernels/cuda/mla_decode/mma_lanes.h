// Where each lane of the tensor-core attend kernel (attend_mma.cu) points its ldmatrix loads, and which
// elements of an m16n8 accumulator it holds: plain arithmetic shared by the kernel and by the CPU test that
// replays the kernel's fragment traffic through an emulation of ldmatrix and mma.sync
// (tests/kernels/test_mla_decode_mma_lanes.cpp), so the index math is checked without a GPU.
// Tiles (config.h): 32 (query token, head) rows x 32 cached tokens per step, 8 warps.
#pragma once

#include <cstdint>

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
// A operand register i (0..3, ldmatrix.x4 at a_row / a_col): the first of its pair of k columns (row c_row(lane,
// 2 (i & 1)); the pair is k, k + 1). In P.V the k columns are tokens.
MLARUN_HOST_DEVICE constexpr int a_pair_tok(int lane, int i) { return (lane & 3) * 2 + (i >> 1) * 8; }
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
// The scores walk a warp's share [k0, k0 + len) (multiples of 32) in 32-value steps, in pieces that never straddle a
// 128-value scale tile of a quantized latent: each piece's products are summed unscaled and folded into the score
// once, times its tile's scale. A head up to the first tile boundary, whole tiles, a tail from the last boundary
// to the latent's end (share_latent_end), then the steps over k_pe. Compile-time bounds in the kernel.
MLARUN_HOST_DEVICE constexpr int share_latent_end(int k0, int len) {
  return k0 + len < kKvLoraRank ? k0 + len : kKvLoraRank;
}
MLARUN_HOST_DEVICE constexpr int share_head_end(int k0, int len) {
  const int boundary = (k0 + kQuantTile - 1) / kQuantTile * kQuantTile;
  const int lat_end = share_latent_end(k0, len) > k0 ? share_latent_end(k0, len) : k0;
  return boundary < lat_end ? boundary : lat_end;
}
MLARUN_HOST_DEVICE constexpr int share_tail_begin(int k0, int len) {
  const int boundary = share_latent_end(k0, len) / kQuantTile * kQuantTile;
  return boundary > share_head_end(k0, len) ? boundary : share_head_end(k0, len);
}
// P.V: warp w owns output columns [pv_col0(w), pv_col0(w) + 64) for all M / 16 row tiles, as in the 32-row kernel.

// ---- The fitted kernel over quantized rows, codes read into registers (quant_fragments.cuh) -----------------
// Scores: a lane's B fragment of one 16-value k-step (b0: k 2t, 2t + 1; b1: k 2t + 8, 2t + 9; t = lane % 4, token
// n = lane / 4) is the one 32-bit word of four codes at bytes code_word_byte(lane) .. + 3 of the step, which holds
// latent values 4t .. 4t + 3. So q's latent values are stored permuted within each 16-value group: value k at
// column q_code_col(k) of q's shared-memory row, where the A fragment's k 2t, 2t + 1, 2t + 8, 2t + 9 are.
MLARUN_HOST_DEVICE constexpr int q_code_col(int k) {
  return (k & ~15) + ((k >> 2) & 3) * 2 + (k & 1) + ((k >> 1) & 1) * 8;
}
MLARUN_HOST_DEVICE constexpr int code_word_tok(int lane) { return lane >> 2; }
MLARUN_HOST_DEVICE constexpr int code_word_byte(int lane) { return (lane & 3) * 4; }
// P.V: per 16-token k-step and 32-column half h of its warp's 64 columns, lane (g = lane / 4, t = lane % 4) reads
// the word at byte pv_code_byte(lane) of the half in the rows of tokens pv_code_tok(lane, r), r = 0..3 (k 2t,
// 2t + 1, 2t + 8, 2t + 9). Byte i of the first two words, paired (interleave_bytes_01 / _23), is n8 tile 4 h + i's
// b0 at n = g; of the last two, its b1. So the n8 tile j's column n is column pv_code_col(j, n) of the warp's 64,
// and a lane's accumulators of tiles 4 h .. 4 h + 3 hold 8 consecutive columns of each of its rows
// (pv_code_out_col).
MLARUN_HOST_DEVICE constexpr int pv_code_tok(int lane, int r) { return (lane & 3) * 2 + (r & 1) + (r >> 1) * 8; }
MLARUN_HOST_DEVICE constexpr int pv_code_byte(int lane) { return (lane >> 2) * 4; }
MLARUN_HOST_DEVICE constexpr int pv_code_col(int tile, int n) { return (tile >> 2) * 32 + n * 4 + (tile & 3); }
// Accumulator element e of n8 tile 4 h + i is value 4 (e & 1) + i of the 8 consecutive columns from
// pv_code_out_col(lane, h) that the lane stores for its row c_row(lane, e).
MLARUN_HOST_DEVICE constexpr int pv_code_out_col(int lane, int h) { return h * 32 + (lane & 3) * 8; }

// PTX prmt (CUDA's __byte_perm) with selector nibbles 0..7: byte i of the result is byte sel[i] of {b, a}.
MLARUN_HOST_DEVICE inline uint32_t byte_perm(uint32_t a, uint32_t b, uint32_t sel) {
#ifdef __CUDA_ARCH__
  return __byte_perm(a, b, sel);
#else
  const uint64_t x = (uint64_t(b) << 32) | a;
  uint32_t r = 0;
  for (int i = 0; i < 4; ++i) r |= uint32_t((x >> (8 * ((sel >> (4 * i)) & 7))) & 0xffu) << (8 * i);
  return r;
#endif
}
// Bytes 0, 1 of `lo` and `hi` interleaved as {lo_0, hi_0, lo_1, hi_1}, and bytes 2, 3 likewise: P.V pairs the
// codes of two tokens into one B register this way (lo: the lower token), and an int8 code gets its f16 exponent.
MLARUN_HOST_DEVICE inline uint32_t interleave_bytes_01(uint32_t lo, uint32_t hi) { return byte_perm(lo, hi, 0x5140); }
MLARUN_HOST_DEVICE inline uint32_t interleave_bytes_23(uint32_t lo, uint32_t hi) { return byte_perm(lo, hi, 0x7362); }
// int8 codes to f16 exactly: interleaving (codes ^ 0x80) with 0x64 bytes gives the f16 bits of 1024 + (code + 128),
// from which 1152 (f16 bits kInt8F16Bias) is subtracted.
constexpr uint32_t kInt8F16Exponents = 0x64646464u;
constexpr uint16_t kInt8F16Bias = 0x6480;

// Power-of-two units that keep f16 operands in range (f16 has 3 more mantissa bits than bf16, and a far narrower
// range).
// q over quantized rows: the row times 2^q_f16_exp puts its largest latent magnitude (|bf16| bits `abs_max`) in
// [2^14, 2^15); 0 for a row of zeros, inf or NaN; clamped to [-64, 64] so k_pe, kept as bf16, stays finite.
MLARUN_HOST_DEVICE constexpr int q_f16_exp(uint32_t abs_max) {
  const int field = int(abs_max >> 7);
  const int e = abs_max == 0 || field >= 255 ? 0 : 14 - (field - 127);
  return e < -64 ? -64 : e > 64 ? 64 : e;
}
// P times a token's scale over one 128-value tile of a stage: times 2^-E, E the exponent of the stage's largest
// scale there (f32 bits without the sign, `max_bits`), it is below 2; E = 0 for zero or non-finite scales (a NaN
// scale keeps P NaN); clamped to [-126, 126] so 2^E and 2^-E are normal floats.
MLARUN_HOST_DEVICE constexpr int scale_tile_exp(uint32_t max_bits) {
  const int field = int(max_bits >> 23);
  const int e = max_bits == 0 || field >= 255 ? 0 : field - 127;
  return e < -126 ? -126 : e > 126 ? 126 : e;
}

// ---- The softmax's row maximum (attend_common.cuh warp_max_by_key) ----------------------------------------------
// The float with bits `b` as an int whose signed order is the float's: negative values get their lower 31 bits
// flipped, so that a warp's maximum is one redux.sync.max.s32 instead of five shuffles and five FMNMX. Its own
// inverse. -0 orders just below +0; a NaN with the sign bit clear orders above +inf, one with it set below -inf.
MLARUN_HOST_DEVICE constexpr int32_t float_order_key(int32_t b) { return b ^ int32_t(uint32_t(b >> 31) >> 1); }

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
