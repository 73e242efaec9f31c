// The flash prefill kernel on Hopper's warpgroup MMA (wgmma, sm_90a): stage A's kernel (kernel.cuh) with its two
// GEMM loops moved to wgmma, the first step of stage B in NOTES.md. A CTA takes 128 query rows of one (sequence,
// head), two warpgroups of 64 rows each; per key tile of kBlockN rows:
//   S = Q K^T   m64n{kBlockN}k16 from shared memory, Q and K K-major in 128-byte-swizzled slabs of 64 columns
//               (kernels/cuda/wgmma_sm90.cuh), each warpgroup its own 64 rows of Q;
//   softmax     stage A's mask and online softmax, unchanged, on the accumulators (a thread holds two rows);
//   O += P V    m64n{d_v}k16 with P from registers (the score accumulators are the A fragments) and V read N-major
//               from its slabs.
// Loads stay stage A's (cp.async, one K and one V buffer: V(n) lands during S(n), K(n-1) during P V(n), issued
// before or after P V(n)'s MMAs by head dim; V(n)'s issue stays before S(n)'s, where moving it after them made
// ptxas spill at 192/128),
// with fence.proxy.async before each barrier that hands a buffer to the tensor cores, and every MMA waited for
// before the barrier that frees its buffer. Masks, NaN rules, lse and tile orders are stage A's. Included by the
// instantiations/flash_prefill_wgmma_*.cu files. The default where the device runs it (FlashPrefillParams::wgmma):
// 1.4-1.7x stage A's TFLOP/s on an H100 (NOTES.md in this folder).
#pragma once

#include "kernels/cuda/flash_prefill/kernel.cuh"
#include "kernels/cuda/flash_prefill/wgmma_lanes.h"
#include "kernels/cuda/wgmma_sm90.cuh"
#include "kernels/cuda/wgmma_sm90_mma.cuh"

namespace mlarun::ops::cuda::flash {

// Rows [0, kRows) x [0, kD) of a tile whose row r starts at g + r * stride, into slabs of 64 columns at `slabs`
// (1024-aligned shared-memory address; slab j holds columns [64 j, 64 j + 64) of every row); rows at or past
// valid_rows are zero-filled. kUnroll: passes unrolled (all by default; the warp-specialized kernel's loader, with
// few registers, unrolls fewer).
template <int kRows, int kD, int kThreads, int kUnroll = kRows * (kD / 8) / kThreads>
__device__ __forceinline__ void load_slabs(uint32_t slabs, const uint16_t* g, int64_t stride, int valid_rows,
                                           int tid) {
  constexpr int kChunks = kD / 8;  // 16-byte chunks per row
  static_assert((kRows * kChunks) % kThreads == 0, "whole passes");
#pragma unroll kUnroll
  for (int i = 0; i < kRows * kChunks / kThreads; ++i) {
    const int c = tid + i * kThreads, row = c / kChunks, chunk = c % kChunks;
    const bool valid = row < valid_rows;
    const uint32_t dst = slabs + wg::chunk_offset(kRows, row, chunk);
    cp_async_16(dst, g + (valid ? row * stride : 0) + chunk * 8, valid ? 16 : 0);
  }
}

// load_slabs with stage A's thread mapping (kernel.cuh load_tile): 8 threads share a row, one 16-byte chunk of each
// of its slabs apiece, and a pass moves kThreads / 8 rows on, so a thread's (row & 7) and chunk never change and
// every copy is one source and one destination base plus a pass's offset. For a kernel that loads inside its MMA
// loop, where load_slabs' per-copy addresses, hoisted out of the loop by the compiler, cost registers.
template <int kRows, int kD, int kThreads>
__device__ __forceinline__ void load_slabs_by_rows(uint32_t slabs, const uint16_t* g, int64_t stride,
                                                   int valid_rows, int tid) {
  constexpr int kRowsPerPass = kThreads / 8;
  static_assert(kRowsPerPass % 8 == 0 && kRows % kRowsPerPass == 0, "passes must keep (row & 7) fixed");
  const int row0 = tid / 8, lo = tid % 8;
  const uint32_t dst0 = slabs + wg::chunk_offset(kRows, row0, lo);
  const uint16_t* src0 = g + row0 * stride + lo * 8;
#pragma unroll
  for (int pass = 0; pass < kRows / kRowsPerPass; ++pass) {
    const bool valid = row0 + pass * kRowsPerPass < valid_rows;
    const uint16_t* src = valid ? src0 + pass * kRowsPerPass * stride : g;
#pragma unroll
    for (int slab = 0; slab < kD / 64; ++slab)  // (wgmma_lanes.h by_rows_copy: row, chunk and offset of this copy)
      cp_async_16(dst0 + wg::by_rows_copy(kRows, kThreads, tid, pass, slab).offset, src + slab * 64, valid ? 16 : 0);
  }
}

// S = Q K^T for one key tile issued: warpgroup `group`'s 64 rows of Q (at q_u32) against the kBlockN keys at k_u32,
// both K-major in slabs of 64 columns; fenced before, neither committed nor waited for.
template <int kBlockM, int kBlockN, int kDQK, typename Element>
__device__ __forceinline__ void issue_scores(float (&s)[kBlockN / 2], uint32_t q_u32, uint32_t k_u32, int group) {
  using namespace wgmma_sm90;
#pragma unroll
  for (int e = 0; e < kBlockN / 2; ++e) s[e] = 0.f;
  wgmma_fence();
#pragma unroll
  for (int slab = 0; slab < kDQK / 64; ++slab)
#pragma unroll
    for (int k = 0; k < 4; ++k)
      Mma<kBlockN>::template ss<0, Element>(s, wg::q_desc(q_u32, kBlockM, group, slab, k),
                                            wg::k_desc(k_u32, kBlockN, slab, k), slab + k > 0);
}

// O += P V for one key tile issued: P's A fragments from registers against the kBlockN rows of V at v_u32 (N-major
// slabs); fenced before, neither committed nor waited for.
template <int kBlockN, int kDV, typename Element>
__device__ __forceinline__ void issue_pv(float (&o)[kDV / 2], const uint32_t (&p)[kBlockN / 16][4], uint32_t v_u32) {
  using namespace wgmma_sm90;
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < kBlockN / 16; ++kk)
    Mma<kDV>::template rs<1, Element>(o, p[kk], wg::v_desc(v_u32, kBlockN, kk), 1);
}

// The scores, committed and waited for.
template <int kBlockM, int kBlockN, int kDQK, typename Element>
__device__ __forceinline__ void scores_tile(float (&s)[kBlockN / 2], uint32_t q_u32, uint32_t k_u32, int group) {
  using namespace wgmma_sm90;
  issue_scores<kBlockM, kBlockN, kDQK, Element>(s, q_u32, k_u32, group);
  wgmma_commit();
  wgmma_wait<0>();
  fence_registers(s);
}

// One key tile's scores of a thread's two rows (row_q: their index in the sequence), from masks to P, as stage A
// does it: the mask only on tiles that cross the sequence end, the causal diagonal or the window's left edge; the
// online softmax (row maxima in the unscaled domain, 2^x in one instruction: cuda_common.cuh exp2_ftz); P as the A
// fragments of P V (pack_p); alpha[r]: the factor row r's output takes (rescale_rows). The last two are left to the
// caller, which may have a P V in flight, reading P and adding into the output.
template <int kBlockM, int kBlockN>
__device__ __forceinline__ void softmax_scores(const KernelArgs& args, float (&s)[kBlockN / 2], float (&row_max)[2],
                                               float (&row_sum)[2], float (&alpha)[2], const int (&row_q)[2], int n0,
                                               int m0, int len_k, int off, int lane) {
  using namespace wgmma_sm90;
  constexpr int kSRegs = kBlockN / 2;
  const bool need_mask = n0 + kBlockN > len_k || (args.causal && n0 + kBlockN - 1 > m0 + off) ||
                         (args.window_left >= 0 && n0 < m0 + kBlockM - 1 + off - args.window_left);
  if (need_mask) {
#pragma unroll
    for (int e = 0; e < kSRegs; ++e) {
      const int key = n0 + acc_col(lane, e), row = row_q[(e >> 1) & 1];
      const bool visible = key < len_k && (!args.causal || key <= row + off) &&
                           (args.window_left < 0 || key >= row + off - args.window_left);
      if (!visible) s[e] = -INFINITY;
    }
  }
  // The thread's two rows: elements 4 i + 2 r and 4 i + 2 r + 1 of row r.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float mx = row_max[r];
#pragma unroll
    for (int i = 0; i < kSRegs / 4; ++i) mx = fmaxf(mx, fmaxf(s[4 * i + 2 * r], s[4 * i + 2 * r + 1]));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float m_scaled = mx == -INFINITY ? 0.f : mx * args.scale_log2;
    alpha[r] = row_max[r] == -INFINITY ? 0.f : exp2_ftz(row_max[r] * args.scale_log2 - m_scaled);
    row_max[r] = mx;
    row_sum[r] *= alpha[r];
#pragma unroll
    for (int i = 0; i < kSRegs / 4; ++i)
#pragma unroll
      for (int e = 4 * i + 2 * r; e < 4 * i + 2 * r + 2; ++e) {
        s[e] = exp2_ftz(fmaf(s[e], args.scale_log2, -m_scaled));
        row_sum[r] += s[e];
      }
  }
}

// P (the exponentiated scores) as the A fragments of P V: k-step kk takes n8 tiles 2 kk and 2 kk + 1
// (wgmma_sm90.cuh acc_to_a).
template <int kBlockN, typename Element>
__device__ __forceinline__ void pack_p(const float (&s)[kBlockN / 2], uint32_t (&p)[kBlockN / 16][4]) {
  using namespace wgmma_sm90;
#pragma unroll
  for (int kk = 0; kk < kBlockN / 16; ++kk)
#pragma unroll
    for (int i = 0; i < 4; ++i) p[kk][i] = pack2<Element>(s[acc_to_a(kk, i)], s[acc_to_a(kk, i) + 1]);
}

// The output's rows times their softmax factors: on every tile (skipping it when a warp's alphas were all 1, one
// vote a tile, measured 3-11 % slower on an H200 at q/k dims 64, 192 and 256: NOTES.md).
template <int kORegs>
__device__ __forceinline__ void rescale_rows(float (&o)[kORegs], const float (&alpha)[2]) {
#pragma unroll
  for (int i = 0; i < kORegs / 4; ++i) {
    o[4 * i] *= alpha[0], o[4 * i + 1] *= alpha[0];
    o[4 * i + 2] *= alpha[1], o[4 * i + 3] *= alpha[1];
  }
}

// Both, for a warpgroup with no P V in flight.
template <int kBlockM, int kBlockN, int kORegs, typename Element>
__device__ __forceinline__ void softmax_tile(const KernelArgs& args, float (&s)[kBlockN / 2], float (&o)[kORegs],
                                             uint32_t (&p)[kBlockN / 16][4], float (&row_max)[2],
                                             float (&row_sum)[2], const int (&row_q)[2], int n0, int m0, int len_k,
                                             int off, int lane) {
  float alpha[2];
  softmax_scores<kBlockM, kBlockN>(args, s, row_max, row_sum, alpha, row_q, n0, m0, len_k, off, lane);
  pack_p<kBlockN, Element>(s, p);
  rescale_rows(o, alpha);
}

// Stage A's epilogue (row sums over the quad; a row that saw no key writes zeros and lse -inf; NaN stays NaN),
// written straight from the accumulators: two values per 4-byte store.
template <int kORegs, typename Element>
__device__ __forceinline__ void store_rows(const KernelArgs& args, const float (&o)[kORegs], float (&row_sum)[2],
                                           const float (&row_max)[2], const int (&row_q)[2], int len_q, int q_start,
                                           int head, int lane) {
  constexpr int kDV = 2 * kORegs;
  float inv[2];
  bool empty[2];
  finish_rows(args, row_sum, row_max, row_q, len_q, q_start, head, lane, empty, inv);
#pragma unroll
  for (int e = 0; e < kORegs; e += 2) {
    const int r = (e >> 1) & 1;
    if (row_q[r] >= len_q) continue;
    uint16_t* dst = args.out + (int64_t(q_start + row_q[r]) * args.hq + head) * kDV + wgmma_sm90::acc_col(lane, e);
    *reinterpret_cast<uint32_t*>(dst) = empty[r] ? 0u : pack2<Element>(o[e] * inv[r], o[e + 1] * inv[r]);
  }
}

template <int kDQK, int kDV, typename Element>
__global__ void __launch_bounds__(WgmmaTile<kDQK, kDV>::kThreads, 1)
    flash_prefill_wgmma_kernel(const KernelArgs args) {
  using namespace wgmma_sm90;
  using W = WgmmaTile<kDQK, kDV>;
  constexpr int kBlockM = W::kBlockM, kBlockN = W::kBlockN, kThreads = W::kThreads;
  constexpr int kSRegs = kBlockN / 2, kORegs = kDV / 2;
  constexpr uint32_t kQSlab = kBlockM * kSlabRowBytes, kKSlab = kBlockN * kSlabRowBytes;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const uint32_t raw_u32 = smem_u32(smem_raw);
  const uint32_t q_u32 = (raw_u32 + kAtomBytes - 1) & ~(kAtomBytes - 1);  // slabs need 1024-byte alignment
  const uint32_t k_u32 = q_u32 + (kDQK / 64) * kQSlab, v_u32 = k_u32 + (kDQK / 64) * kKSlab;

  const TileOf t = tile_of(args, kBlockM);  // the tile, as stage A picks it
  if (t.m0 >= t.len_q) return;
  const int head = t.head, q_start = t.q_start, len_q = t.len_q, m0 = t.m0, k_start = t.k_start, len_k = t.len_k,
            off = t.off, kv_head = head / args.group;
  const int tid = threadIdx.x, group = tid / 128, warp = (tid / 32) % 4, lane = tid % 32;
  const KeyBlocks blocks =
      tile_key_blocks(m0, len_q, len_k, off, args.causal != 0, args.window_left, kBlockM, kBlockN);
  const int n_begin = blocks.begin, n_end = blocks.end;

  const int64_t q_stride = int64_t(args.hq) * kDQK, k_stride = int64_t(args.hkv) * kDQK,
                v_stride = int64_t(args.hkv) * kDV;
  const uint16_t* gQ = args.q + (int64_t(q_start + m0) * args.hq + head) * kDQK;
  const uint16_t* gK = args.k + (int64_t(k_start) * args.hkv + kv_head) * kDQK;
  const uint16_t* gV = args.v + (int64_t(k_start) * args.hkv + kv_head) * kDV;

  float o[kORegs];
#pragma unroll
  for (int e = 0; e < kORegs; ++e) o[e] = 0.f;
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.f, 0.f};
  // This thread's two rows (index in the sequence): accumulator elements with bit 1 clear, then set.
  const int row_q[2] = {m0 + 64 * group + acc_row(warp, lane, 0), m0 + 64 * group + acc_row(warp, lane, 2)};

  if (n_end > n_begin) {
    load_slabs<kBlockM, kDQK, kThreads>(q_u32, gQ, q_stride, len_q - m0, tid);
    load_slabs<kBlockN, kDQK, kThreads>(k_u32, gK + int64_t(n_end - 1) * kBlockN * k_stride, k_stride,
                                        len_k - (n_end - 1) * kBlockN, tid);
    cp_async_commit();
  }
  for (int n = n_end - 1; n >= n_begin; --n) {
    const int n0 = n * kBlockN;
    cp_async_wait_all();
    fence_async_smem();
    __syncthreads();  // K(n) landed for everyone and the tensor cores; every P V(n + 1) is done with V
    load_slabs<kBlockN, kDV, kThreads>(v_u32, gV + int64_t(n0) * v_stride, v_stride, len_k - n0, tid);
    cp_async_commit();

    float s[kSRegs];
    scores_tile<kBlockM, kBlockN, kDQK, Element>(s, q_u32, k_u32, group);

    uint32_t p[kBlockN / 16][4];
    softmax_tile<kBlockM, kBlockN, kORegs, Element>(args, s, o, p, row_max, row_sum, row_q, n0, m0, len_k, off, lane);

    cp_async_wait_all();
    fence_async_smem();
    __syncthreads();  // V(n) landed for everyone and the tensor cores; every S(n) is done with K
    // K(n - 1)'s loads go out before P V(n)'s MMAs for q/k dims up to 128 and after them above (P V reads V only):
    // each order measured the faster one for those dims on an H200 (NOTES.md).
    constexpr bool kLoadKAfterPV = kDQK > 128;
    if (!kLoadKAfterPV && n > n_begin) {
      load_slabs<kBlockN, kDQK, kThreads>(k_u32, gK + int64_t(n0 - kBlockN) * k_stride, k_stride,
                                          len_k - (n0 - kBlockN), tid);
      cp_async_commit();
    }
    issue_pv<kBlockN, kDV, Element>(o, p, v_u32);
    wgmma_commit();
    if (kLoadKAfterPV && n > n_begin) {
      load_slabs<kBlockN, kDQK, kThreads>(k_u32, gK + int64_t(n0 - kBlockN) * k_stride, k_stride,
                                          len_k - (n0 - kBlockN), tid);
      cp_async_commit();
    }
    wgmma_wait<0>();  // before the next barrier hands V's buffer to the next load
    fence_registers(o);
  }

  store_rows<kORegs, Element>(args, o, row_sum, row_max, row_q, len_q, q_start, head, lane);
}

// Launches `kKernel` (a kernel of the Hopper family, tiles `Tile`) over the call's tiles: the grid, the
// longest-first list and the shared memory as the wgmma kernels take them.
template <class Tile, auto kKernel>
void launch_on_tiles(const FlashPrefillParams& p, int max_seqlen_q, cudaStream_t stream) {
  KernelArgs args = kernel_args(p);
  allow_dynamic_smem<kKernel>(Tile::kSmemBytes);
  Tensor order;  // the longest-first tile list; freed at return, stream-ordered after the kernel reads it
  const dim3 grid =
      launch_grid(p, kLongestFirstWgmma ? 1 : 0, Tile::kBlockM, Tile::kBlockN, max_seqlen_q, order, args, stream);
  kKernel<<<grid, Tile::kThreads, Tile::kSmemBytes, stream>>>(args);
  MLARUN_CUDA_CHECK(cudaGetLastError());
}

// The wgmma launcher flash_prefill.h declares; one explicit instantiation per file under instantiations/.
template <int kHeadDimQK, int kHeadDimV, DType kDType>
void launch_flash_prefill_wgmma(const FlashPrefillParams& p, int max_seqlen_q, cudaStream_t stream) {
  using Element = typename ElementOf<kDType>::type;
  launch_on_tiles<WgmmaTile<kHeadDimQK, kHeadDimV>, flash_prefill_wgmma_kernel<kHeadDimQK, kHeadDimV, Element>>(
      p, max_seqlen_q, stream);
}

}  // namespace mlarun::ops::cuda::flash
