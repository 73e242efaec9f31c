// The MLA decode attend kernel on wgmma with warp specialization (AttendKernel::WgmmaWarpSpecialized, sm_90a):
// attend_wgmma.cu's unsplit kernel (64 rows x 64 cached tokens a step, each computing warpgroup scores all 64
// tokens with m64n64k16 and multiplies P, from registers, by its 256 of the 512 latent columns), with its two
// warpgroups no longer in step. Why: ncu showed that kernel's warps with nothing to issue most of the time, the two
// warpgroups waiting at the same CTA-wide barriers in turn with the loads, so the tensor cores idle through every
// softmax. Here
//   warpgroup 0 loads: per piece the q rows, then each step's cached tile into a two-stage ring (cp.async, one
//            row per two threads, the block table read per row), and publishes a stage on its `full` mbarrier once
//            its copies have landed (each loader waits for its own copies, fences them for the tensor cores and
//            arrives: the same hand-off as the unsplit kernel's, with an mbarrier in place of __syncthreads);
//   warpgroups 1 and 2 compute: each waits for a stage's `full`, and arrives on its `empty` after its last MMA
//            reading it, which is what the loader waits for before refilling it. Nothing else joins them, so
//            one's softmax can run while the other's MMAs hold the tensor cores.
// q gets the same pair of barriers (q_full, q_empty) per piece. Phases run on over the CTA's pieces (ws_ring.h: the
// parities, played out on the CPU by tests/kernels/test_mla_decode_ws_ring.cpp). setmaxnreg gives the loader's registers to the computing warpgroups. Waits trap after a
// long time instead of hanging a launch whose protocol is broken. Schedule, masks, softmax (attend_wgmma_rows.cuh),
// partials and whole-piece outputs are the other attend kernels'. bf16 rows.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cuda_runtime_api.h>

#include "kernels/cuda/mla_decode/attend_common.cuh"
#include "kernels/cuda/mla_decode/attend_wgmma_rows.cuh"
#include "kernels/cuda/mla_decode/mla_decode.h"
#include "kernels/cuda/mla_decode/wgmma_lanes.h"
#include "kernels/cuda/mla_decode/ws_ring.h"
#include "kernels/cuda/mma_sm80.cuh"
#include "kernels/cuda/tma_sm90.cuh"
#include "kernels/cuda/wgmma_sm90.cuh"
#include "kernels/cuda/wgmma_sm90_mma.cuh"
#include "runtime/cuda_check.h"

namespace mlarun::ops::cuda {
namespace {

using namespace mla;
using namespace wgmma_sm90;

constexpr Format kF = Format::Bf16;
constexpr int kRowChunks = kHeadDimQK / 8;  // 16-byte pieces of a q row or a cached row: 72
constexpr int kLoaders = 128;               // warpgroup 0
constexpr int kComputers = kWsThreads - kLoaders;
// Polls of a barrier before a wait gives up and traps. Each poll waits in hardware for a while, so this is seconds:
// far beyond any legitimate wait (one piece's work), short of a hung test run.
constexpr uint32_t kStuckPolls = 1u << 22;

// The CTA's mbarriers, kWsBarriers words after the ring: full[stage], empty[stage], q_full, q_empty.
struct Barriers {
  uint32_t base;
  __device__ __forceinline__ uint32_t full(int stage) const { return base + 8 * stage; }
  __device__ __forceinline__ uint32_t empty(int stage) const { return base + 8 * (kWgStages + stage); }
  __device__ __forceinline__ uint32_t q_full() const { return base + 8 * (2 * kWgStages); }
  __device__ __forceinline__ uint32_t q_empty() const { return base + 8 * (2 * kWgStages + 1); }
};
static_assert(2 * kWgStages + 2 == kWsBarriers, "config.h counts the barriers");

__device__ __forceinline__ void wait_phase(uint32_t bar, uint32_t parity) {
  tma_sm90::mbarrier_wait_or_trap(bar, parity, kStuckPolls);
}

// Warpgroup 0: every piece's q rows and cached tiles, in the order the computing warpgroups take them.
__device__ __forceinline__ void load_pieces(const AttendArgs& a, unsigned char* q_s, unsigned char* ring,
                                            const Barriers& bars, int row0) {
  const int tid = threadIdx.x;
  const int piece_end = a.part_piece_begin[blockIdx.x + 1];
  int n = 0, np = 0;  // tiles and pieces loaded so far
  for (int pi = a.part_piece_begin[blockIdx.x]; pi < piece_end; ++pi) {
    const PieceView pv = piece_view(a, pi);
    if (row0 >= pv.rows) continue;  // as the computing warpgroups do
    const int num_steps = (pv.num_tiles + 1) / 2;
    for (int it = 0; it < num_steps; ++it, ++n) {
      const int stage = ws::stage_of(n, kWgStages);
      wait_phase(bars.empty(stage), ws::empty_parity(n, kWgStages));  // its previous tile's readers are done
      load_kv_rows<kF, kWgBlockN, kLoaders>(a, ring + stage * kWgStageBytes, pv.seq, pv.tok_begin + it * kWgBlockN,
                                            pv.tok_end, SlabRows{});
      if (it == 0) {  // the piece's q rows (zeros past the sequence's rows), once the last piece's scores are done
        wait_phase(bars.q_empty(), ws::q_empty_parity(np));
        const uint16_t* q_src = a.q + (int64_t(pv.q_begin) * a.num_heads + row0) * kHeadDimQK;
        for (int c = tid; c < kWgRows * kRowChunks; c += kLoaders) {
          const int r = c / kRowChunks, off = (c % kRowChunks) * 16;
          unsigned char* dst = SlabRows{}(q_s, r, off);
          if (row0 + r < pv.rows)
            cp_async_16(dst, reinterpret_cast<const unsigned char*>(q_src + r * kHeadDimQK) + off);
          else
            *reinterpret_cast<uint4*>(dst) = make_uint4(0u, 0u, 0u, 0u);
        }
      }
      cp_async_commit();
      cp_async_wait<0>();  // this thread's copies have landed
      fence_async_smem();  // ... where the tensor cores will read them
      if (it == 0) tma_sm90::mbarrier_arrive(bars.q_full());
      tma_sm90::mbarrier_arrive(bars.full(stage));
    }
    np += num_steps > 0;  // a piece without steps (the scheduler makes none) needs no q
  }
}

// Warpgroups 1 and 2 (`group` 0 and 1 here): the unsplit wgmma kernel's steps, each warpgroup on its own.
__device__ __forceinline__ void attend_pieces(const AttendArgs& a, uint32_t q_u32, uint32_t ring_u32,
                                              const Barriers& bars, int row0) {
  const int tid = threadIdx.x - kLoaders, lane = tid & 31, warp = (tid >> 5) & 3, group = tid >> 7;
  const int piece_end = a.part_piece_begin[blockIdx.x + 1];
  const int r_lo = acc_row(warp, lane, 0), r_hi = acc_row(warp, lane, 2);  // this thread's two rows (S and O)
  int n = 0, np = 0;  // tiles and pieces taken so far
  for (int pi = a.part_piece_begin[blockIdx.x]; pi < piece_end; ++pi) {
    const PieceView pv = piece_view(a, pi);
    if (row0 >= pv.rows) continue;  // uniform over the CTA
    const int num_steps = (pv.num_tiles + 1) / 2;  // 64-token steps over the scheduler's 32-token tiles

    WgSoftmax sm;
    sm.start(a, pv, row0, r_lo, r_hi);
    float o[128];
#pragma unroll
    for (int e = 0; e < 128; ++e) o[e] = 0.f;
    if (num_steps > 0) wait_phase(bars.q_full(), ws::q_full_parity(np));

    for (int it = 0; it < num_steps; ++it, ++n) {
      const int stage = ws::stage_of(n, kWgStages);
      wait_phase(bars.full(stage), ws::full_parity(n, kWgStages));
      const uint32_t stage_u32 = ring_u32 + uint32_t(stage * kWgStageBytes);
      const int tok0 = pv.tok_begin + it * kWgBlockN;  // token of score column 0

      float s[kWgBlockN / 2];
#pragma unroll
      for (int e = 0; e < kWgBlockN / 2; ++e) s[e] = 0.f;
      wgmma_fence();
#pragma unroll
      for (int slab = 0; slab < kWgSlabs; ++slab)
#pragma unroll
        for (int k = 0; k < 4; ++k)
          Mma<kWgBlockN>::ss<0>(s, wg::q_desc(q_u32, slab, k), wg::k_desc(stage_u32, slab, k, 0), slab + k > 0);
      wgmma_commit();
      wgmma_wait<0>();
      fence_registers(s);
      if (it + 1 == num_steps) tma_sm90::mbarrier_arrive(bars.q_empty());  // the piece's last read of q

      float mx[2], alpha[2], m_use[2];
      sm.row_max(s, tok0, lane, a.scale_log2, mx);
      sm.advance(mx, alpha, m_use);
      uint32_t p[kWgBlockN / 16][4];
      sm.probabilities(s, m_use, p);
      rescale_o(o, alpha);

      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) Mma<256>::rs<1>(o, p[kk], wg::v_desc(stage_u32, group, kk), 1);
      wgmma_commit();
      wgmma_wait<0>();
      fence_registers(o);
      tma_sm90::mbarrier_arrive(bars.empty(stage));  // this warpgroup's last read of the stage is done
    }
    np += num_steps > 0;  // a piece without steps (the scheduler makes none) reads no q: zeros and -inf below

    // The piece's result: final rows when it is its sequence's only piece, else a partial. Each warpgroup saw
    // every token, so its row sums are whole.
    const float lsum[2] = {quad_sum(sm.l[0]), quad_sum(sm.l[1])};
    finish_wg_rows(a, pi, pv, piece_is_whole(a, pv), row0, r_lo, r_hi, group, lane, lsum, sm.m, o);
  }
}

__global__ void __launch_bounds__(kWsThreads, 1) mla_decode_attend_wgmma_ws_kernel(const AttendArgs a) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const uint32_t raw_u32 = mma_sm80::smem_u32(smem_raw);
  const uint32_t q_u32 = (raw_u32 + kAtomBytes - 1) & ~(kAtomBytes - 1);  // slabs need 1024-byte alignment
  const uint32_t ring_u32 = q_u32 + uint32_t(kWgQBytes);
  const Barriers bars{ring_u32 + uint32_t(kWgStages * kWgStageBytes)};
  unsigned char* q_s = smem_raw + (q_u32 - raw_u32);
  unsigned char* ring = q_s + kWgQBytes;
  const int row0 = blockIdx.y * kWgRows;

  if (threadIdx.x == 0) {
    for (int stage = 0; stage < kWgStages; ++stage) {
      tma_sm90::mbarrier_init(bars.full(stage), kLoaders);
      tma_sm90::mbarrier_init(bars.empty(stage), kComputers);
    }
    tma_sm90::mbarrier_init(bars.q_full(), kLoaders);
    tma_sm90::mbarrier_init(bars.q_empty(), kComputers);
  }
  __syncthreads();  // the last CTA-wide barrier: from here the warpgroups meet only at the mbarriers

  if (threadIdx.x < kLoaders) {
    setmaxnreg_dec<kWsLoaderRegs>();
    load_pieces(a, q_s, ring, bars, row0);
  } else {
    setmaxnreg_inc<kWsMathRegs>();
    attend_pieces(a, q_u32, ring_u32, bars, row0);
  }
}

}  // namespace

namespace mla {

void launch_mla_decode_attend_wgmma_ws(const MlaDecodeParams& p, const WorkspaceLayout& w, cudaStream_t stream) {
  MLARUN_CHECK(p.kv_format == Format::Bf16, "mla_decode: the wgmma attend kernels read bf16 rows, not ",
               mla_kv_format_name(p.kv_format));
  allow_dynamic_smem<mla_decode_attend_wgmma_ws_kernel>(kWsSmemBytes);
  mla_decode_attend_wgmma_ws_kernel<<<attend_grid(p, w), kWsThreads, kWsSmemBytes, stream>>>(attend_args(p, w));
  MLARUN_CUDA_CHECK(cudaGetLastError());
}

}  // namespace mla
}  // namespace mlarun::ops::cuda
