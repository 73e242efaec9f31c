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
#include <cuda_runtime.h>

#include <atomic>
#include <cmath>

#include <cuda_runtime_api.h>

#include "runtime/cuda_check.h"
#include "kernels/cuda/mla_decode/mla_decode.h"

namespace mlarun::ops::cuda {
namespace {

using namespace mla;
using Code = MlaDecodeStatus::Code;

struct AttendArgs {
  const uint16_t* q;                 // bf16 [num_tokens, H, 576]
  const uint16_t* kv_cache;          // bf16 [num_blocks, block_size, 576]
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
// zero-filled, a row whose block id is outside the pool becomes NaN (and is reported).
__device__ __forceinline__ void load_kv_tile(const AttendArgs& a, uint16_t* stage, int seq, int tok0, int tok_end) {
  constexpr int kChunksPerRow = kHeadDimQK / 8;  // 16-byte pieces per cached row
  const int32_t* table = a.block_tables + int64_t(seq) * a.max_blocks_per_seq;
#pragma unroll
  for (int i = 0; i < kBlockN * kChunksPerRow / kThreads; ++i) {
    const int c = threadIdx.x + i * kThreads;
    const int row = c / kChunksPerRow, col = (c % kChunksPerRow) * 8;
    uint16_t* dst = stage + row * kKvRowStride + col;
    const int t = tok0 + row;
    uint4 fill = make_uint4(0u, 0u, 0u, 0u);
    if (t < tok_end) {
      const int32_t block = __ldg(table + t / a.block_size);
      if (block >= 0 && block < a.num_blocks) {
        cp_async_16(dst, a.kv_cache + (int64_t(block) * a.block_size + t % a.block_size) * kHeadDimQK + col);
        continue;
      }
      if (col == 0 && atomicCAS(a.status, 0, Code::kBadBlockId) == 0) {
        a.status[1] = seq;
        a.status[2] = block;
      }
      fill = make_uint4(0x7fc07fc0u, 0x7fc07fc0u, 0x7fc07fc0u, 0x7fc07fc0u);  // bf16 NaN
    }
    *reinterpret_cast<uint4*>(dst) = fill;
  }
}

__global__ void __launch_bounds__(kThreads, 1) mla_decode_attend_kernel(const AttendArgs a) {
  extern __shared__ __align__(16) unsigned char smem[];
  float* q_s = reinterpret_cast<float*>(smem);                                   // [kRowsPerCta][576] fp32
  uint16_t* kv_s = reinterpret_cast<uint16_t*>(smem + kSmemQBytes);              // [stages][kBlockN][stride]
  float* p_s = reinterpret_cast<float*>(smem + kSmemQBytes + kSmemKvBytes);      // [kRowsPerCta][kBlockN]
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

    load_kv_tile(a, kv_s, seq, tok_begin, tok_end);
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
        load_kv_tile(a, kv_s + ((it + 1) % kKvStages) * kBlockN * kKvRowStride, seq, tok0 + kBlockN, tok_end);
        cp_async_commit();
        cp_async_wait<1>();
      } else {
        cp_async_wait<0>();
      }
      __syncthreads();  // tile `it` (and, on the first tile, q_s) is visible to every thread
      const uint16_t* kv = kv_s + (it % kKvStages) * kBlockN * kKvRowStride;

      // Scores of token tok0 + lane against this warp's rows.
      float s[kScoreRowsPerWarp];
#pragma unroll
      for (int j = 0; j < kScoreRowsPerWarp; ++j) s[j] = 0.f;
      const uint16_t* k_row = kv + lane * kKvRowStride;
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
          bf16x8_to_f32(*reinterpret_cast<const uint4*>(kv + (n + nn) * kKvRowStride + pv_col), vf);
#pragma unroll
          for (int i = 0; i < kAccRows; ++i) {
            const float p = nn == 0 ? pr[i].x : nn == 1 ? pr[i].y : nn == 2 ? pr[i].z : pr[i].w;
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

// cudaFuncSetAttribute once per device (bit d of the mask), not on every call.
void allow_large_smem() {
  static std::atomic<unsigned long long> done{0};
  int device = 0;
  MLARUN_CUDA_CHECK(cudaGetDevice(&device));
  const unsigned long long bit = device < 64 ? 1ull << device : 0ull;
  if (bit != 0 && (done.load() & bit)) return;
  MLARUN_CUDA_CHECK(cudaFuncSetAttribute(mla_decode_attend_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         int(kSmemBytes)));
  done.fetch_or(bit);
}

}  // namespace

namespace mla {

void launch_mla_decode_attend(const MlaDecodeParams& p, const mla::WorkspaceLayout& w, cudaStream_t stream) {
  auto* base = static_cast<unsigned char*>(p.workspace);
  AttendArgs a;
  a.q = p.q;
  a.kv_cache = p.kv_cache;
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
  allow_large_smem();
  const dim3 grid(unsigned(w.num_parts), unsigned(mla::m_tiles(p.num_heads, p.max_q_per_seq)));
  mla_decode_attend_kernel<<<grid, kThreads, kSmemBytes, stream>>>(a);
  MLARUN_CUDA_CHECK(cudaGetLastError());
}

}  // namespace mla
}  // namespace mlarun::ops::cuda
