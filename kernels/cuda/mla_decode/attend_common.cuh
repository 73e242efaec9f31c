// What the two MLA decode attend kernels share (attend.cu: SIMT, every cache format; attend_mma.cu: tensor
// cores, bf16): their arguments, the cached-row geometry per format, the tile loader of the two-stage cp.async
// ring (rows past the piece zero-filled, rows of a block outside the pool NaN and reported), the piece a CTA
// reads, and the online softmax of a warp's rows with the partial's lse.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/mla_decode/mla_decode.h"
#include "kernels/cuda/mla_decode/mma_lanes.h"
#include "kernels/cuda/mma_sm80.cuh"
#include "runtime/cuda_check.h"

namespace mlarun::ops::cuda::mla {

using Code = MlaDecodeStatus::Code;
using Format = MlaKvFormat;

// Bytes of a cached row in memory and in the shared-memory ring, and the ring's share of shared memory.
template <Format F>
struct RowOf {
  static constexpr int kBytes = kQuantRowBytes;
  static constexpr int kSmemStride = kQuantRowBytes;
  static constexpr size_t kSmemKv = kSmemKvQuantBytes;
  static constexpr size_t kSmem = kSmemQuantBytes;
};
template <>
struct RowOf<Format::Bf16> {
  static constexpr int kBytes = kHeadDimQK * 2;
  static constexpr int kSmemStride = kKvRowStride * 2;
  static constexpr size_t kSmemKv = kSmemKvBytes;
  static constexpr size_t kSmem = kSmemBytes;
};

struct AttendArgs {
  const uint16_t* q;                 // bf16 [num_tokens, H, 576]
  const unsigned char* kv_cache;     // [num_blocks, block_size] rows of RowOf<F>::kBytes
  const int32_t* block_tables;       // [batch, max_blocks_per_seq]
  const int32_t* seq_lens;           // [batch]
  const int32_t* cu_seqlens_q;       // [batch + 1]
  const int32_t* part_piece_begin;   // [num_parts + 1]
  const int4* pieces;                // [max_pieces]: {sequence, first tile, end tile, part}
  const int32_t* seq_piece_begin;    // [batch + 1]: a sequence with one piece gets no partial (piece_is_whole)
  float* lse_part;                   // [max_pieces, max_rows], log2 domain
  float* o_part;                     // [max_pieces, max_rows, 512]
  uint16_t* out;                     // bf16 [num_tokens, H, 512]: the final output of whole pieces
  float* lse;                        // [num_tokens, H], natural log: likewise
  int32_t* status;                   // [4]
  int num_heads, num_blocks, block_size, max_blocks_per_seq, max_rows;
  int block_shift;                   // log2(block_size) for a power of two, else -1 (cached_row)
  int l2_prefetch_tiles;             // MlaDecodeParams::l2_prefetch_tiles
  float scale_log2;                  // softmax_scale * log2(e)
};

__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

// Where the 16-byte piece at byte `off` of cached row `row` goes in a ring stage: rows kept whole, one after another.
// The loader asks in two parts (load_kv_row_chunks): lane_base once per thread (its row, its first piece), then
// piece kFirst + lane_chunk + kThreadsPerRow i at `piece<kThreadsPerRow, kFirst>(stage, base, i)`.
template <Format F>
struct WholeRows {
  __device__ __forceinline__ unsigned char* operator()(unsigned char* stage, int row, int off) const {
    return stage + row * RowOf<F>::kSmemStride + off;
  }
  __device__ __forceinline__ uint32_t lane_base(int row, int lane_chunk) const {
    return uint32_t(row * RowOf<F>::kSmemStride + 16 * lane_chunk);
  }
  template <int kThreadsPerRow, int kFirst>
  __device__ __forceinline__ unsigned char* piece(unsigned char* stage, uint32_t base, int i) const {
    return stage + base + 16 * (kFirst + kThreadsPerRow * i);
  }
};

// Token t's block id in `seq`'s table (`block`) and its cached row, or null when that id is outside the pool. A
// power-of-two block size (the usual 16, 64, 256) takes a shift; any other an unsigned division (t >= 0).
// table_block is the read (a kernel may issue it a tile ahead, load_kv_row_chunks_of_block), block_row the rest.
__device__ __forceinline__ unsigned block_index(const AttendArgs& a, int t) {
  return a.block_shift >= 0 ? unsigned(t) >> a.block_shift : unsigned(t) / unsigned(a.block_size);
}
__device__ __forceinline__ int32_t table_block(const AttendArgs& a, int seq, int t) {
  return __ldg(a.block_tables + int64_t(seq) * a.max_blocks_per_seq + block_index(a, t));
}
template <Format F>
__device__ __forceinline__ const unsigned char* block_row(const AttendArgs& a, int32_t block, int t) {
  if (block < 0 || block >= a.num_blocks) return nullptr;
  const unsigned in_block = unsigned(t) - block_index(a, t) * unsigned(a.block_size);
  return a.kv_cache + (int64_t(block) * a.block_size + in_block) * RowOf<F>::kBytes;
}
template <Format F>
__device__ __forceinline__ const unsigned char* cached_row(const AttendArgs& a, int seq, int t, int32_t& block) {
  block = table_block(a, seq, t);
  return block_row<F>(a, block, t);
}

// Issues the loads of tokens [tok0, tok0 + kRows) of `seq` into one ring stage (by kNumThreads threads, placed by
// `place`): a row at or past tok_end is zero-filled, a row whose block id is outside the pool becomes NaN (and is
// reported). A quantized row of zeros reads as zeros (scale 0); one of 0xff bytes reads as NaN (its scales are
// NaN), as does a bf16 row of 0x7fc0. Each thread serves one row (lanes::load_row / load_chunk in mma_lanes.h):
// one block-table read and one division by the block size per thread and tile, then straight-line cp.async. (One
// of each per 16-byte piece cost about 100 SASS instructions per piece, 18 pieces a thread per wgmma step.)
// load_kv_row_chunks does this for the 16-byte pieces [kFirstChunk, kFirstChunk + kChunks) of each row (the
// warp-specialized wgmma kernels load a stage half by half: attend_wgmma_ws.cuh); load_kv_rows for all of them.
// load_kv_row_chunks_of_block takes the thread's block-table entry read beforehand (row_block: any value for a row
// at or past tok_end), so that a kernel can issue that read a tile early and not wait on it.
template <int kRows, int kNumThreads>
__device__ __forceinline__ int32_t row_block(const AttendArgs& a, int seq, int tok0, int tok_end) {
  const int t = tok0 + lanes::load_row(kRows, kNumThreads, threadIdx.x);
  return t < tok_end ? table_block(a, seq, t) : 0;
}
template <Format F, int kRows, int kNumThreads, int kFirstChunk, int kChunks, class Place>
__device__ __forceinline__ void load_kv_row_chunks_of_block(const AttendArgs& a, unsigned char* stage, int seq,
                                                            int tok0, int tok_end, int32_t block, Place place) {
  constexpr int kIters = lanes::load_iters(kRows, kNumThreads, kChunks);
  static_assert(kNumThreads % kRows == 0, "whole threads per row");
  static_assert(kFirstChunk >= 0 && kFirstChunk + kChunks <= RowOf<F>::kBytes / 16, "pieces of the row");
  constexpr int kPerRow = lanes::load_threads_per_row(kRows, kNumThreads);
  const int row = lanes::load_row(kRows, kNumThreads, threadIdx.x);
  const int lane_chunk = lanes::load_chunk(kRows, kNumThreads, threadIdx.x, 0);
  const uint32_t base = place.lane_base(row, lane_chunk);
  const int t = tok0 + row;
  uint4 fill = make_uint4(0u, 0u, 0u, 0u);
  if (t < tok_end) {
    if (const unsigned char* src = block_row<F>(a, block, t)) {
      src += 16 * (kFirstChunk + lane_chunk);
#pragma unroll
      for (int i = 0; i < kIters; ++i) {
        const int c = lane_chunk + kPerRow * i;  // lanes::load_chunk
        if (kChunks % kPerRow == 0 || c < kChunks)
          cp_async_16(place.template piece<kPerRow, kFirstChunk>(stage, base, i), src + 16 * kPerRow * i);
      }
      return;
    }
    if (lane_chunk == 0 && atomicCAS(a.status, 0, Code::kBadBlockId) == 0) {
      a.status[1] = seq;
      a.status[2] = block;
    }
    fill = F == Format::Bf16 ? make_uint4(0x7fc07fc0u, 0x7fc07fc0u, 0x7fc07fc0u, 0x7fc07fc0u)  // bf16 NaN
                             : make_uint4(~0u, ~0u, ~0u, ~0u);  // NaN scales (and NaN e4m3 codes)
  }
#pragma unroll
  for (int i = 0; i < kIters; ++i) {
    const int c = lane_chunk + kPerRow * i;
    if (kChunks % kPerRow == 0 || c < kChunks)
      *reinterpret_cast<uint4*>(place.template piece<kPerRow, kFirstChunk>(stage, base, i)) = fill;
  }
}
template <Format F, int kRows, int kNumThreads, int kFirstChunk, int kChunks, class Place>
__device__ __forceinline__ void load_kv_row_chunks(const AttendArgs& a, unsigned char* stage, int seq, int tok0,
                                                   int tok_end, Place place) {
  load_kv_row_chunks_of_block<F, kRows, kNumThreads, kFirstChunk, kChunks>(
      a, stage, seq, tok0, tok_end, row_block<kRows, kNumThreads>(a, seq, tok0, tok_end), place);
}
template <Format F, int kRows = kBlockN, int kNumThreads = kThreads, class Place = WholeRows<F>>
__device__ __forceinline__ void load_kv_rows(const AttendArgs& a, unsigned char* stage, int seq, int tok0,
                                             int tok_end, Place place = {}) {
  load_kv_row_chunks<F, kRows, kNumThreads, 0, RowOf<F>::kBytes / 16>(a, stage, seq, tok0, tok_end, place);
}
// Asks L2 for the rows load_kv_rows would load for tokens [tok0, tok0 + kRows) (MlaDecodeParams::
// l2_prefetch_tiles): one bulk prefetch of a whole cached row by the thread that serves the row's first piece;
// rows past tok_end or in a block outside the pool are skipped (load_kv_rows reports those). A hint only: no
// shared memory, nothing to wait for.
template <Format F, int kRows = kBlockN, int kNumThreads = kThreads>
__device__ __forceinline__ void prefetch_kv_rows_l2(const AttendArgs& a, int seq, int tok0, int tok_end) {
  const int t = tok0 + lanes::load_row(kRows, kNumThreads, threadIdx.x);
  if (lanes::load_chunk(kRows, kNumThreads, threadIdx.x, 0) != 0 || t >= tok_end) return;
  int32_t block;
  const unsigned char* src = cached_row<F>(a, seq, t, block);
  if (src == nullptr) return;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(src), "n"(RowOf<F>::kBytes) : "memory");
#endif
}
// The 32-row kernels' tile: tokens [tok0, tok0 + kBlockN) by the CTA's kThreads threads, rows whole; the _of_block
// form with the thread's block-table entry read beforehand (row_block<kBlockN, kThreads>).
template <Format F>
__device__ __forceinline__ void load_kv_tile(const AttendArgs& a, unsigned char* stage, int seq, int tok0,
                                             int tok_end) {
  load_kv_rows<F>(a, stage, seq, tok0, tok_end);
}
template <Format F>
__device__ __forceinline__ void load_kv_tile_of_block(const AttendArgs& a, unsigned char* stage, int seq, int tok0,
                                                      int tok_end, int32_t block) {
  load_kv_row_chunks_of_block<F, kBlockN, kThreads, 0, RowOf<F>::kBytes / 16>(a, stage, seq, tok0, tok_end, block,
                                                                               WholeRows<F>{});
}

// 16 e4m3 codes -> 16 fp32, exactly (every e4m3 value is an fp16; NaN stays NaN). Byte i is value i.
__device__ __forceinline__ void fp8x16_to_f32(const uint4 v, float (&f)[16]) {
  const unsigned w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const __half2_raw lo_raw = __nv_cvt_fp8x2_to_halfraw2(__nv_fp8x2_storage_t(w[i] & 0xffffu), __NV_E4M3);
    const __half2_raw hi_raw = __nv_cvt_fp8x2_to_halfraw2(__nv_fp8x2_storage_t(w[i] >> 16), __NV_E4M3);
    const float2 lo = __half22float2(__half2(lo_raw)), hi = __half22float2(__half2(hi_raw));
    f[4 * i] = lo.x, f[4 * i + 1] = lo.y, f[4 * i + 2] = hi.x, f[4 * i + 3] = hi.y;
  }
}
// 4 int8 codes in a word -> fp32 (sign-extended by the arithmetic shift).
__device__ __forceinline__ void int8x4_to_f32(const unsigned w, float* f) {
#pragma unroll
  for (int b = 0; b < 4; ++b) f[b] = float(int32_t(w << (24 - 8 * b)) >> 24);
}
template <Format F>
__device__ __forceinline__ void codes16_to_f32(const uint4 v, float (&f)[16]) {
  if constexpr (F == Format::Fp8) {
    fp8x16_to_f32(v, f);
  } else {
    int8x4_to_f32(v.x, f), int8x4_to_f32(v.y, f + 4), int8x4_to_f32(v.z, f + 8), int8x4_to_f32(v.w, f + 12);
  }
}
// The tensor-core kernels' quantized tiles: the 512 codes of every row, widened to bf16 (exactly) into `codes`
// (rows kMmaCStride apart).
template <Format F>
__device__ __forceinline__ void widen_codes(const unsigned char* kv, uint16_t* codes, int tid) {
  constexpr int kChunks = kKvLoraRank / 16;  // 16 codes per 16-byte read
  for (int i = tid; i < kBlockN * kChunks; i += kThreads) {
    const int row = i / kChunks, c = (i % kChunks) * 16;
    float f[16];
    codes16_to_f32<F>(*reinterpret_cast<const uint4*>(kv + row * RowOf<F>::kSmemStride + c), f);
    uint4* dst = reinterpret_cast<uint4*>(codes + row * kMmaCStride + c);
    uint32_t packed[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) packed[i] = mma_sm80::pack2<__nv_bfloat16>(f[2 * i], f[2 * i + 1]);
    dst[0] = make_uint4(packed[0], packed[1], packed[2], packed[3]);
    dst[1] = make_uint4(packed[4], packed[5], packed[6], packed[7]);
  }
}

// Scale of 128-value tile t of cached row `row` of a quantized stage.
template <Format F>
__device__ __forceinline__ float row_scale(const unsigned char* kv, int row, int t) {
  return *reinterpret_cast<const float*>(kv + row * RowOf<F>::kSmemStride + kQuantScalesOffset + 4 * t);
}

// Piece `pi` as a CTA reads it: one sequence's query rows (row = token * H + head) over a run of its tiles.
struct PieceView {
  int seq, q_begin, n_q, rows, seq_len, tok_begin, tok_end, num_tiles;
};
__device__ __forceinline__ PieceView piece_view(const AttendArgs& a, int pi) {
  const int4 piece = a.pieces[pi];
  PieceView v;
  v.seq = piece.x;
  v.q_begin = a.cu_seqlens_q[v.seq];
  v.n_q = a.cu_seqlens_q[v.seq + 1] - v.q_begin;
  v.rows = v.n_q * a.num_heads;
  v.seq_len = a.seq_lens[v.seq];
  v.tok_begin = piece.y * kBlockN;
  v.tok_end = min(piece.z * kBlockN, v.seq_len);
  v.num_tiles = piece.z - piece.y;
  return v;
}

// The ring at tile `it` of a piece: queues tile it + 1 into the other stage (when there is one), waits for tile
// `it`, and returns its stage once every thread may read it (and, on the first tile, what was stored before).
template <Format F>
__device__ __forceinline__ const unsigned char* ring_tile(const AttendArgs& a, unsigned char* kv_s, int it,
                                                          const PieceView& pv) {
  constexpr int kStageBytes = kBlockN * RowOf<F>::kSmemStride;
  if (it + 1 < pv.num_tiles) {
    load_kv_tile<F>(a, kv_s + ((it + 1) % kKvStages) * kStageBytes, pv.seq, pv.tok_begin + (it + 1) * kBlockN,
                    pv.tok_end);
    cp_async_commit();
    cp_async_wait<1>();
  } else {
    cp_async_wait<0>();
  }
  __syncthreads();
  return kv_s + (it % kKvStages) * kStageBytes;
}

// The largest of the warp's values, by one redux.sync over lanes::float_order_key: on an H200 ten of the fitted fp8
// kernel's 25 hottest SASS lines were FMNMX, mostly of the shuffle tree (warp_max). A NaN with the sign bit clear
// wins here where fmaxf would drop it; the row it is in gets NaN either way (its p, so its l, is NaN).
__device__ __forceinline__ float warp_max_by_key(float v) {
  const int32_t top = __reduce_max_sync(0xffffffffu, lanes::float_order_key(__float_as_int(v)));
  return __int_as_float(lanes::float_order_key(top));
}

// The online softmax (base 2, fp32) of one warp's kRows rows warp + kWarps j of the CTA's M tile, one cached token
// per lane; a row sees tokens [tok_begin, visible) of the piece (causal among the queries). A fully masked row keeps
// m = -inf, l = 0 and gives p = 0, alpha = 0; a NaN score makes l NaN, which stays NaN. kLazySum keeps each lane's
// share of l and adds the lanes once, in finish, instead of once per tile (alpha is the same on every lane).
template <int kRows, bool kLazySum = false>
struct SoftmaxRowsOf {
  float m[kRows], l[kRows];
  int visible[kRows];

  __device__ __forceinline__ void start(const AttendArgs& a, const PieceView& pv, int row0, int warp) {
#pragma unroll
    for (int j = 0; j < kRows; ++j) {
      const int r = row0 + warp + kWarps * j;
      m[j] = -INFINITY;
      l[j] = 0.f;
      visible[j] = r < pv.rows ? min(pv.tok_end, pv.seq_len - pv.n_q + r / a.num_heads + 1) : 0;
    }
  }
  // Row j's raw scores for tokens tok0 + 32 i + lane (i < kN): sets their p and `alpha`, the factor for what came
  // before; one row maximum over all kN tokens.
  template <int kN>
  __device__ __forceinline__ void step_tokens(int j, const float (&score)[kN], int tok0, int lane, float scale_log2,
                                              float& alpha, float (&p)[kN]) {
    float sc[kN];
#pragma unroll
    for (int i = 0; i < kN; ++i) sc[i] = tok0 + 32 * i + lane < visible[j] ? score[i] * scale_log2 : -INFINITY;
    float top = sc[0];
#pragma unroll
    for (int i = 1; i < kN; ++i) top = fmaxf(top, sc[i]);
    const float m_new = fmaxf(m[j], warp_max_by_key(top));
    const float m_use = m_new == -INFINITY ? 0.f : m_new;
    float sum = 0.f;
#pragma unroll
    for (int i = 0; i < kN; ++i) {
      p[i] = exp2_ftz(sc[i] - m_use);  // one MUFU.EX2: exp2f adds a fix-up for results below 2^-126
      sum = i == 0 ? p[i] : sum + p[i];
    }
    alpha = exp2_ftz(m[j] - m_use);
    l[j] = l[j] * alpha + (kLazySum ? sum : warp_sum(sum));
    m[j] = m_new;
  }
  // The same for one token, tok0 + lane: returns its p.
  __device__ __forceinline__ float step(int j, float score, int tok0, int lane, float scale_log2, float& alpha) {
    const float scores[1] = {score};
    float p[1];
    step_tokens<1>(j, scores, tok0, lane, scale_log2, alpha, p);
    return p[0];
  }
  // Each row's lse (-inf for a row that saw no token) and 1 / l into inv_l_s: the final lse (natural log) of a
  // whole piece, else the piece's partial (log2).
  __device__ __forceinline__ void finish(const AttendArgs& a, int pi, const PieceView& pv, bool whole, int row0,
                                         int warp, int lane, float* inv_l_s) const {
#pragma unroll
    for (int j = 0; j < kRows; ++j) {
      const int r = warp + kWarps * j;
      const float lj = kLazySum ? warp_sum(l[j]) : l[j];
      if (lane == 0) {  // l == 0: no visible token. A NaN l (NaN in the cache) must stay NaN, so test == 0.
        inv_l_s[r] = lj == 0.f ? 0.f : 1.f / lj;
        const float lse2 = lj == 0.f ? -INFINITY : m[j] + log2f(lj);
        if (row0 + r >= pv.rows) continue;
        if (whole)
          a.lse[int64_t(pv.q_begin) * a.num_heads + row0 + r] = lse2 * 0.6931471805599453f;  // log2 -> ln
        else
          a.lse_part[int64_t(pi) * a.max_rows + row0 + r] = lse2;
      }
    }
  }
};
using SoftmaxRows = SoftmaxRowsOf<kScoreRowsPerWarp>;  // the 32-row kernels'

// Whether piece `pv` is its sequence's only one: it then writes the final bf16 output and lse itself and the
// combine skips the sequence (no fp32 partial written and read back).
__device__ __forceinline__ bool piece_is_whole(const AttendArgs& a, const PieceView& pv) {
  return a.seq_piece_begin[pv.seq + 1] - a.seq_piece_begin[pv.seq] == 1;
}

// kCount (2 or 8) consecutive output values of row `row` (of the sequence's rows) from column `col`, already
// divided by l: bf16 into the final output of a whole piece, else fp32 into piece pi's partial.
template <int kCount>
__device__ __forceinline__ void store_o(const AttendArgs& a, int pi, const PieceView& pv, bool whole, int row, int col,
                                        const float* v) {
  static_assert(kCount == 2 || kCount == 8, "one 32-bit or one 128-bit bf16 store");
  if (whole) {
    uint32_t packed[kCount / 2];
#pragma unroll
    for (int i = 0; i < kCount / 2; ++i) packed[i] = mma_sm80::pack2<__nv_bfloat16>(v[2 * i], v[2 * i + 1]);
    uint16_t* dst = a.out + (int64_t(pv.q_begin) * a.num_heads + row) * kHeadDimV + col;
    if constexpr (kCount == 8)
      *reinterpret_cast<uint4*>(dst) = make_uint4(packed[0], packed[1], packed[2], packed[3]);
    else
      *reinterpret_cast<uint32_t*>(dst) = packed[0];
  } else {
    float* dst = a.o_part + (int64_t(pi) * a.max_rows + row) * kHeadDimV + col;
    if constexpr (kCount == 8) {
      reinterpret_cast<float4*>(dst)[0] = make_float4(v[0], v[1], v[2], v[3]);
      reinterpret_cast<float4*>(dst)[1] = make_float4(v[4], v[5], v[6], v[7]);
    } else {
      *reinterpret_cast<float2*>(dst) = make_float2(v[0], v[1]);
    }
  }
}

// The mma.sync kernels' piece result: each thread's m16n8 accumulators acc[mt][nt] (rows mt * 16 + c_row of the
// CTA's tile, columns col0 + nt * 8 + c_col) divided by their row's l (inv_l_s) and stored as the final output of
// a whole piece or as its partial (store_o); rows past the sequence's `rows` are not stored.
template <int kMTiles, int kNTiles>
__device__ __forceinline__ void store_acc_rows(const AttendArgs& a, int pi, const PieceView& pv, bool whole,
                                               int row0, int lane, int col0, const float (&acc)[kMTiles][kNTiles][4],
                                               const float* inv_l_s) {
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
    for (int half = 0; half < 2; ++half) {  // accumulator elements {0, 1}, then {2, 3}: one row, two columns
      const int r = mt * 16 + lanes::c_row(lane, 2 * half);
      if (row0 + r >= pv.rows) continue;
      const float inv = inv_l_s[r];
#pragma unroll
      for (int nt = 0; nt < kNTiles; ++nt) {
        const float o[2] = {acc[mt][nt][2 * half] * inv, acc[mt][nt][2 * half + 1] * inv};
        store_o<2>(a, pi, pv, whole, row0 + r, col0 + nt * 8 + lanes::c_col(lane, 0), o);
      }
    }
}

// The kernels' view of checked params and the workspace's partial buffers.
inline AttendArgs attend_args(const MlaDecodeParams& p, const WorkspaceLayout& w) {
  auto* base = static_cast<unsigned char*>(p.workspace);
  AttendArgs a;
  a.q = p.q;
  a.kv_cache = static_cast<const unsigned char*>(p.kv_cache);
  a.block_tables = p.block_tables;
  a.seq_lens = p.seq_lens;
  a.cu_seqlens_q = p.cu_seqlens_q;
  a.part_piece_begin = reinterpret_cast<const int32_t*>(base + w.part_piece_begin);
  a.pieces = reinterpret_cast<const int4*>(base + w.pieces);
  a.seq_piece_begin = reinterpret_cast<const int32_t*>(base + w.seq_piece_begin);
  a.lse_part = reinterpret_cast<float*>(base + w.lse_part);
  a.o_part = reinterpret_cast<float*>(base + w.o_part);
  a.out = p.out;
  a.lse = p.lse;
  a.status = reinterpret_cast<int32_t*>(base + w.status);
  a.num_heads = p.num_heads;
  a.num_blocks = p.num_blocks;
  a.block_size = p.block_size;
  a.block_shift = -1;
  for (int shift = 0; shift < 31; ++shift)
    if (p.block_size == 1 << shift) a.block_shift = shift;
  a.max_blocks_per_seq = p.max_blocks_per_seq;
  a.max_rows = int(w.max_rows);
  a.l2_prefetch_tiles = p.l2_prefetch_tiles;
  a.scale_log2 = p.softmax_scale * 1.4426950408889634f;
  return a;
}

// The attend grid: parts x M tiles of the kernel that serves `p` (config.h attend_geometry).
inline dim3 attend_grid(const MlaDecodeParams& p, const WorkspaceLayout& w) {
  return dim3(unsigned(w.num_parts), unsigned(m_tiles(p.num_heads, p.max_q_per_seq, attend_geometry_of(p))));
}

}  // namespace mlarun::ops::cuda::mla
