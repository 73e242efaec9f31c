// The MLA decode attend kernel, correct-first SIMT version. CTA (part, m_tile) walks the pieces the scheduler gave
// its part; for each piece (one sequence, a contiguous run of kBlockN-token tiles) it keeps kRowsPerCta
// (query token, head) rows of q in shared memory and streams the cached 576-value rows through a two-stage
// cp.async ring, so every cached row is fetched from memory once per CTA and serves all of its rows:
//   scores  warp w, lane n: rows w + 8j against token n (fp32 dot over 576, bf16 widened exactly);
//   softmax online, in registers of the owning warp, base 2 (scores pre-scaled by scale * log2 e);
//   P.V     thread (row group, column group) accumulates 8 rows x 8 of the 512 columns in fp32 registers.
// Each piece ends with a partial: o / l (fp32) and lse = m + log2 l (log2 domain), or 0 and -inf for a row that
// saw no token. The combine kernel merges the partials. Tokens past a piece's end are zero-filled in shared
// memory and masked; slots past seq_len are never read, so NaN there cannot leak. Tensor cores (mma.sync, then
// wgmma) replace the two inner loops later; the tiling and the partial format stay.
// One kernel per cache format (MlaKvFormat): bf16 rows, or the 656-byte fp8/int8 rows of kernels/kv_quant.h,
// which stay quantized in shared memory (half the bytes in flight) and are dequantized in the two inner loops:
// the score takes one scale per 128-value tile of its dot product, P.V multiplies the scale into p.
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cmath>

#include <cuda_runtime_api.h>

#include "runtime/cuda_check.h"
#include "runtime/error.h"
#include "kernels/cuda/mla_decode/mla_decode.h"

namespace mlarun::ops::cuda {
namespace {

using namespace mla;
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
  const int4* pieces;                // [max_pieces]: {sequence, first tile, end tile, 0}
  float* lse_part;                   // [max_pieces, max_rows], log2 domain
  float* o_part;                     // [max_pieces, max_rows, 512]
  int32_t* status;                   // [4]
  int num_heads, num_blocks, block_size, max_blocks_per_seq, max_rows;
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

// 8 bf16 (one 16-byte load) -> 8 fp32, exactly: a bf16 is the upper half of an fp32.
__device__ __forceinline__ void bf16x8_to_f32(const uint4 v, float (&f)[8]) {
  const unsigned w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(w[i] << 16);
    f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
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
template <Format F>
__device__ __forceinline__ void codes8_to_f32(const uint2 v, float (&f)[8]) {
  if constexpr (F == Format::Fp8) {
    float f16[16];
    fp8x16_to_f32(make_uint4(v.x, v.y, 0u, 0u), f16);
#pragma unroll
    for (int i = 0; i < 8; ++i) f[i] = f16[i];
  } else {
    int8x4_to_f32(v.x, f), int8x4_to_f32(v.y, f + 4);
  }
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Issues the loads of tokens [tok0, tok0 + kBlockN) of `seq` into one ring stage: a row at or past tok_end is
// zero-filled, a row whose block id is outside the pool becomes NaN (and is reported). A quantized row of zeros
// reads as zeros (scale 0); one of 0xff bytes reads as NaN (its scales are NaN), as does a bf16 row of 0x7fc0.
template <Format F>
__device__ __forceinline__ void load_kv_tile(const AttendArgs& a, unsigned char* stage, int seq, int tok0,
                                             int tok_end) {
  constexpr int kChunksPerRow = RowOf<F>::kBytes / 16;  // 16-byte pieces per cached row
  constexpr int kChunks = kBlockN * kChunksPerRow;
  const int32_t* table = a.block_tables + int64_t(seq) * a.max_blocks_per_seq;
#pragma unroll
  for (int i = 0; i < (kChunks + kThreads - 1) / kThreads; ++i) {
    const int c = threadIdx.x + i * kThreads;
    if (kChunks % kThreads != 0 && c >= kChunks) break;
    const int row = c / kChunksPerRow, off = (c % kChunksPerRow) * 16;
    unsigned char* dst = stage + row * RowOf<F>::kSmemStride + off;
    const int t = tok0 + row;
    uint4 fill = make_uint4(0u, 0u, 0u, 0u);
    if (t < tok_end) {
      const int32_t block = __ldg(table + t / a.block_size);
      if (block >= 0 && block < a.num_blocks) {
        cp_async_16(dst, a.kv_cache + (int64_t(block) * a.block_size + t % a.block_size) * RowOf<F>::kBytes + off);
        continue;
      }
      if (off == 0 && atomicCAS(a.status, 0, Code::kBadBlockId) == 0) {
        a.status[1] = seq;
        a.status[2] = block;
      }
      fill = F == Format::Bf16 ? make_uint4(0x7fc07fc0u, 0x7fc07fc0u, 0x7fc07fc0u, 0x7fc07fc0u)  // bf16 NaN
                               : make_uint4(~0u, ~0u, ~0u, ~0u);  // NaN scales (and NaN e4m3 codes)
    }
    *reinterpret_cast<uint4*>(dst) = fill;
  }
}

// s[j] += q[row j of this warp] . the cached row (576 values) of this lane's token.
template <Format F>
__device__ __forceinline__ void score_row(const unsigned char* kv_row, const float* q_s, int warp,
                                          float (&s)[kScoreRowsPerWarp]) {
  if constexpr (F == Format::Bf16) {
    const uint16_t* k_row = reinterpret_cast<const uint16_t*>(kv_row);
#pragma unroll 4
    for (int k = 0; k < kHeadDimQK; k += 8) {
      float kf[8];
      bf16x8_to_f32(*reinterpret_cast<const uint4*>(k_row + k), kf);
#pragma unroll
      for (int j = 0; j < kScoreRowsPerWarp; ++j) {
        const float4 qa = *reinterpret_cast<const float4*>(q_s + (warp + kWarps * j) * kHeadDimQK + k);
        const float4 qb = *reinterpret_cast<const float4*>(q_s + (warp + kWarps * j) * kHeadDimQK + k + 4);
        s[j] = fmaf(qa.x, kf[0], fmaf(qa.y, kf[1], fmaf(qa.z, kf[2], fmaf(qa.w, kf[3], s[j]))));
        s[j] = fmaf(qb.x, kf[4], fmaf(qb.y, kf[5], fmaf(qb.z, kf[6], fmaf(qb.w, kf[7], s[j]))));
      }
    }
  } else {
    // The latent: per 128-value tile, q . codes, then times the tile's scale (NaN scale -> NaN score).
#pragma unroll
    for (int t = 0; t < kQuantTiles; ++t) {
      float st[kScoreRowsPerWarp];
#pragma unroll
      for (int j = 0; j < kScoreRowsPerWarp; ++j) st[j] = 0.f;
#pragma unroll 2
      for (int k = t * kQuantTile; k < (t + 1) * kQuantTile; k += 16) {
        float kf[16];
        codes16_to_f32<F>(*reinterpret_cast<const uint4*>(kv_row + k), kf);
#pragma unroll
        for (int j = 0; j < kScoreRowsPerWarp; ++j) {
          const float* qr = q_s + (warp + kWarps * j) * kHeadDimQK + k;
#pragma unroll
          for (int e = 0; e < 16; e += 4) {
            const float4 qa = *reinterpret_cast<const float4*>(qr + e);
            st[j] = fmaf(qa.x, kf[e], fmaf(qa.y, kf[e + 1], fmaf(qa.z, kf[e + 2], fmaf(qa.w, kf[e + 3], st[j]))));
          }
        }
      }
      const float scale = *reinterpret_cast<const float*>(kv_row + kQuantScalesOffset + 4 * t);
#pragma unroll
      for (int j = 0; j < kScoreRowsPerWarp; ++j) s[j] = fmaf(scale, st[j], s[j]);
    }
    // k_pe: bf16, as in the bf16 rows.
    const uint16_t* pe = reinterpret_cast<const uint16_t*>(kv_row + kQuantRopeOffset);
#pragma unroll
    for (int k = 0; k < kRopeDim; k += 8) {
      float kf[8];
      bf16x8_to_f32(*reinterpret_cast<const uint4*>(pe + k), kf);
#pragma unroll
      for (int j = 0; j < kScoreRowsPerWarp; ++j) {
        const float* qr = q_s + (warp + kWarps * j) * kHeadDimQK + kKvLoraRank + k;
        const float4 qa = *reinterpret_cast<const float4*>(qr);
        const float4 qb = *reinterpret_cast<const float4*>(qr + 4);
        s[j] = fmaf(qa.x, kf[0], fmaf(qa.y, kf[1], fmaf(qa.z, kf[2], fmaf(qa.w, kf[3], s[j]))));
        s[j] = fmaf(qb.x, kf[4], fmaf(qb.y, kf[5], fmaf(qb.z, kf[6], fmaf(qb.w, kf[7], s[j]))));
      }
    }
  }
}

// The 8 V values (columns pv_col..pv_col+7) of one cached row, and the factor p is multiplied by first: 1 for
// bf16 rows, the tile's scale for quantized ones (all 8 columns sit in one 128-value tile).
template <Format F>
__device__ __forceinline__ float v_values(const unsigned char* kv_row, int pv_col, float (&vf)[8]) {
  if constexpr (F == Format::Bf16) {
    bf16x8_to_f32(*reinterpret_cast<const uint4*>(reinterpret_cast<const uint16_t*>(kv_row) + pv_col), vf);
    return 1.f;
  } else {
    codes8_to_f32<F>(*reinterpret_cast<const uint2*>(kv_row + pv_col), vf);
    return *reinterpret_cast<const float*>(kv_row + kQuantScalesOffset + 4 * (pv_col / kQuantTile));
  }
}

template <Format F>
__global__ void __launch_bounds__(kThreads, 1) mla_decode_attend_kernel(const AttendArgs a) {
  constexpr int kStageBytes = kBlockN * RowOf<F>::kSmemStride;
  extern __shared__ __align__(16) unsigned char smem[];
  float* q_s = reinterpret_cast<float*>(smem);                                      // [kRowsPerCta][576] fp32
  unsigned char* kv_s = smem + kSmemQBytes;                                         // [stages][kBlockN] rows
  float* p_s = reinterpret_cast<float*>(smem + kSmemQBytes + RowOf<F>::kSmemKv);    // [kRowsPerCta][kBlockN]
  float* alpha_s = p_s + kRowsPerCta * kBlockN;                                  // [kRowsPerCta]
  float* inv_l_s = alpha_s + kRowsPerCta;                                        // [kRowsPerCta]

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int pv_col = (tid % kColGroups) * kAccCols;  // P.V: this thread's 8 columns
  const int pv_row = (tid / kColGroups) * kAccRows;  // ... and 8 rows
  const int row0 = blockIdx.y * kRowsPerCta;         // first row of this CTA's M tile
  const int piece_end = a.part_piece_begin[blockIdx.x + 1];

  for (int pi = a.part_piece_begin[blockIdx.x]; pi < piece_end; ++pi) {
    const int4 piece = a.pieces[pi];
    const int seq = piece.x;
    const int q_begin = a.cu_seqlens_q[seq];
    const int n_q = a.cu_seqlens_q[seq + 1] - q_begin;
    const int rows = n_q * a.num_heads;
    if (row0 >= rows) continue;  // this sequence has fewer rows than the grid covers (uniform over the CTA)
    const int seq_len = a.seq_lens[seq];
    const int tok_begin = piece.y * kBlockN;
    const int tok_end = min(piece.z * kBlockN, seq_len);
    const int num_tiles = piece.z - piece.y;

    load_kv_tile<F>(a, kv_s, seq, tok_begin, tok_end);
    cp_async_commit();

    // q rows [row0, row0 + kRowsPerCta) of this sequence: contiguous in q because row = token * H + head.
    const uint16_t* q_src = a.q + (int64_t(q_begin) * a.num_heads + row0) * kHeadDimQK;
    for (int c = tid; c < kRowsPerCta * (kHeadDimQK / 8); c += kThreads) {
      const int r = c / (kHeadDimQK / 8), col = (c % (kHeadDimQK / 8)) * 8;
      float f[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
      if (row0 + r < rows) bf16x8_to_f32(__ldg(reinterpret_cast<const uint4*>(q_src + r * kHeadDimQK + col)), f);
      float4* dst = reinterpret_cast<float4*>(q_s + r * kHeadDimQK + col);
      dst[0] = make_float4(f[0], f[1], f[2], f[3]);
      dst[1] = make_float4(f[4], f[5], f[6], f[7]);
    }

    // Softmax state of this warp's rows; a row sees tokens [tok_begin, visible) of this piece.
    float m[kScoreRowsPerWarp], l[kScoreRowsPerWarp];
    int visible[kScoreRowsPerWarp];
#pragma unroll
    for (int j = 0; j < kScoreRowsPerWarp; ++j) {
      const int r = row0 + warp + kWarps * j;
      m[j] = -INFINITY;
      l[j] = 0.f;
      visible[j] = r < rows ? min(tok_end, seq_len - n_q + r / a.num_heads + 1) : 0;  // causal among the queries
    }
    float acc[kAccRows][kAccCols];
#pragma unroll
    for (int i = 0; i < kAccRows; ++i)
#pragma unroll
      for (int c = 0; c < kAccCols; ++c) acc[i][c] = 0.f;

    for (int it = 0; it < num_tiles; ++it) {
      const int tok0 = tok_begin + it * kBlockN;
      if (it + 1 < num_tiles) {
        load_kv_tile<F>(a, kv_s + ((it + 1) % kKvStages) * kStageBytes, seq, tok0 + kBlockN, tok_end);
        cp_async_commit();
        cp_async_wait<1>();
      } else {
        cp_async_wait<0>();
      }
      __syncthreads();  // tile `it` (and, on the first tile, q_s) is visible to every thread
      const unsigned char* kv = kv_s + (it % kKvStages) * kStageBytes;

      // Scores of token tok0 + lane against this warp's rows.
      float s[kScoreRowsPerWarp];
#pragma unroll
      for (int j = 0; j < kScoreRowsPerWarp; ++j) s[j] = 0.f;
      score_row<F>(kv + lane * RowOf<F>::kSmemStride, q_s, warp, s);

      // Online softmax, base 2. A fully masked row keeps m = -inf, l = 0 and writes p = 0, alpha = 0.
#pragma unroll
      for (int j = 0; j < kScoreRowsPerWarp; ++j) {
        const float sc = tok0 + lane < visible[j] ? s[j] * a.scale_log2 : -INFINITY;
        const float m_new = fmaxf(m[j], warp_max(sc));
        const float m_use = m_new == -INFINITY ? 0.f : m_new;
        const float p = exp2f(sc - m_use);
        const float alpha = exp2f(m[j] - m_use);
        l[j] = l[j] * alpha + warp_sum(p);
        m[j] = m_new;
        p_s[(warp + kWarps * j) * kBlockN + lane] = p;
        if (lane == 0) alpha_s[warp + kWarps * j] = alpha;
      }
      __syncthreads();  // p_s and alpha_s complete

      // acc = acc * alpha + P . V   (V = the first 512 values of each cached row)
#pragma unroll
      for (int i = 0; i < kAccRows; ++i) {
        const float alpha = alpha_s[pv_row + i];
#pragma unroll
        for (int c = 0; c < kAccCols; ++c) acc[i][c] *= alpha;
      }
#pragma unroll 2
      for (int n = 0; n < kBlockN; n += 4) {
        float4 pr[kAccRows];
#pragma unroll
        for (int i = 0; i < kAccRows; ++i) pr[i] = *reinterpret_cast<const float4*>(p_s + (pv_row + i) * kBlockN + n);
#pragma unroll
        for (int nn = 0; nn < 4; ++nn) {
          float vf[8];
          const float v_scale = v_values<F>(kv + (n + nn) * RowOf<F>::kSmemStride, pv_col, vf);
#pragma unroll
          for (int i = 0; i < kAccRows; ++i) {
            const float p_raw = nn == 0 ? pr[i].x : nn == 1 ? pr[i].y : nn == 2 ? pr[i].z : pr[i].w;
            const float p = F == Format::Bf16 ? p_raw : p_raw * v_scale;
#pragma unroll
            for (int c = 0; c < kAccCols; ++c) acc[i][c] = fmaf(p, vf[c], acc[i][c]);
          }
        }
      }
      __syncthreads();  // the stage and p_s may be overwritten now
    }

    // Partial of this piece: lse (log2) from the softmax warps, o = acc / l from the P.V threads.
#pragma unroll
    for (int j = 0; j < kScoreRowsPerWarp; ++j) {
      const int r = warp + kWarps * j;
      if (lane == 0) {  // l == 0: no visible token. A NaN l (NaN in the cache) must stay NaN, so test == 0.
        inv_l_s[r] = l[j] == 0.f ? 0.f : 1.f / l[j];
        if (row0 + r < rows)
          a.lse_part[int64_t(pi) * a.max_rows + row0 + r] = l[j] == 0.f ? -INFINITY : m[j] + log2f(l[j]);
      }
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kAccRows; ++i) {
      const int r = row0 + pv_row + i;
      if (r >= rows) continue;
      const float inv = inv_l_s[pv_row + i];
      float4* dst = reinterpret_cast<float4*>(a.o_part + (int64_t(pi) * a.max_rows + r) * kHeadDimV + pv_col);
      dst[0] = make_float4(acc[i][0] * inv, acc[i][1] * inv, acc[i][2] * inv, acc[i][3] * inv);
      dst[1] = make_float4(acc[i][4] * inv, acc[i][5] * inv, acc[i][6] * inv, acc[i][7] * inv);
    }
    __syncthreads();  // q_s and inv_l_s are rewritten by the next piece
  }
}

// cudaFuncSetAttribute once per device (bit d of the mask) and format, not on every call.
template <Format F>
void allow_large_smem() {
  static std::atomic<unsigned long long> done{0};
  int device = 0;
  MLARUN_CUDA_CHECK(cudaGetDevice(&device));
  const unsigned long long bit = device < 64 ? 1ull << device : 0ull;
  if (bit != 0 && (done.load() & bit)) return;
  MLARUN_CUDA_CHECK(cudaFuncSetAttribute(mla_decode_attend_kernel<F>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         int(RowOf<F>::kSmem)));
  done.fetch_or(bit);
}

template <Format F>
void launch_attend(const AttendArgs& a, dim3 grid, cudaStream_t stream) {
  allow_large_smem<F>();
  mla_decode_attend_kernel<F><<<grid, kThreads, RowOf<F>::kSmem, stream>>>(a);
  MLARUN_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

namespace mla {

void launch_mla_decode_attend(const MlaDecodeParams& p, const mla::WorkspaceLayout& w, cudaStream_t stream) {
  auto* base = static_cast<unsigned char*>(p.workspace);
  AttendArgs a;
  a.q = p.q;
  a.kv_cache = static_cast<const unsigned char*>(p.kv_cache);
  a.block_tables = p.block_tables;
  a.seq_lens = p.seq_lens;
  a.cu_seqlens_q = p.cu_seqlens_q;
  a.part_piece_begin = reinterpret_cast<const int32_t*>(base + w.part_piece_begin);
  a.pieces = reinterpret_cast<const int4*>(base + w.pieces);
  a.lse_part = reinterpret_cast<float*>(base + w.lse_part);
  a.o_part = reinterpret_cast<float*>(base + w.o_part);
  a.status = reinterpret_cast<int32_t*>(base + w.status);
  a.num_heads = p.num_heads;
  a.num_blocks = p.num_blocks;
  a.block_size = p.block_size;
  a.max_blocks_per_seq = p.max_blocks_per_seq;
  a.max_rows = int(w.max_rows);
  a.scale_log2 = p.softmax_scale * 1.4426950408889634f;
  const dim3 grid(unsigned(w.num_parts), unsigned(mla::m_tiles(p.num_heads, p.max_q_per_seq)));
  switch (p.kv_format) {
    case Format::Bf16: return launch_attend<Format::Bf16>(a, grid, stream);
    case Format::Fp8: return launch_attend<Format::Fp8>(a, grid, stream);
    case Format::Int8: return launch_attend<Format::Int8>(a, grid, stream);
  }
  fail("mla_decode: kv_format ", int(p.kv_format), " is not bf16, fp8 or int8");
}

}  // namespace mla
}  // namespace mlarun::ops::cuda
