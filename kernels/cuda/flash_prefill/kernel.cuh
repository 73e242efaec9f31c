// The flash prefill kernel, FlashAttention-2 style (stage A in NOTES.md, this folder): one CTA computes
// kBlockM query rows of one (sequence, head) against every key tile it may see, with the softmax kept online in
// fp32 registers and the two products on the tensor cores (mma.sync m16n8k16, bf16/fp16 in, fp32 out).
// Why this shape: it is the simplest correct kernel whose pieces the Hopper version replaces one at a time -
// the swizzled smem layout and the tile loader (-> TMA with 128B swizzle, mbarrier ring), the two GEMM loops
// (-> wgmma SS for Q K^T and RS for P V), the softmax/mask code (kept as is) and the epilogue.
// Included only by the instantiations/flash_prefill_<qk>_<v>_<dtype>.cu files, each instantiating one launcher.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include <cuda_runtime_api.h>

#include "runtime/cuda_check.h"
#include "runtime/tensor.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/flash_prefill/flash_prefill.h"
#include "kernels/cuda/flash_prefill/config.h"
#include "kernels/cuda/flash_prefill/tile_order.cuh"
#include "kernels/cuda/mma_sm80.cuh"

namespace mlarun::ops::cuda::flash {

using namespace mma_sm80;  // smem_u32, ldmatrix_x4(_trans), mma_16816, pack2

template <DType> struct ElementOf;
template <> struct ElementOf<DType::BF16> { using type = __nv_bfloat16; };
template <> struct ElementOf<DType::F16> { using type = __half; };

// The checked params as the kernel reads them. Elements travel as raw 16-bit words; only the P and O
// conversions and the MMA instruction depend on bf16 vs fp16.
struct KernelArgs {
  const uint16_t* q;     // [total_q, hq, d_qk]
  const uint16_t* k;     // [total_k, hkv, d_qk]
  const uint16_t* v;     // [total_k, hkv, d_v]
  uint16_t* out;         // [total_q, hq, d_v]
  float* lse;            // [total_q, hq] or nullptr
  const int32_t* cu_q;   // [batch + 1]
  const int32_t* cu_k;   // [batch + 1]
  const int32_t* causal_offset;  // [batch] or nullptr (bottom-right: len_k - len_q)
  int hq, hkv, group;    // group = hq / hkv
  float scale;           // softmax scale (natural-log domain, for the lse)
  float scale_log2;      // softmax scale * log2(e): p = exp2(s * scale_log2 - m * scale_log2)
  int causal;
  int window_left;       // -1: none
  const int2* tiles;     // nullptr: grid (m-blocks, heads, sequences); else grid (heads, tiles), tile blockIdx.y
                         // = {sequence, m-block} of the longest-first order (tile_order.cuh)
  int heads_outer;       // with tiles: grid (tiles, heads) instead, tile blockIdx.x (one head's tiles together)
  int pingpong;          // the pipelined kernel's warpgroups take turns at issuing (FlashPrefillParams::pingpong)
  int persistent;        // the pipelined kernel walks the tiles of grid_* (FlashPrefillParams::persistent), a CTA
  int grid_x, grid_y, grid_z;  // per SM taking every gridDim.x-th block of it
};

// Element offset of 16-byte chunk `chunk` of row `row` in a tile with `kStride` elements per row. The chunk
// index is XORed with (row & 7): 8 consecutive rows read at the same logical chunk (one ldmatrix 8x8 matrix)
// and 8 chunks of one row written by 8 threads (cp.async) both land in 8 distinct 16-byte bank groups.
template <int kStride>
__device__ __forceinline__ int swizzle(int row, int chunk) {
  return row * kStride + ((chunk ^ (row & 7)) << 3);
}

// 16-byte global->shared copy; src_bytes = 0 zero-fills (rows past the sequence: V rows must be finite zeros
// because P = 0 times garbage can still be NaN). Every cp.async statement clobbers "memory": the compiler must
// neither move shared-memory reads of the epilogue (which reuses the Q buffer) across an issue or a wait, nor
// cache smem values in registers across them.
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

// Copies rows [0, kRows) x [0, kD) of a tile whose row r starts at g + r * stride into swizzled smem; rows at
// or past valid_rows are zero-filled. 8 threads share a row (128 contiguous bytes per 64-column panel), so a
// thread's (row & 7) and chunk-in-panel never change: one smem base address plus compile-time offsets.
template <int kRows, int kD, int kThreads>
__device__ __forceinline__ void load_tile(uint16_t* s, const uint16_t* g, int64_t stride, int valid_rows, int tid) {
  constexpr int kRowsPerPass = kThreads / 8;
  static_assert(kRowsPerPass % 8 == 0 && kRows % kRowsPerPass == 0, "passes must keep (row & 7) fixed");
  const int row0 = tid / 8, lo = tid % 8;
  const uint32_t dst0 = smem_u32(s + row0 * kD + ((lo ^ (row0 & 7)) << 3));
#pragma unroll
  for (int pass = 0; pass < kRows / kRowsPerPass; ++pass) {
    const int row = row0 + pass * kRowsPerPass;
    const bool valid = row < valid_rows;
    const uint16_t* src = g + (valid ? row * stride : 0) + lo * 8;
#pragma unroll
    for (int panel = 0; panel < kD / 64; ++panel)
      cp_async_16(dst0 + (pass * kRowsPerPass * kD + panel * 64) * 2, src + panel * 64, valid ? 16 : 0);
  }
}

// Shared-memory byte addresses of one lane's ldmatrix row: chunk 2*j + hb (hb = 0 or 1 per lane) of `row`.
// Rows 8 apart share the XOR pattern and chunk pairs 4 apart sit 64 elements further, so every address the
// MMA loops need is one of four per-lane bases plus a compile-time offset (no address math in the loop).
template <int kStride>
struct LaneAddr {
  uint32_t base[4];
  __device__ __forceinline__ LaneAddr(const uint16_t* tile, int row, int hb) {
#pragma unroll
    for (int j = 0; j < 4; ++j) base[j] = smem_u32(tile + row * kStride + (((2 * j + hb) ^ (row & 7)) << 3));
  }
  // Chunk pair j of the row `row_add` (a multiple of 8) further down.
  __device__ __forceinline__ uint32_t at(int row_add, int j) const {
    return base[j & 3] + uint32_t((row_add * kStride + (j >> 2) * 64) * 2);
  }
};

// The CTA's tile: the sequence, head and first query row (m0) it computes, and what it needs of the sequence.
// Longest first: the tile list's order (every sequence and head); otherwise within a (head, sequence), causal
// tiles near the end of the sequence (they see the most keys) launch first. Query i sees keys j <= off + i:
// bottom-right alignment unless the caller gives the offset.
struct TileOf {
  int seq, head, m0, q_start, len_q, k_start, len_k, off;
};
// The tile of block `b` of a launch grid `grid` (the launch's own, or a persistent kernel's virtual one).
__device__ __forceinline__ TileOf tile_at(const KernelArgs& args, int block_m, uint3 b, dim3 grid) {
  TileOf t;
  int m_block;
  if (args.tiles != nullptr) {
    const int2 tile = args.tiles[args.heads_outer ? b.x : b.y];
    t.seq = tile.x, m_block = tile.y, t.head = args.heads_outer ? b.y : b.x;
  } else {
    m_block = args.causal ? int(grid.x) - 1 - int(b.x) : int(b.x);
    t.head = b.y, t.seq = b.z;
  }
  t.q_start = args.cu_q[t.seq], t.len_q = args.cu_q[t.seq + 1] - t.q_start;
  t.m0 = m_block * block_m;
  t.k_start = args.cu_k[t.seq], t.len_k = args.cu_k[t.seq + 1] - t.k_start;
  t.off = args.causal_offset != nullptr ? args.causal_offset[t.seq] : t.len_k - t.len_q;
  return t;
}
__device__ __forceinline__ TileOf tile_of(const KernelArgs& args, int block_m) {
  return tile_at(args, block_m, blockIdx, gridDim);
}

// The epilogue's rows: a thread's two rows (query index row_q in the sequence) get their sums completed over the
// quad, `empty` (the row saw no key: it writes zeros and lse -inf) and 1 / sum, and the quad's first thread writes
// their lse. A NaN sum stays NaN (1 / NaN), so a row that saw NaN reads NaN; never test `row_sum > 0` here.
__device__ __forceinline__ void finish_rows(const KernelArgs& args, float (&row_sum)[2], const float (&row_max)[2],
                                            const int (&row_q)[2], int len_q, int q_start, int head, int lane,
                                            bool (&empty)[2], float (&inv)[2]) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 1);
    row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 2);
    empty[r] = row_sum[r] == 0.f;
    inv[r] = empty[r] ? 0.f : 1.f / row_sum[r];
  }
  if (args.lse != nullptr && (lane & 3) == 0) {
#pragma unroll
    for (int r = 0; r < 2; ++r)
      if (row_q[r] < len_q)
        args.lse[int64_t(q_start + row_q[r]) * args.hq + head] =
            empty[r] ? -INFINITY : row_max[r] * args.scale + logf(row_sum[r]);
  }
}

template <int kDQK, int kDV, typename Element>
__global__ void __launch_bounds__(Traits<kDQK, kDV>::kThreads, Traits<kDQK, kDV>::kMinBlocksPerSm)
    flash_prefill_kernel(const KernelArgs args) {
  using T = Traits<kDQK, kDV>;
  constexpr int kBlockM = T::kBlockM, kBlockN = T::kBlockN, kThreads = T::kThreads;
  constexpr int kNTilesS = kBlockN / 8, kNTilesO = kDV / 8;
  extern __shared__ __align__(128) uint16_t smem[];
  uint16_t* sQ = smem;              // [kBlockM, kDQK] swizzled; reused to stage O (row stride kDQK)
  uint16_t* sK = sQ + T::kSmemQ;    // [kBlockN, kDQK] swizzled
  uint16_t* sV = sK + T::kSmemK;    // [kBlockN, kDV] swizzled

  const TileOf t = tile_of(args, kBlockM);
  if (t.m0 >= t.len_q) return;
  const int head = t.head, q_start = t.q_start, len_q = t.len_q, m0 = t.m0, k_start = t.k_start, len_k = t.len_k,
            off = t.off, kv_head = head / args.group;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int warp_row = warp * 16;  // this warp's 16 rows inside the tile

  // The key blocks this tile may see (tile_order.cuh: the formula the longest-first order counts with too).
  const KeyBlocks blocks = tile_key_blocks(m0, len_q, len_k, off, args.causal != 0, args.window_left, kBlockM, kBlockN);
  const int n_begin = blocks.begin, n_end = blocks.end;

  const int64_t q_stride = int64_t(args.hq) * kDQK, k_stride = int64_t(args.hkv) * kDQK,
                v_stride = int64_t(args.hkv) * kDV;
  const uint16_t* gQ = args.q + (int64_t(q_start + m0) * args.hq + head) * kDQK;
  const uint16_t* gK = args.k + (int64_t(k_start) * args.hkv + kv_head) * kDQK;
  const uint16_t* gV = args.v + (int64_t(k_start) * args.hkv + kv_head) * kDV;

  float acc_o[kNTilesO][4];
#pragma unroll
  for (int i = 0; i < kNTilesO; ++i) acc_o[i][0] = acc_o[i][1] = acc_o[i][2] = acc_o[i][3] = 0.f;
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.f, 0.f};  // rows g and g + 8 of the warp
  const int row_q[2] = {m0 + warp_row + lane / 4, m0 + warp_row + lane / 4 + 8};  // index in the sequence

  // ldmatrix rows per lane: Q (A operand) rows lane & 15, chunk + lane / 16; K (B, two n8 tiles) keys
  // (lane & 7) + 8 * (lane / 16), chunk + (lane / 8) & 1; V (B, transposed) keys (lane & 7) + 8 * ((lane / 8) & 1),
  // chunk + lane / 16 (fragment layouts above mma_16816).
  const LaneAddr<kDQK> q_addr(sQ, warp_row + (lane & 15), lane >> 4);
  const LaneAddr<kDQK> k_addr(sK, (lane & 7) + ((lane >> 4) << 3), (lane >> 3) & 1);
  const LaneAddr<kDV> v_addr(sV, (lane & 7) + (((lane >> 3) & 1) << 3), lane >> 4);

  if (n_end > n_begin) {
    load_tile<kBlockM, kDQK, kThreads>(sQ, gQ, q_stride, len_q - m0, tid);
    load_tile<kBlockN, kDQK, kThreads>(sK, gK + int64_t(n_end - 1) * kBlockN * k_stride, k_stride,
                                       len_k - (n_end - 1) * kBlockN, tid);
    cp_async_commit();
  }
  // Last key tile first (FlashAttention-2's order): the masked tiles come first, the rest run mask-free.
  for (int n = n_end - 1; n >= n_begin; --n) {
    const int n0 = n * kBlockN;
    cp_async_wait_all();
    __syncthreads();  // K(n) landed for everyone; every warp is done with V(n+1)
    load_tile<kBlockN, kDV, kThreads>(sV, gV + int64_t(n0) * v_stride, v_stride, len_k - n0, tid);
    cp_async_commit();

    // S = Q K(n)^T: this warp's 16 rows x kBlockN keys.
    float acc_s[kNTilesS][4];
#pragma unroll
    for (int i = 0; i < kNTilesS; ++i) acc_s[i][0] = acc_s[i][1] = acc_s[i][2] = acc_s[i][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < kDQK / 16; ++kk) {
      uint32_t a[4];
      ldmatrix_x4(a, q_addr.at(0, kk));
#pragma unroll
      for (int nn = 0; nn < kBlockN / 16; ++nn) {
        uint32_t b[4];  // keys nn*16 + [0, 8) and + [8, 16), d chunks kk*2 and kk*2 + 1
        ldmatrix_x4(b, k_addr.at(nn * 16, kk));
        mma_16816<Element>(acc_s[2 * nn], a, b[0], b[1]);
        mma_16816<Element>(acc_s[2 * nn + 1], a, b[2], b[3]);
      }
    }

    // Mask only the tiles that cross the sequence end, the causal diagonal or the window's left edge.
    const bool need_mask = n0 + kBlockN > len_k || (args.causal && n0 + kBlockN - 1 > m0 + off) ||
                           (args.window_left >= 0 && n0 < m0 + kBlockM - 1 + off - args.window_left);
    if (need_mask) {
#pragma unroll
      for (int i = 0; i < kNTilesS; ++i)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int key = n0 + i * 8 + (lane & 3) * 2 + (e & 1), row = row_q[e >> 1];
          const bool visible = key < len_k && (!args.causal || key <= row + off) &&
                               (args.window_left < 0 || key >= row + off - args.window_left);
          if (!visible) acc_s[i][e] = -INFINITY;
        }
    }

    // Online softmax: new row max over the 4 threads of a quad, rescale O and the sum, p = exp2(...).
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = row_max[r];
#pragma unroll
      for (int i = 0; i < kNTilesS; ++i) mx = fmaxf(mx, fmaxf(acc_s[i][2 * r], acc_s[i][2 * r + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      // A row that has seen no key yet keeps max -inf: subtract 0 instead (exp2(-inf) = 0, no NaN).
      const float m_scaled = mx == -INFINITY ? 0.f : mx * args.scale_log2;
      const float alpha = row_max[r] == -INFINITY ? 0.f : exp2f(row_max[r] * args.scale_log2 - m_scaled);
      row_max[r] = mx;
      row_sum[r] *= alpha;
#pragma unroll
      for (int i = 0; i < kNTilesO; ++i) {
        acc_o[i][2 * r] *= alpha;
        acc_o[i][2 * r + 1] *= alpha;
      }
#pragma unroll
      for (int i = 0; i < kNTilesS; ++i)
#pragma unroll
        for (int e = 2 * r; e < 2 * r + 2; ++e) {
          acc_s[i][e] = exp2f(fmaf(acc_s[i][e], args.scale_log2, -m_scaled));
          row_sum[r] += acc_s[i][e];
        }
    }

    // P as the A operand of P V: two adjacent n8 accumulator tiles form one k16 A fragment.
    uint32_t p[kBlockN / 16][4];
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; ++kk) {
      p[kk][0] = pack2<Element>(acc_s[2 * kk][0], acc_s[2 * kk][1]);
      p[kk][1] = pack2<Element>(acc_s[2 * kk][2], acc_s[2 * kk][3]);
      p[kk][2] = pack2<Element>(acc_s[2 * kk + 1][0], acc_s[2 * kk + 1][1]);
      p[kk][3] = pack2<Element>(acc_s[2 * kk + 1][2], acc_s[2 * kk + 1][3]);
    }

    cp_async_wait_all();
    __syncthreads();  // V(n) landed for everyone; every warp is done with K(n)
    if (n > n_begin) {
      load_tile<kBlockN, kDQK, kThreads>(sK, gK + int64_t(n0 - kBlockN) * k_stride, k_stride,
                                         len_k - (n0 - kBlockN), tid);
      cp_async_commit();
    }

    // O += P V(n): V is [key, d] in smem, so the B fragments come from ldmatrix.trans.
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; ++kk) {
#pragma unroll
      for (int nn = 0; nn < kDV / 16; ++nn) {
        uint32_t b[4];  // keys kk*16 + [0, 8) and + [8, 16), d chunks nn*2 and nn*2 + 1
        ldmatrix_x4_trans(b, v_addr.at(kk * 16, nn));
        mma_16816<Element>(acc_o[2 * nn], p[kk], b[0], b[1]);
        mma_16816<Element>(acc_o[2 * nn + 1], p[kk], b[2], b[3]);
      }
    }
  }

  // Epilogue. The row sums are still per thread: finish them across the quad.
  // row_sum == 0 exactly: the row saw no key; it writes zeros (not acc * 0: a NaN in a V row it does not see
  // may sit in a tile it shared with rows that do) and lse = -inf. A NaN in q, or in k/v of a key the row sees,
  // made p and so row_sum / acc NaN (the max above drops NaN, exp2 does not): 1 / NaN keeps it NaN, so the
  // row's out and lse read NaN, as a plain softmax gives and as MLA decode does. Never `row_sum > 0` here.
  float inv[2];
  bool empty[2];
  finish_rows(args, row_sum, row_max, row_q, len_q, q_start, head, lane, empty, inv);
  // Stage O through this warp's own 16 rows of the Q buffer (only this warp ever read them), then write
  // 16-byte chunks so a row of the output goes out in contiguous pieces.
  __syncwarp();
#pragma unroll
  for (int i = 0; i < kNTilesO; ++i)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = warp_row + lane / 4 + 8 * r;
      *reinterpret_cast<uint32_t*>(sQ + swizzle<kDQK>(row, i) + (lane & 3) * 2) =
          empty[r] ? 0u : pack2<Element>(acc_o[i][2 * r] * inv[r], acc_o[i][2 * r + 1] * inv[r]);
    }
  __syncwarp();
  constexpr int kOutChunks = kDV / 8;
#pragma unroll
  for (int it = 0; it < 16 * kOutChunks / 32; ++it) {
    const int idx = it * 32 + lane, row = idx / kOutChunks, chunk = idx % kOutChunks;
    const int q_row = m0 + warp_row + row;
    if (q_row < len_q)
      *reinterpret_cast<uint4*>(args.out + (int64_t(q_start + q_row) * args.hq + head) * kDV + chunk * 8) =
          *reinterpret_cast<const uint4*>(sQ + swizzle<kDQK>(warp_row + row, chunk));
  }
}

// The checked params as the kernels read them (no tile list yet).
inline KernelArgs kernel_args(const FlashPrefillParams& p) {
  KernelArgs args;
  args.q = static_cast<const uint16_t*>(p.q);
  args.k = static_cast<const uint16_t*>(p.k);
  args.v = static_cast<const uint16_t*>(p.v);
  args.out = static_cast<uint16_t*>(p.out);
  args.lse = p.lse;
  args.cu_q = p.cu_seqlens_q;
  args.cu_k = p.cu_seqlens_k;
  args.causal_offset = p.causal_offset;
  args.hq = p.num_heads_q;
  args.hkv = p.num_heads_kv;
  args.group = p.num_heads_q / p.num_heads_kv;
  args.scale = p.softmax_scale;
  args.scale_log2 = p.softmax_scale * 1.4426950408889634f;
  args.causal = p.causal ? 1 : 0;
  args.window_left = p.window_left;
  args.tiles = nullptr;
  args.heads_outer = 0;
  args.pingpong = p.pingpong ? 1 : 0;
  args.persistent = 0, args.grid_x = args.grid_y = args.grid_z = 0;  // (set by the persistent launch)
  return args;
}

// The grid of a launch. When p asks for a tile list (longest_first 1-4, or -1 where the kernel's own order,
// `kernel_order`, is one of them) and the batch fits it: the list for (block_m, block_n) tiles, built on the
// device into `order` (longest first for 1 and 2, the plain order without empty m-blocks for 3 and 4) and set as
// args.tiles, and a grid of (heads, tiles), or (tiles, heads) for 2 and 3 (one head's tiles, then the next
// head's); otherwise (m-blocks, heads, sequences).
inline dim3 launch_grid(const FlashPrefillParams& p, int kernel_order, int block_m, int block_n, int max_seqlen_q,
                        Tensor& order, KernelArgs& args, cudaStream_t stream) {
  const dim3 plain((max_seqlen_q + block_m - 1) / block_m, p.num_heads_q, p.batch);
  const int kind = p.longest_first < 0 ? kernel_order : p.longest_first;  // FlashPrefillParams::longest_first
  if (kind == 0) return plain;
  int num_tiles = 0;
  for (int b = 0; b < p.batch; ++b)
    num_tiles += (p.cu_seqlens_q_host[b + 1] - p.cu_seqlens_q_host[b] + block_m - 1) / block_m;
  if (num_tiles == 0 || num_tiles > 65535 || tile_order_smem_bytes(p.batch) > 48 * 1024) return plain;
  order = Tensor::empty({2 * int64_t(num_tiles)}, DType::I32, Device::CUDA);
  args.tiles = reinterpret_cast<const int2*>(order.raw());
  args.heads_outer = kind == 2 || kind == 3 ? 1 : 0;
  order_tiles({p.cu_seqlens_q, p.cu_seqlens_k, p.causal_offset, p.batch, num_tiles, args.causal, p.window_left,
               block_m, block_n, kind <= 2 ? 1 : 0},
              reinterpret_cast<int2*>(order.raw()), stream);
  return args.heads_outer ? dim3(unsigned(num_tiles), unsigned(p.num_heads_q))
                          : dim3(unsigned(p.num_heads_q), unsigned(num_tiles));
}

// The launcher flash_prefill.h declares; one explicit instantiation per file under instantiations/.
template <int kHeadDimQK, int kHeadDimV, DType kDType>
void launch_flash_prefill(const FlashPrefillParams& p, int max_seqlen_q, cudaStream_t stream) {
  using T = Traits<kHeadDimQK, kHeadDimV>;
  using Element = typename ElementOf<kDType>::type;
  KernelArgs args = kernel_args(p);
  auto kernel = flash_prefill_kernel<kHeadDimQK, kHeadDimV, Element>;
  allow_dynamic_smem<flash_prefill_kernel<kHeadDimQK, kHeadDimV, Element>>(T::kSmemBytes);  // once per device
  Tensor order;  // the longest-first tile list; freed at return, stream-ordered after the kernel reads it
  const dim3 grid = launch_grid(p, kLongestFirst ? 1 : 0, T::kBlockM, T::kBlockN, max_seqlen_q, order, args, stream);
  kernel<<<grid, T::kThreads, T::kSmemBytes, stream>>>(args);
  MLARUN_CUDA_CHECK(cudaGetLastError());
}

}  // namespace mlarun::ops::cuda::flash
