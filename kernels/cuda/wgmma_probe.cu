// The wgmma probe's kernels (wgmma_probe.h): one CTA each, operands loaded into 128-byte-swizzled slabs with plain
// 16-byte stores and published to the tensor cores by fence.proxy.async and a barrier (or, for the TMA probe's
// keys, copied by TMA and counted on an mbarrier), products issued back to back and waited for once, accumulators
// written out through the fragment map of wgmma_sm90.cuh.
#include "kernels/cuda/wgmma_probe.h"

#include <cuda_runtime.h>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/mma_sm80.cuh"
#include "kernels/cuda/tma_map.h"
#include "kernels/cuda/tma_sm90.cuh"
#include "kernels/cuda/wgmma_sm90.cuh"
#include "kernels/cuda/wgmma_sm90_mma.cuh"
#include "runtime/cuda_check.h"

namespace mlarun::ops::cuda {
namespace {

using namespace wgmma_sm90;

constexpr uint32_t kSlabBytes = kProbeRows * kSlabRowBytes;  // 64 rows of 128 bytes: 8 KB per slab
constexpr int kQkSlabs = kProbeDimQK / kSlabCols;            // 9
static_assert(kProbeDimV == 8 * kSlabCols && kProbeDimV / 2 == 256, "V: eight slabs, four per warpgroup");
constexpr size_t kSmemBytes = 2 * kQkSlabs * kSlabBytes + kAtomBytes;  // two operands, plus alignment slack

// Rows x cols (cols a multiple of 64) of a row-major bf16 matrix into consecutive slabs at `slabs` (1024-aligned
// shared-memory address), by all threads of the CTA; the writer's fence makes it visible to wgmma after a barrier.
__device__ void load_slabs(const uint16_t* src, int rows, int cols, unsigned char* smem, uint32_t slabs) {
  const int chunks_per_row = cols / 8;  // 16-byte chunks
  for (int i = threadIdx.x; i < rows * chunks_per_row; i += blockDim.x) {
    const int r = i / chunks_per_row, c = (i % chunks_per_row) * 8;
    const uint32_t at = slabs + (c / kSlabCols) * uint32_t(rows) * kSlabRowBytes + slab_offset(r, c % kSlabCols);
    *reinterpret_cast<uint4*>(smem + (swizzle128(at) - slabs)) = *reinterpret_cast<const uint4*>(src + r * cols + c);
  }
  fence_async_smem();
}

__device__ unsigned char* aligned_smem(uint32_t& addr) {
  extern __shared__ __align__(16) unsigned char raw[];
  const uint32_t base = mma_sm80::smem_u32(raw);
  addr = (base + kAtomBytes - 1) & ~(kAtomBytes - 1);
  return raw + (addr - base);
}

// Q [kProbeRows x 576] into the first nine slabs and the keys [kProbeTokens x 576] into the nine after them (their
// address: the returned one plus kKeysOffset), both landed for the whole CTA on return. Returns Q's address.
constexpr uint32_t kKeysOffset = kQkSlabs * kSlabBytes;
__device__ uint32_t load_scores_operands(const uint16_t* q, const uint16_t* keys) {
  uint32_t base;
  unsigned char* smem = aligned_smem(base);
  load_slabs(q, kProbeRows, kProbeDimQK, smem, base);
  load_slabs(keys, kProbeTokens, kProbeDimQK, smem + kKeysOffset, base + kKeysOffset);
  __syncthreads();
  return base;
}

// S = Q . K^T over 576 into d (each warpgroup computes all of it): nine slabs x four k-steps.
__device__ __forceinline__ void scores(float (&d)[32], uint32_t q_slabs, uint32_t k_slabs) {
  wgmma_fence();
#pragma unroll
  for (int s = 0; s < kQkSlabs; ++s)
#pragma unroll
    for (int k = 0; k < 4; ++k)
      Mma<64>::ss<0>(d, k_major_desc(q_slabs + s * kSlabBytes, k), k_major_desc(k_slabs + s * kSlabBytes, k),
                     s + k > 0);
  wgmma_commit();
  wgmma_wait<0>();
  fence_registers(d);
}

// O[:, 256 g ..] = P . V for warpgroup g, P as four k-steps of A fragments, V in N-major slabs.
__device__ __forceinline__ void pv(float (&o)[128], const uint32_t (&p)[4][4], uint32_t v_slabs, int g) {
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < 4; ++kk)
    Mma<256>::rs<1>(o, p[kk], n_major_desc(v_slabs + 4 * g * kSlabBytes, 16 * kk, kSlabBytes), kk > 0);
  wgmma_commit();
  wgmma_wait<0>();
  fence_registers(o);
}

__device__ void store_acc(const float* d, int n, float* out, int ld, int col0) {
  const int warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32;
  for (int e = 0; e < n; ++e) out[acc_row(warp, lane, e) * ld + col0 + acc_col(lane, e)] = d[e];
}

__global__ void __launch_bounds__(128) probe_scores(const uint16_t* q, const uint16_t* k, float* out) {
  const uint32_t base = load_scores_operands(q, k);
  float d[32];
#pragma unroll
  for (int i = 0; i < 32; ++i) d[i] = 0.f;
  scores(d, base, base + kKeysOffset);
  store_acc(d, 32, out, kProbeTokens, 0);
}

__global__ void __launch_bounds__(256) probe_pv(const uint16_t* p_src, const uint16_t* v, float* out) {
  uint32_t base;
  unsigned char* smem = aligned_smem(base);
  load_slabs(v, kProbeTokens, kProbeDimV, smem, base);
  __syncthreads();
  const int g = threadIdx.x / 128, warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32;
  uint32_t p[4][4];  // A fragments: rows 16 warp + lane / 4 (+ 8), tokens 16 kk + 2 (lane % 4) (+ 1, + 8)
  const uint32_t* src = reinterpret_cast<const uint32_t*>(p_src);
  const int r = 16 * warp + lane / 4, c = 2 * (lane % 4);
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    p[kk][0] = src[(r * kProbeTokens + 16 * kk + c) / 2];
    p[kk][1] = src[((r + 8) * kProbeTokens + 16 * kk + c) / 2];
    p[kk][2] = src[(r * kProbeTokens + 16 * kk + 8 + c) / 2];
    p[kk][3] = src[((r + 8) * kProbeTokens + 16 * kk + 8 + c) / 2];
  }
  float o[128];
#pragma unroll
  for (int i = 0; i < 128; ++i) o[i] = 0.f;
  pv(o, p, base, g);
  store_acc(o, 128, out, kProbeDimV, 256 * g);
}

__global__ void __launch_bounds__(256) probe_attention(const uint16_t* q, const uint16_t* kv, float* out) {
  const uint32_t base = load_scores_operands(q, kv);
  const int g = threadIdx.x / 128;
  float s[32];
#pragma unroll
  for (int i = 0; i < 32; ++i) s[i] = 0.f;
  scores(s, base, base + kKeysOffset);
  // The score accumulator of tokens 16 kk .. + 16 is the A fragment of k-step kk: n8 tiles 2 kk and 2 kk + 1.
  uint32_t p[4][4];
#pragma unroll
  for (int kk = 0; kk < 4; ++kk)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int e = acc_to_a(kk, i);  // registers: (row g, k lo), (g + 8, lo), (g, hi), (g + 8, hi)
      p[kk][i] = mma_sm80::pack2<__nv_bfloat16>(s[e] * kProbeScoreScale, s[e + 1] * kProbeScoreScale);
    }
  float o[128];
#pragma unroll
  for (int i = 0; i < 128; ++i) o[i] = 0.f;
  pv(o, p, base + kKeysOffset, g);  // V: the first eight slabs of the cached rows
  store_acc(o, 128, out, kProbeDimV, 256 * g);
}

// The keys by TMA: thread 0 arms the barrier with the tile's bytes and issues every box (run j, slab s) into its
// place in the key slabs; warpgroup 1 waits on the barrier and computes S. Q comes by plain stores as above.
__global__ void __launch_bounds__(256) probe_scores_tma(const __grid_constant__ CUtensorMap keys, const uint16_t* q,
                                                        const TmaProbeKeys tile, float* out) {
  __shared__ __align__(8) uint64_t full;
  uint32_t base;
  unsigned char* smem = aligned_smem(base);
  const uint32_t bar = mma_sm80::smem_u32(&full);
  if (threadIdx.x == 0) tma_sm90::mbarrier_init(bar, 1);
  load_slabs(q, kProbeRows, kProbeDimQK, smem, base);
  __syncthreads();
  const uint32_t k_slabs = base + kKeysOffset;
  if (threadIdx.x == 0) {
    tma_sm90::mbarrier_arrive_expect_tx(bar, uint32_t(kProbeTokens) * kProbeDimQK * 2);
    for (int j = 0; j < tile.runs; ++j)
      for (int s = 0; s < kQkSlabs; ++s)
        tma_sm90::tma_load_2d(k_slabs + s * kSlabBytes + uint32_t(j * tile.box_rows) * kSlabRowBytes, &keys, bar,
                              s * int(kSlabCols), tile.first_row[j]);
  }
  if (threadIdx.x < 128) return;
  tma_sm90::mbarrier_wait_or_trap(bar, 0, 1u << 20);  // a wrong byte count fails the launch, not hangs it
  float d[32];
#pragma unroll
  for (int i = 0; i < 32; ++i) d[i] = 0.f;
  scores(d, base, k_slabs);
  store_acc(d, 32, out, kProbeTokens, 0);
}

}  // namespace

void wgmma_tma_probe(const uint16_t* q, const TmaProbeKeys& keys, float* out) {
  MLARUN_CHECK(keys.box_rows >= 8 && keys.box_rows % 8 == 0 && keys.runs >= 1 && keys.runs <= 8 &&
                   keys.box_rows * keys.runs == kProbeTokens,
               "wgmma_tma_probe: ", keys.runs, " runs of ", keys.box_rows,
               " rows must be 1..8 runs of a multiple of 8 rows, 64 rows in all");
  for (int j = 0; j < keys.runs; ++j)
    MLARUN_CHECK(keys.first_row[j] >= 0 && keys.first_row[j] + keys.box_rows <= keys.pool_rows,
                 "wgmma_tma_probe: run ", j, " rows [", keys.first_row[j], ", +", keys.box_rows,
                 ") are outside the pool's ", keys.pool_rows, " rows");
  const CUtensorMap map = make_tma_map({keys.pool, uint64_t(keys.pool_rows), kProbeDimQK, kProbeDimQK * 2,
                                        uint32_t(keys.box_rows)});
  allow_dynamic_smem<probe_scores_tma>(kSmemBytes);
  probe_scores_tma<<<1, 256, kSmemBytes>>>(map, q, keys, out);
  MLARUN_CUDA_CHECK(cudaGetLastError());
  MLARUN_CUDA_CHECK(cudaDeviceSynchronize());
}

void wgmma_probe(WgmmaProbe which, const uint16_t* a, const uint16_t* b, float* out) {
  switch (which) {
    case WgmmaProbe::Scores:
      allow_dynamic_smem<probe_scores>(kSmemBytes);
      probe_scores<<<1, 128, kSmemBytes>>>(a, b, out);
      break;
    case WgmmaProbe::PV:
      allow_dynamic_smem<probe_pv>(kSmemBytes);
      probe_pv<<<1, 256, kSmemBytes>>>(a, b, out);
      break;
    case WgmmaProbe::Attention:
      allow_dynamic_smem<probe_attention>(kSmemBytes);
      probe_attention<<<1, 256, kSmemBytes>>>(a, b, out);
      break;
  }
  MLARUN_CUDA_CHECK(cudaGetLastError());
  MLARUN_CUDA_CHECK(cudaDeviceSynchronize());
}

}  // namespace mlarun::ops::cuda
