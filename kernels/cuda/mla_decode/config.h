// Tile constants of the MLA decode kernels and the workspace layout that follows from them, kept apart from the
// kernels so a tuning change is a one-line diff (FlashMLA's config.h style) and so the host code, the tests and
// the workbench size buffers from the same numbers. Plain C++ (no CUDA types): .cpp files include it.
//
// The present version is the correct-first SIMT one (see NOTES.md in this folder): one CTA takes kRowsPerCta
// (query token, head) rows of one sequence over a contiguous chunk of its cache, streaming kBlockN cached rows
// at a time through a two-stage cp.async ring; the tensor-core version replaces the tile body, not this layout.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mlarun::ops::cuda::mla {

// ---- What the kernels support (absorbed DeepSeek-V2/V3 MLA: one latent "KV head") ------------------------
constexpr int kKvLoraRank = 512;                    // latent c, also V (the first 512 values of a cached row)
constexpr int kRopeDim = 64;                        // k_pe
constexpr int kHeadDimQK = kKvLoraRank + kRopeDim;  // 576 values per cached row and per query row
constexpr int kHeadDimV = kKvLoraRank;              // 512
constexpr int kMaxHeads = 128;
constexpr int kMaxQueriesPerSeq = 4;                // decode + up to 3 speculative (MTP) tokens
constexpr int kMaxBlockSize = 256;
constexpr int kMaxBatch = 8192;                     // the scheduler stages one int per sequence in shared memory
// Tokens one sequence may hold (max_blocks_per_seq * block_size, checked on the host): keeps every token and
// tile index of the kernels (piece end * kBlockN, tok0 + row) in int32 with room to spare. The scheduler's
// batch-wide sums (up to kMaxBatch * kMaxSeqLen / kBlockN + ...) are int64.
constexpr int64_t kMaxSeqLen = int64_t(1) << 30;
constexpr int kMaxSms = 1024;

// ---- Split-KV attend kernel --------------------------------------------------------------------------------
constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kBlockN = 32;                  // cached tokens per tile; the softmax gives one token to each lane
constexpr int kRowsPerCta = 32;              // M tile: (query token, head) rows, q folded as row = token * H + head
constexpr int kKvRowStride = kHeadDimQK + 8; // bf16 elements: a 16-byte pad makes lane-per-row reads conflict-free
constexpr int kKvStages = 2;                 // tile i+1 loads while tile i computes
constexpr int kCtasPerSm = 1;                // ~150 KB of shared memory per CTA
constexpr int kScoreRowsPerWarp = kRowsPerCta / kWarps;  // scores/softmax: warp w owns rows w + kWarps * j
constexpr int kAccCols = 8;                              // P.V: each thread owns kAccRows x kAccCols outputs
constexpr int kColGroups = kHeadDimV / kAccCols;         // 64
constexpr int kRowGroups = kThreads / kColGroups;        // 4
constexpr int kAccRows = kRowsPerCta / kRowGroups;       // 8 -> 64 fp32 accumulators per thread

constexpr size_t kSmemQBytes = size_t(kRowsPerCta) * kHeadDimQK * 4;             // q tile in fp32
constexpr size_t kSmemKvBytes = size_t(kKvStages) * kBlockN * kKvRowStride * 2;  // bf16 ring
constexpr size_t kSmemPBytes = size_t(kRowsPerCta) * kBlockN * 4;                // probabilities of one tile
constexpr size_t kSmemRowBytes = size_t(2) * kRowsPerCta * 4;                    // alpha and 1/l per row
constexpr size_t kSmemBytes = kSmemQBytes + kSmemKvBytes + kSmemPBytes + kSmemRowBytes;

// ---- Quantized cache rows (--kv-cache-dtype fp8|int8; byte layout in kernels/kv_quant.h) -------------------
// [512 codes | 4 f32 scales, one per 128-value tile | 64 bf16 k_pe] = 656 bytes. The ring keeps rows as stored
// (no padding: a 656-byte stride is 164 words, 4 mod 32, so eight lanes reading 16 bytes each from eight rows
// hit distinct banks) and dequantizes while computing: scores take one scale per tile of the dot product, P.V
// folds the scale into p. Everything else (tiles, softmax, partials) is the bf16 kernel's.
constexpr int kQuantTile = 128;
constexpr int kQuantTiles = kKvLoraRank / kQuantTile;                      // 4
constexpr int kQuantScalesOffset = kKvLoraRank;                            // bytes into the row
constexpr int kQuantRopeOffset = kQuantScalesOffset + 4 * kQuantTiles;     // 528
constexpr int kQuantRowBytes = kQuantRopeOffset + 2 * kRopeDim;            // 656
constexpr size_t kSmemKvQuantBytes = size_t(kKvStages) * kBlockN * kQuantRowBytes;
constexpr size_t kSmemQuantBytes = kSmemQBytes + kSmemKvQuantBytes + kSmemPBytes + kSmemRowBytes;
static_assert(kKvLoraRank % kQuantTile == 0, "whole tiles: every 8 or 16 codes a thread reads share one scale");
static_assert(kQuantRowBytes % 16 == 0 && kQuantRopeOffset % 16 == 0, "rows and k_pe move in 16-byte pieces");
static_assert(kSmemKvQuantBytes % 16 == 0, "16-byte aligned parts");

static_assert(kBlockN == 32, "the softmax maps one cached token to one lane");
static_assert(kRowsPerCta % kWarps == 0 && kScoreRowsPerWarp >= 1, "score rows split evenly over the warps");
static_assert(kHeadDimV % kAccCols == 0 && kThreads % kColGroups == 0, "P.V columns split evenly");
static_assert(kRowsPerCta % kRowGroups == 0, "P.V rows split evenly");
static_assert(kHeadDimQK % 8 == 0 && (kKvRowStride * 2) % 16 == 0, "rows are moved in 16-byte pieces");
static_assert((kBlockN * (kHeadDimQK / 8)) % kThreads == 0, "a KV tile is an exact number of 16-byte loads");
static_assert(kSmemQBytes % 16 == 0 && kSmemKvBytes % 16 == 0 && kSmemPBytes % 16 == 0, "16-byte aligned parts");
static_assert(kSmemBytes <= 227 * 1024, "shared memory per CTA is limited to 227 KB on H100");

// ---- The tensor-core attend kernel (attend_mma.cu; bf16 caches) ---------------------------------------------
// The same CTA tiling, workspace and partials as the SIMT kernel; both products on mma.sync m16n8k16 with fp32
// accumulators: q rows and cached rows as stored (bf16), P rounded to bf16 for P.V as FlashAttention and FlashMLA
// do. Every cache format. It ran the TP 8 shape 2.8x faster than the SIMT kernel on an H200; the fitted and
// wgmma kernels below, which AttendKernel::Auto picks between, are faster still (NOTES.md in this folder).
constexpr int kMmaQStride = kHeadDimQK + 8;  // bf16 q rows padded by 16 B: ldmatrix rows in distinct bank groups
constexpr int kMmaPStride = kBlockN + 8;     // bf16 P rows, likewise
constexpr int kMmaSStride = kBlockN + 1;     // fp32 scores
constexpr int kMmaColsPerWarp = kHeadDimV / kWarps;  // P.V: warp w owns output columns [64 w, 64 w + 64)
static_assert(kMmaColsPerWarp == 64, "mma_lanes.h pv_col0");
constexpr size_t kSmemMmaQBytes = size_t(kRowsPerCta) * kMmaQStride * 2;
constexpr size_t kSmemMmaSBytes = size_t(kRowsPerCta) * kMmaSStride * 4;
constexpr size_t kSmemMmaPBytes = size_t(kRowsPerCta) * kMmaPStride * 2;
constexpr size_t kSmemMmaBytes = kSmemMmaQBytes + kSmemKvBytes + kSmemMmaSBytes + kSmemMmaPBytes + kSmemRowBytes;
// Quantized rows (fp8/int8): each tile's codes are widened to bf16 in a buffer of their own (exactly: every e4m3
// and int8 value is a bf16), the scores take each 128-value tile's scale after its products, and P.V takes one
// P per tile with the token's scale folded in (4 P buffers): the same arithmetic as the SIMT kernel's.
constexpr int kMmaCStride = kKvLoraRank + 8;  // bf16 codes, rows padded by 16 B
constexpr size_t kSmemMmaCBytes = size_t(kBlockN) * kMmaCStride * 2;
constexpr size_t kSmemMmaQuantBytes = kSmemMmaQBytes + kSmemKvQuantBytes + kSmemMmaCBytes + kSmemMmaSBytes +
                                      kQuantTiles * kSmemMmaPBytes + kSmemRowBytes;
static_assert(kHeadDimQK % 32 == 0, "scores: two k-steps of 16 per ldmatrix of the cached rows");
static_assert(kRowsPerCta == 32 && kBlockN == 32 && kWarps == 8,
              "scores: the 2 x 4 tiles of 16 x 8 are one per warp; P.V: 2 m16 tiles x 8 n8 tiles per warp");
static_assert(kSmemMmaQBytes % 16 == 0 && kSmemMmaSBytes % 16 == 0 && kSmemMmaPBytes % 16 == 0,
              "16-byte aligned parts");
static_assert(kSmemMmaBytes <= 227 * 1024 && kSmemMmaQuantBytes <= 227 * 1024, "227 KB of shared memory per CTA");
static_assert(kSmemMmaCBytes % 16 == 0 && kSmemKvQuantBytes % 16 == 0, "16-byte aligned parts");
static_assert(kMmaColsPerWarp <= kQuantTile && kQuantTile % kMmaColsPerWarp == 0, "a warp's columns share a scale");

// ---- The fitted tensor-core attend kernel (attend_mma_fitted.cu; bf16 caches) ------------------------------------
// What ncu showed of the 32-row kernel on an H200 (NOTES.md): latency-bound, not memory- or math-bound, with one
// 8-warp CTA per SM, one tile in flight and each warp's scores one chain of 36 dependent MMAs; and at 16 heads half
// of its rows are padding. This kernel fits the M tile to the rows a sequence has (16, 32 or 64: no padding
// beyond one m16 tile up to 16 rows, each cached tile read once for 64 rows), splits each warp's scores into
// two accumulator chains (and the 576 values over two warps at 16 rows), rings three or four tiles (two CTAs per
// SM at 16 rows), waits on one barrier fewer per tile and sums each softmax row once per piece, not per tile.
// Every cache format. Off by default until a GPU has run its tests (MlaDecodeParams::attend).
constexpr int kFitRows[3] = {16, 32, 64};
constexpr int fit_rows_per_cta(int64_t rows) { return rows <= 16 ? 16 : rows <= 32 ? 32 : 64; }
constexpr int fit_stages(int m) { return m == 16 ? 2 : m == 32 ? 4 : 3; }       // ring depth
constexpr int fit_ctas_per_sm(int m) { return m == 16 ? 2 : 1; }                // 16 rows: 16 warps per SM
constexpr int fit_score_splits(int m) { return m == 16 ? 2 : 1; }               // warps sharing one tile's 576
constexpr size_t fit_smem_q_bytes(int m) { return size_t(m) * kMmaQStride * 2; }
constexpr size_t fit_smem_ring_bytes(int m) { return size_t(fit_stages(m)) * kBlockN * kKvRowStride * 2; }
constexpr size_t fit_smem_s_bytes(int m) { return size_t(fit_score_splits(m)) * m * kMmaSStride * 4; }
constexpr size_t fit_smem_p_bytes(int m) { return size_t(m) * kMmaPStride * 2; }
constexpr size_t fit_smem_bytes(int m) {
  return fit_smem_q_bytes(m) + fit_smem_ring_bytes(m) + fit_smem_s_bytes(m) + fit_smem_p_bytes(m) + size_t(2) * m * 4;
}
// Quantized rows (fp8/int8): the ring keeps the 656-byte rows, each tile's codes are widened to bf16 in a buffer
// of their own, and P.V takes one P per 128-value scale tile (the 32-row kernel's scheme).
constexpr size_t fit_smem_quant_bytes(int m) {
  return fit_smem_q_bytes(m) + size_t(fit_stages(m)) * kBlockN * kQuantRowBytes + kSmemMmaCBytes +
         fit_smem_s_bytes(m) + kQuantTiles * fit_smem_p_bytes(m) + size_t(2) * m * 4;
}
// Quantized rows with the codes read straight from the ring into the tensor cores' registers
// (MlaDecodeParams::codes_in_registers; quant_fragments.cuh): no bf16 copy of the codes and no barrier for it, so
// the ring deepens: at 16 rows four tiles instead of two (still two CTAs per SM), six and five at 32 and 64 rows
// (a 656-byte-row tile is 57 % of a bf16 one: this keeps as many cached tokens in flight as bf16's ring, or more).
constexpr int fit_stages_codes_in_registers(int m) { return m == 16 ? 4 : m == 32 ? 6 : 5; }
// MlaDecodeParams::codes_in_registers's default: on. On an H200 its tests pass (memcheck clean) and, with two tiles
// a step at 16 rows, it takes 0.57x the widening's time at the TP 8 shape over fp8 rows (bench_mla_decode's _reg
// rows; NOTES.md).
constexpr bool kCodesInRegisters = true;
// Cached tiles per step (between one opening barrier and the next): two at 16 rows over codes in registers, where
// an H200 ran the kernel latency-bound (0.41 instructions issued a cycle per scheduler, 4 warps each): each warp's
// q fragments serve a token tile of both, and the barriers, the row maxima and the scale exponents are taken once
// per 64 tokens. One elsewhere (the bf16 ring at 16 rows holds two tiles only). The fitted kernel asserts that a
// step's tiles are adjacent stages of its ring, and that a whole step loads while another computes.
constexpr int fit_step_tiles_codes_in_registers(int m) { return m == 16 ? 2 : 1; }
// One P per tile of the step (each warp scales it for its own columns' scale tile in registers).
constexpr size_t fit_smem_codes_in_registers_bytes(int m) {
  return fit_smem_q_bytes(m) + size_t(fit_stages_codes_in_registers(m)) * kBlockN * kQuantRowBytes +
         size_t(fit_step_tiles_codes_in_registers(m)) * (fit_smem_s_bytes(m) + fit_smem_p_bytes(m)) +
         size_t(2) * m * 4;
}
static_assert(fit_smem_bytes(16) * 2 + 2048 <= 228 * 1024 && fit_smem_quant_bytes(16) * 2 + 2048 <= 228 * 1024 &&
                  fit_smem_codes_in_registers_bytes(16) * 2 + 2048 <= 228 * 1024,
              "16 rows: two CTAs per SM (1 KB reserved per CTA)");
static_assert(fit_smem_bytes(32) <= 227 * 1024 && fit_smem_bytes(64) <= 227 * 1024 &&
                  fit_smem_quant_bytes(32) <= 227 * 1024 && fit_smem_quant_bytes(64) <= 227 * 1024 &&
                  fit_smem_codes_in_registers_bytes(32) <= 227 * 1024 &&
                  fit_smem_codes_in_registers_bytes(64) <= 227 * 1024,
              "227 KB per CTA");
static_assert(fit_smem_q_bytes(16) % 16 == 0 && fit_smem_s_bytes(16) % 16 == 0 && fit_smem_p_bytes(16) % 16 == 0,
              "16-byte aligned parts");

// ---- The Hopper attend kernel (attend_wgmma.cu; sm_90a, bf16 caches) ------------------------------------------
// 64 (query token, head) rows per CTA, 64 cached tokens per step, two warpgroups: each computes the 64 x 64 scores
// with wgmma from 128-byte-swizzled slabs (kernels/cuda/wgmma_sm90.cuh), keeps the softmax in registers and
// multiplies P (from registers) by its 256 of the 512 latent columns. Q and a two-stage ring of cached tiles fill
// shared memory: nine slabs of 64 x 64 bf16 each (MlaDecodeParams::attend; measured in NOTES.md).
constexpr int kWgRows = 64;
constexpr int kWgBlockN = 64;                                   // cached tokens per step (two scheduler tiles)
constexpr int kWgThreads = 256;                                 // two warpgroups
constexpr int kWgSlabs = kHeadDimQK / 64;                       // 9 slabs of 64 columns
constexpr size_t kWgSlabBytes = size_t(64) * 128;               // 64 rows (q rows or tokens) x 128 bytes
constexpr size_t kWgQBytes = kWgSlabs * kWgSlabBytes;           // 72 KB
constexpr size_t kWgStageBytes = kWgSlabs * kWgSlabBytes;       // 72 KB per cached tile
constexpr int kWgStages = 2;
constexpr size_t kWgSmemBytes = kWgQBytes + kWgStages * kWgStageBytes + 1024;  // + slack to align to 1024
static_assert(kWgBlockN == 2 * kBlockN, "a step is two of the scheduler's tiles");
static_assert(kHeadDimQK % 64 == 0 && kHeadDimV == 512, "nine slabs; two warpgroups of 256 columns");
// The split variant (AttendKernel::WgmmaSplit): each warpgroup scores 32 of the 64 tokens; P [64 x 64] bf16 in
// one more slab, row maxima and row sums exchanged through [2][64] floats each.
constexpr size_t kWgSplitSmemBytes = kWgSmemBytes + kWgSlabBytes + 2 * 2 * kWgRows * sizeof(float);
static_assert(kWgSplitSmemBytes <= 227 * 1024, "227 KB of shared memory per CTA");

// The warp-specialized variant (AttendKernel::WgmmaWarpSpecialized, attend_wgmma_ws.cu): a third warpgroup loads q
// and the cached tiles, and the two computing warpgroups (each scoring all 64 tokens, as the unsplit kernel) take
// them from the ring through mbarriers instead of CTA-wide barriers, so neither waits on the other: one's softmax
// can run under the other's MMAs. setmaxnreg moves registers from the loader to them.
constexpr int kWsThreads = 384;     // warpgroup 0 loads, warpgroups 1 and 2 compute
constexpr int kWsLoaderRegs = 56;   // per thread, after setmaxnreg (40 spilled the loader's loop)
constexpr int kWsMathRegs = 224;    // ptxas used 192 (warp-specialized) and 222 (seesaw) of them (2026-11-27)
constexpr int kWsBarriers = 10;     // mbarriers: full and empty of each half of the ring's two stages, q_full, q_empty
static_assert(128 * kWsLoaderRegs + 256 * kWsMathRegs <= 65536 / kWsThreads / 8 * 8 * kWsThreads,
              "setmaxnreg only moves the registers the CTA was launched with (65536 / 384, rounded down to 8)");

// ---- Which attend kernel, and the grid geometry that follows ------------------------------------------------
enum class AttendKernel : int32_t {
  Simt = 0,               // attend.cu: every format, fp32 FMAs
  TensorCores = 1,        // attend_mma.cu: 32-row M tiles, every format
  TensorCoresFitted = 2,  // attend_mma_fitted.cu: M tile fitted to the rows, every format
  Wgmma = 3,              // attend_wgmma.cu: Hopper, 64-row tiles (bf16; quantized rows as TensorCores)
  WgmmaSplit = 4,         // the same with each warpgroup scoring half of the tokens
  Auto = 5,               // the fastest one measured for the call's rows (auto_attend below)
  WgmmaWarpSpecialized = 6,  // Wgmma with a loading warpgroup and an mbarrier ring (after Auto: the values are
                             // the model's MLARUN_MLA_DECODE_KERNEL names, kernels/cuda/fast_attention.cpp)
  WgmmaSeesaw = 7,           // the same frame, the steps split between the two computing warpgroups (FlashMLA's)
};
constexpr AttendKernel kDefaultAttend = AttendKernel::Auto;  // MlaDecodeParams::attend
constexpr AttendKernel kLastAttendKernel = AttendKernel::WgmmaSeesaw;  // the largest value
// The wgmma kernels (sm_90a, bf16 rows; quantized rows asked of them run the 32-row kernel).
constexpr bool is_wgmma_attend(AttendKernel k) {
  return k == AttendKernel::Wgmma || k == AttendKernel::WgmmaSplit || k == AttendKernel::WgmmaWarpSpecialized ||
         k == AttendKernel::WgmmaSeesaw;
}

// Auto's choice, from the H100 workbench (NOTES.md): the fitted kernel at 16 rows (H x max_q; 1.95x the 32-row
// kernel at the TP 8 shape, where wgmma's 64-row tiles are three-quarters padding: 1.31x) and over quantized
// rows; the split wgmma kernel from 64 bf16 rows up (2.58x at 128 heads, 2.74x at 128 heads x 2 queries, against
// the fitted kernel's 1.45x and 1.53x) on a device that runs it. 17..63 rows were not measured; they take the
// fitted kernel, whose tile fits them.
inline AttendKernel auto_attend(bool quantized, int64_t num_heads, int64_t max_q, bool device_runs_wgmma) {
  if (device_runs_wgmma && !quantized && num_heads * max_q >= kWgRows) return AttendKernel::WgmmaSplit;
  return AttendKernel::TensorCoresFitted;
}

// Rows per CTA (the M tile) and CTAs per SM of the attend kernel that serves a call: the scheduler cuts the
// work into SMs x ctas_per_sm / m_tiles parts, and the grid is parts x m_tiles.
struct AttendGeometry {
  int rows_per_cta = kRowsPerCta, ctas_per_sm = kCtasPerSm;
};
// `kernel` is never Auto here: callers resolve it first (mla_decode.h resolve_attend).
inline AttendGeometry attend_geometry(AttendKernel kernel, bool quantized, int64_t num_heads, int64_t max_q) {
  if (kernel == AttendKernel::TensorCoresFitted) {
    const int m = fit_rows_per_cta(num_heads * max_q);
    return {m, fit_ctas_per_sm(m)};
  }
  if (is_wgmma_attend(kernel) && !quantized) return {kWgRows, 1};
  return {};  // SIMT, 32-row tensor cores, and quantized rows asked of the wgmma kernels
}

// ---- Scheduler and combine ---------------------------------------------------------------------------------
constexpr int kSchedThreads = 512;
// Cost of one (sequence, chunk) piece beyond its tiles, in tiles: loading q, writing the partial and merging it.
// The balance target is (tiles + kFixedCostTiles) per piece, the same for every CTA.
constexpr int kFixedCostTiles = 2;
constexpr int kCombineWarps = 4;  // one warp per (query token, head) row

// Row tiles a sequence with max_q queries needs: every part is served by this many CTAs (grid.y).
inline int64_t m_tiles(int64_t num_heads, int64_t max_q, AttendGeometry g = {}) {
  return (max_q * num_heads + g.rows_per_cta - 1) / g.rows_per_cta;
}
// Parts (grid.x): CTAs along the KV length, chosen so that parts x m_tiles fills the machine once.
inline int64_t num_parts(int64_t num_heads, int64_t max_q, int64_t num_sms, AttendGeometry g = {}) {
  const int64_t parts = num_sms * g.ctas_per_sm / m_tiles(num_heads, max_q, g);
  return parts > 0 ? parts : 1;
}

// Byte offsets of the workspace sections (each 256-byte aligned). A part boundary splits at most one sequence,
// so there are at most batch + num_parts - 1 pieces, each with one partial (o, lse) per row.
struct WorkspaceLayout {
  int64_t num_parts = 0, max_pieces = 0, max_rows = 0;
  size_t status = 0;            // int32 [4]: code, sequence, value (first device-side error), and 1 when
                                //   cu_seqlens_q cannot place the rows (every output row then gets NaN)
  size_t part_piece_begin = 0;  // int32 [num_parts + 1]: pieces of part p are [begin[p], begin[p+1])
  size_t seq_piece_begin = 0;   // int32 [batch + 1]: pieces of sequence b (piece order is sequence order)
  size_t seq_status = 0;        // int32 [batch]: 0 or the status code that made sequence b invalid
  size_t pieces = 0;            // int32x4 [max_pieces]: {sequence, first tile, end tile, part}
  size_t lse_part = 0;          // f32 [max_pieces, max_rows]: log2-domain lse of each partial row
  size_t o_part = 0;            // f32 [max_pieces, max_rows, kHeadDimV]: normalised partial outputs
  size_t total = 0;
};

inline WorkspaceLayout workspace_layout(int64_t batch, int64_t num_heads, int64_t max_q, int64_t num_sms,
                                        AttendGeometry g = {}) {
  auto align = [](size_t n) { return (n + 255) / 256 * 256; };
  WorkspaceLayout w;
  w.num_parts = num_parts(num_heads, max_q, num_sms, g);
  w.max_pieces = batch + w.num_parts;
  w.max_rows = max_q * num_heads;
  size_t at = 0;
  auto take = [&](size_t bytes) {
    size_t off = at;
    at += align(bytes);
    return off;
  };
  w.status = take(4 * sizeof(int32_t));
  w.part_piece_begin = take(size_t(w.num_parts + 1) * sizeof(int32_t));
  w.seq_piece_begin = take(size_t(batch + 1) * sizeof(int32_t));
  w.seq_status = take(size_t(batch) * sizeof(int32_t));
  w.pieces = take(size_t(w.max_pieces) * 4 * sizeof(int32_t));
  w.lse_part = take(size_t(w.max_pieces) * size_t(w.max_rows) * sizeof(float));
  w.o_part = take(size_t(w.max_pieces) * size_t(w.max_rows) * kHeadDimV * sizeof(float));
  w.total = at;
  return w;
}

}  // namespace mlarun::ops::cuda::mla
