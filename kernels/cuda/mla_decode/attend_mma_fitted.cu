// The MLA decode attend kernel on tensor cores with the M tile fitted to the rows (config.h, "fitted"): what the
// 32-row kernel (attend_mma.cu) measured on an H200 asked for. That one is latency-bound (ncu: one 8-warp CTA per
// SM, 6.6 cycles between a warp's instructions, DRAM at 24 %), computes 32 rows where 16 heads have 16, and each
// warp's scores are one chain of 36 dependent MMAs. Here, per tile of kBlockN = 32 cached rows:
//   scores  S[M x 32] = Q . K^T over 576 on mma.sync m16n8k16, M = 16, 32 or 64 (mma_lanes.h fit_*): at 16 rows
//           two warps share a token tile's 576 values (two score buffers the softmax adds), at 64 rows a warp's q
//           fragment serves two token tiles; two accumulator chains per tile (even and odd k-steps);
//   softmax online, base 2, fp32, one token per lane (attend_common.cuh), the row sums added over the lanes once
//           per piece; P rounded to bf16 for the product;
//   P.V     O[M x 512] += P . V: warp w owns columns [64 w, 64 w + 64) of all M / 16 row tiles.
// The ring holds fit_stages(M) tiles (2 at 16 rows, where two CTAs share an SM; 4 and 3 above). A tile's loads are
// issued after the barrier that opens the step before it is needed, so no barrier closes a step: three per tile.
// Same schedule, masks, partials and whole-piece outputs as the other attend kernels. fp8/int8 rows as the 32-row
// kernel reads them: codes widened to bf16 in a buffer of their own after the tile lands (one more barrier), each
// 128-value tile's products of the scores folded in once times its tokens' scales, one P per scale tile with the
// token's scale in it. Or, with MlaDecodeParams::codes_in_registers, each lane reads its fragments' codes from the
// ring itself as f16 (quant_fragments.cuh): no widening pass, no bf16 codes, a ring of four tiles at 16 rows, taken
// two tiles a step there (fit_step_tiles_codes_in_registers: each warp scores 8 tokens of each, one q fragment for
// both; one row maximum, scale exponent and three barriers per 64 tokens). On an H100 it runs the TP 8 shape at
// 2.15 TB/s, 1.95x the 32-row kernel: AttendKernel::Auto's choice up to 63 rows and over quantized rows (NOTES.md in
// this folder).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <type_traits>

#include <cuda_runtime_api.h>

#include "kernels/cuda/mla_decode/attend_common.cuh"
#include "kernels/cuda/mla_decode/mla_decode.h"
#include "kernels/cuda/mla_decode/mma_lanes.h"
#include "kernels/cuda/mla_decode/quant_fragments.cuh"
#include "kernels/cuda/mma_sm80.cuh"
#include "runtime/cuda_check.h"

namespace mlarun::ops::cuda {
namespace {

using namespace mla;
using namespace mma_sm80;

// Shared memory with M rows per CTA for format F: q | ring | [codes as bf16, unless kRegCodes] | scores (one buffer
// per tile of a step and share of the 576) | P (one per tile of a step, or one per 128-value scale tile) | alpha,
// 1/l.
template <int kM, Format F, bool kRegCodes>
struct FitSmem {
  static constexpr bool kQuant = F != Format::Bf16;
  static constexpr bool kWiden = kQuant && !kRegCodes;  // codes widened to bf16 in shared memory
  static constexpr int kStages = kQuant && kRegCodes ? fit_stages_codes_in_registers(kM) : fit_stages(kM);
  static constexpr int kStepTiles = kQuant && kRegCodes ? fit_step_tiles_codes_in_registers(kM) : 1;
  // One P per scale tile when the codes are widened, else one per tile of the step (codes in registers: each warp
  // forms P' in P.V's fragments).
  static constexpr int kPTiles = kWiden ? kQuantTiles : kStepTiles;
  static constexpr size_t kRing = fit_smem_q_bytes(kM);
  static constexpr size_t kCodes = kRing + size_t(kStages) * kBlockN * RowOf<F>::kSmemStride;
  static constexpr size_t kScores = kCodes + (kWiden ? kSmemMmaCBytes : 0);
  static constexpr size_t kP = kScores + kStepTiles * fit_smem_s_bytes(kM);
  static constexpr size_t kRows = kP + kPTiles * fit_smem_p_bytes(kM);
  static constexpr size_t kBytes = kRows + size_t(2) * kM * 4;
};
static_assert(FitSmem<16, Format::Bf16, false>::kBytes == fit_smem_bytes(16) &&
                  FitSmem<64, Format::Bf16, false>::kBytes == fit_smem_bytes(64) &&
                  FitSmem<16, Format::Fp8, false>::kBytes == fit_smem_quant_bytes(16) &&
                  FitSmem<16, Format::Int8, true>::kBytes == fit_smem_codes_in_registers_bytes(16) &&
                  FitSmem<64, Format::Fp8, true>::kBytes == fit_smem_codes_in_registers_bytes(64),
              "config.h");
static_assert(lanes::fit_k_splits(16) == fit_score_splits(16) && lanes::fit_k_splits(64) == fit_score_splits(64),
              "one score buffer per share of the 576 values");
static_assert(kQuantTile % 32 == 0 && (kHeadDimQK / 2) % 32 == 0,
              "a 32-value step of the scores never straddles a scale tile, the latent's end or a warp's share");

// kRegCodes (quantized F only): codes read into the fragments as f16 (quant_fragments.cuh) instead of widened.
template <int kM, Format F, bool kRegCodes>
__global__ void __launch_bounds__(kThreads, fit_ctas_per_sm(kM)) mla_decode_attend_fitted_kernel(const AttendArgs a) {
  using S = FitSmem<kM, F, kRegCodes>;
  constexpr bool kQuant = S::kQuant, kWiden = S::kWiden, kF16 = kQuant && kRegCodes;
  constexpr int kStages = S::kStages;
  constexpr int kStepTiles = S::kStepTiles;  // cached tiles per step: adjacent stages of the ring
  constexpr int kMTiles = kM / 16;
  constexpr int kTokTiles = lanes::fit_tok_tiles_per_warp(kM);  // a warp's score tiles in one cached tile
  constexpr int kWarpTiles = kTokTiles * kStepTiles;            // ... in a step (one q fragment serves them all)
  constexpr int kChains = kStepTiles > 1 ? 1 : 2;  // accumulator chains per score tile (even and odd k-steps)
  constexpr int kKLen = lanes::fit_k_len(kM);                   // values of the 576 a warp's scores cover
  constexpr int kSplits = lanes::fit_k_splits(kM);
  constexpr int kRowsPerWarp = kM / kWarps;                     // softmax rows
  constexpr int kRowStride = RowOf<F>::kSmemStride;             // bytes per cached row in the ring
  constexpr int kStageBytes = kBlockN * kRowStride;
  constexpr int kLatStride = kWiden ? kMmaCStride * 2 : kRowStride;  // bytes per row of the bf16 latent
  constexpr int kRopeOffset = kQuant ? kQuantRopeOffset : 2 * kKvLoraRank;  // k_pe's bytes in a ring row
  constexpr int kVTiles = kMmaColsPerWarp / 8;                  // n8 tiles of a warp's P.V columns
  static_assert(kKLen % 32 == 0 && kM % 16 == 0 && kRowsPerWarp >= 1, "whole k pairs, whole m16 tiles");
  static_assert(kSplits <= 2, "the softmax adds at most two score buffers");
  static_assert(!kRegCodes || kQuant, "codes in registers: quantized rows only");
  static_assert(kStages % kStepTiles == 0 && kStages >= 2 * kStepTiles && (kStepTiles == 1 || kF16),
                "a step's tiles are adjacent stages, one step loads while another computes; codes in registers");
  extern __shared__ __align__(16) unsigned char smem[];
  uint16_t* q_s = reinterpret_cast<uint16_t*>(smem);              // [kM][kMmaQStride] bf16
  unsigned char* kv_s = smem + S::kRing;                          // [kStages][32] cached rows as stored
  uint16_t* c_s = reinterpret_cast<uint16_t*>(smem + S::kCodes);  // kWiden: [32][kMmaCStride] bf16 codes
  float* s_s = reinterpret_cast<float*>(smem + S::kScores);       // [kStepTiles][kSplits][kM][kMmaSStride]
  uint16_t* p_s = reinterpret_cast<uint16_t*>(smem + S::kP);      // [kPTiles][kM][kMmaPStride] Elem
  float* alpha_s = reinterpret_cast<float*>(smem + S::kRows);     // [kM]
  float* inv_l_s = alpha_s + kM;                                  // [kM]

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int row0 = blockIdx.y * kM;
  const int piece_end = a.part_piece_begin[blockIdx.x + 1];
  // The lanes' ldmatrix addresses and accumulator elements (mma_lanes.h, checked on the CPU by emulation).
  const int s_m = lanes::fit_score_row0(kM, warp), s_n = lanes::fit_score_tok0(kM, warp);
  const int k0 = lanes::fit_k0(kM, warp), pv_col0 = lanes::pv_col0(warp);
  const uint32_t q_lane = smem_u32(q_s + (s_m + lanes::a_row(lane)) * kMmaQStride + k0 + lanes::a_col(lane));
  const int k_tok = s_n + lanes::k_tok(lane), k_col = lanes::k_col(lane);
  const uint32_t c_u32 = smem_u32(c_s);
  const int p_tile = kQuant ? pv_col0 / kQuantTile : 0;  // the scale tile of this warp's columns
  const uint32_t p_lane = smem_u32(p_s + ((kWiden ? p_tile : 0) * kM + lanes::a_row(lane)) * kMmaPStride +
                                   lanes::a_col(lane));
  const int v_lane_off = lanes::v_tok(lane) * kLatStride + (pv_col0 + lanes::v_col(lane)) * 2;  // bytes
  float* s_mine = s_s + lanes::fit_k_split(kM, warp) * kM * kMmaSStride;

  for (int pi = a.part_piece_begin[blockIdx.x]; pi < piece_end; ++pi) {
    const PieceView pv = piece_view(a, pi);
    const int rows = pv.rows;
    if (row0 >= rows) continue;  // uniform over the CTA

    // The ring's first kStages - kStepTiles tiles, one commit group each (empty past the piece, so the counts hold).
    // A step's tiles past the piece's last are loaded too, as zeros (every row past tok_end is), so that the step's
    // masked tokens read zeros and not a stale tile's values (NaN among them).
    const int tiles_loaded = (pv.num_tiles + kStepTiles - 1) / kStepTiles * kStepTiles;
#pragma unroll
    for (int st = 0; st < kStages - kStepTiles; ++st) {
      if (st < tiles_loaded)
        load_kv_tile<F>(a, kv_s + st * kStageBytes, pv.seq, pv.tok_begin + st * kBlockN, pv.tok_end);
      cp_async_commit();
    }
    // q rows [row0, row0 + kM) as stored (bf16), zeros past the sequence's rows; or, codes in registers, as f16
    // in units of 2^-e per row (q_unit: 2^-e, the softmax's factor for the row's scores).
    const uint16_t* q_src = a.q + (int64_t(pv.q_begin) * a.num_heads + row0) * kHeadDimQK;
    float q_unit[kRowsPerWarp];
    if constexpr (kF16) {
      stage_q_rows_f16(q_src, rows - row0, q_s, warp, lane, q_unit);
    } else {
#pragma unroll
      for (int j = 0; j < kRowsPerWarp; ++j) q_unit[j] = 1.f;
      for (int c = tid; c < kM * (kHeadDimQK / 8); c += kThreads) {
        const int r = c / (kHeadDimQK / 8), col = (c % (kHeadDimQK / 8)) * 8;
        const uint4 v = row0 + r < rows ? __ldg(reinterpret_cast<const uint4*>(q_src + r * kHeadDimQK + col))
                                        : make_uint4(0u, 0u, 0u, 0u);
        *reinterpret_cast<uint4*>(q_s + r * kMmaQStride + col) = v;
      }
    }
    int unit_exp = 0;  // codes in registers: the accumulators are in units of 2^unit_exp (step_scale_exp)

    SoftmaxRowsOf<kRowsPerWarp, true> softmax;  // this warp's rows
    softmax.start(a, pv, row0, warp);
    float acc[kMTiles][kVTiles][4];  // [m16 tile][n8 tile][fragment]
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
      for (int nt = 0; nt < kVTiles; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[mt][nt][e] = 0.f;

    // The block-table entries of this thread's rows of the next step's loads, read a step ahead: the reads'
    // latency passes during a step's work instead of between the barrier and the scores.
    int32_t next_block[kStepTiles];
#pragma unroll
    for (int t = 0; t < kStepTiles; ++t)
      next_block[t] = row_block<kBlockN, kThreads>(a, pv.seq, pv.tok_begin + (kStages - kStepTiles + t) * kBlockN,
                                                   pv.tok_end);
    for (int it = 0; it < pv.num_tiles; it += kStepTiles) {
      cp_async_wait<kStages - 2 * kStepTiles>();  // this thread's loads of the step's tiles `it`.. have landed
      __syncthreads();  // everyone's (and q_s); every warp is past the step before, so its stages are free
#pragma unroll
      for (int t = 0; t < kStepTiles; ++t) {
        const int next = it + kStages - kStepTiles + t;
        if (next < tiles_loaded)
          load_kv_tile_of_block<F>(a, kv_s + (next % kStages) * kStageBytes, pv.seq, pv.tok_begin + next * kBlockN,
                                   pv.tok_end, next_block[t]);
        cp_async_commit();
        next_block[t] = row_block<kBlockN, kThreads>(a, pv.seq, pv.tok_begin + (next + kStepTiles) * kBlockN,
                                                     pv.tok_end);
        if (a.l2_prefetch_tiles > 0 && next + a.l2_prefetch_tiles < pv.num_tiles)
          prefetch_kv_rows_l2<F>(a, pv.seq, pv.tok_begin + (next + a.l2_prefetch_tiles) * kBlockN, pv.tok_end);
      }
      const int tok0 = pv.tok_begin + it * kBlockN;
      const unsigned char* kv = kv_s + (it % kStages) * kStageBytes;
      const uint32_t kv_u32 = smem_u32(kv);
      if constexpr (kWiden) {
        widen_codes<F>(kv, c_s, tid);
        __syncthreads();  // the tile's codes as bf16, for every warp
      }
      const uint32_t lat_u32 = kWiden ? c_u32 : kv_u32;

      // Scores of this warp's tiles over its share of the 576 values: even k-steps into chain 0, odd into 1. A
      // quantized latent is scaled per 128-value tile: a tile's products are summed unscaled and folded into the
      // score once, times its tokens' scales. The share's bounds are template arguments (share_scores), so the
      // split of its steps into scale tiles and k_pe is fixed at compile time and no step branches on it.
      // Score tile t of the warp: tokens tile_tok(t) .. + 8 of the step (stage t / kTokTiles of its tiles).
      const auto tile_tok = [&](int t) { return s_n + 8 * (t % kTokTiles) + kBlockN * (t / kTokTiles); };
      // Score accumulators: kChains chains per score tile, added once the tile's share is done.
      using ScoreAcc = float[kWarpTiles][kChains][4];
      const auto clear = [](ScoreAcc& x) {
#pragma unroll
        for (int t = 0; t < kWarpTiles; ++t)
#pragma unroll
          for (int ch = 0; ch < kChains; ++ch)
#pragma unroll
            for (int e = 0; e < 4; ++e) x[t][ch][e] = 0.f;
      };
      const auto chains_sum = [](const float(&x)[kChains][4], int e) {
        if constexpr (kChains == 2) return x[0][e] + x[1][e];
        else return x[0][e];
      };
      ScoreAcc c;
      clear(c);
      // q's A fragments of the two k-steps of the 32-value step from value ks.
      const auto q_step = [&](int ks, uint32_t(&qa0)[4], uint32_t(&qa1)[4]) {
        ldmatrix_x4(qa0, q_lane + (ks - k0) * 2);
        ldmatrix_x4(qa1, q_lane + (ks - k0 + 16) * 2);
      };
      // kSteps 32-value steps of the latent from value kk (one scale tile at most).
      const auto latent_steps = [&](int kk, auto steps) {
        constexpr int kSteps = decltype(steps)::value;
        ScoreAcc part;
        clear(part);
#pragma unroll
        for (int i = 0; i < kSteps; ++i) {
          const int ks = kk + 32 * i;  // where this step starts in the 576
          uint32_t qa0[4], qa1[4];
          q_step(ks, qa0, qa1);
#pragma unroll
          for (int t = 0; t < kWarpTiles; ++t) {
            uint32_t kb[4];
            if constexpr (kF16) {  // the lane's codes of both k-steps, one word each (q_s holds q at q_code_col)
              const unsigned char* word =
                  kv + (tile_tok(t) + lanes::code_word_tok(lane)) * kRowStride + ks + lanes::code_word_byte(lane);
              codes4_to_f16x2<F>(lds32(word), kb[0], kb[1]);
              codes4_to_f16x2<F>(lds32(word + 16), kb[2], kb[3]);
            } else {
              ldmatrix_x4(kb, lat_u32 + (k_tok + tile_tok(t) - s_n) * kLatStride + (ks + k_col) * 2);
            }
            using Elem = std::conditional_t<kF16, __half, __nv_bfloat16>;
            float(&sum)[kChains][4] = kQuant ? part[t] : c[t];
            mma_16816<Elem>(sum[0], qa0, kb[0], kb[1]);
            mma_16816<Elem>(sum[kChains - 1], qa1, kb[2], kb[3]);
          }
        }
        if constexpr (kQuant) {
#pragma unroll
          for (int t = 0; t < kWarpTiles; ++t)
#pragma unroll
            for (int e = 0; e < 4; ++e)
              c[t][0][e] = fmaf(chains_sum(part[t], e),
                                row_scale<F>(kv, tile_tok(t) + lanes::c_col(lane, e), kk / kQuantTile), c[t][0][e]);
        }
      };
      const auto share_scores = [&](auto share) {
        constexpr int kK0 = decltype(share)::value * kKLen, kEnd = kK0 + kKLen;  // k0 .. k0 + kKLen
        constexpr int kLatEnd = lanes::share_latent_end(kK0, kKLen), kHeadEnd = lanes::share_head_end(kK0, kKLen);
        constexpr int kTailBegin = lanes::share_tail_begin(kK0, kKLen);
        if constexpr (kHeadEnd > kK0) latent_steps(kK0, std::integral_constant<int, (kHeadEnd - kK0) / 32>{});
#pragma unroll 1
        for (int kk = kHeadEnd; kk < kTailBegin; kk += kQuantTile)
          latent_steps(kk, std::integral_constant<int, kQuantTile / 32>{});
        if constexpr (kLatEnd > kTailBegin)
          latent_steps(kTailBegin, std::integral_constant<int, (kLatEnd - kTailBegin) / 32>{});
#pragma unroll
        for (int kk = kK0 > kKvLoraRank ? kK0 : kKvLoraRank; kk < kEnd; kk += 32) {  // k_pe, bf16 in every format
          uint32_t qa0[4], qa1[4];
          q_step(kk, qa0, qa1);
#pragma unroll
          for (int t = 0; t < kWarpTiles; ++t) {
            uint32_t kb[4];
            ldmatrix_x4(kb, kv_u32 + (k_tok + tile_tok(t) - s_n) * kRowStride + kRopeOffset +
                                (kk - kKvLoraRank + k_col) * 2);
            mma_16816<__nv_bfloat16>(c[t][0], qa0, kb[0], kb[1]);
            mma_16816<__nv_bfloat16>(c[t][kChains - 1], qa1, kb[2], kb[3]);
          }
        }
      };
      if (kSplits == 1 || k0 == 0)
        share_scores(std::integral_constant<int, 0>{});
      else
        share_scores(std::integral_constant<int, kSplits - 1>{});
#pragma unroll
      for (int t = 0; t < kWarpTiles; ++t)
#pragma unroll
        for (int e = 0; e < 4; ++e)  // stage t / kTokTiles of the step has its own buffers
          s_mine[((t / kTokTiles) * kSplits * kM + s_m + lanes::c_row(lane, e)) * kMmaSStride + tile_tok(t) % kBlockN +
                 lanes::c_col(lane, e)] = chains_sum(c[t], e);
      __syncthreads();  // the M x (32 kStepTiles) scores are complete

      // Online softmax of this warp's rows; P rounded to bf16 for the product, times the token's scale per tile when
      // the codes are widened (one P per scale tile). Codes in registers: one P per tile of the step, in f16; each
      // warp forms P' = P x scale x 2^-E for its own columns' scale tile in its A fragments (below), E the exponent
      // of that tile's largest scale over the step's tokens (P' below 2).
      const int own_exp = kF16 ? step_scale_exp<F, kStepTiles>(kv, lane, p_tile) : 0;
#pragma unroll
      for (int j = 0; j < kRowsPerWarp; ++j) {
        const int r = warp + kWarps * j;
        float score[kStepTiles], p[kStepTiles];
#pragma unroll
        for (int t = 0; t < kStepTiles; ++t) {  // token t * 32 + lane of the step
          const float* s_t = s_s + (t * kSplits * kM + r) * kMmaSStride + lane;
          score[t] = kSplits == 2 ? s_t[0] + s_t[kM * kMmaSStride] : s_t[0];
        }
        float alpha;
        softmax.step_tokens<kStepTiles>(j, score, tok0, lane, a.scale_log2 * q_unit[j], alpha, p);
#pragma unroll
        for (int t = 0; t < S::kPTiles; ++t) {
          // Widening: the step is one tile (p[0]), and scale tile t's P is p times the token's scale of that tile.
          const float pt = p[kWiden ? 0 : t] * (kWiden ? row_scale<F>(kv, lane, t) : 1.f);
          p_s[(t * kM + r) * kMmaPStride + lane] = kF16 ? __half_as_ushort(__float2half_rn(pt))
                                                        : __bfloat16_as_ushort(__float2bfloat16_rn(pt));
        }
        if (lane == 0) alpha_s[r] = alpha;
      }
      // Codes in registers: this warp's accumulators go from units of 2^E (last tile) to 2^E of this one.
      float unit_shift = 1.f;
      if constexpr (kF16) {
        unit_shift = exp2_int(it == 0 ? 0 : max(-126, min(127, unit_exp - own_exp)));
        unit_exp = own_exp;
      }
      __syncthreads();  // p_s and alpha_s complete

      // The accumulators' rescaling, skipped by a warp whose factors are all 1 (most tiles once the row maxima
      // settle; exact, and a NaN factor is not 1).
      float a_lo[kMTiles], a_hi[kMTiles];
      bool rescale = false;
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt) {
        a_lo[mt] = alpha_s[mt * 16 + lanes::c_row(lane, 0)] * unit_shift;  // accumulator elements 0, 1
        a_hi[mt] = alpha_s[mt * 16 + lanes::c_row(lane, 2)] * unit_shift;  // and 2, 3
        rescale |= a_lo[mt] != 1.f || a_hi[mt] != 1.f;
      }
      if (__any_sync(0xffffffffu, rescale)) {
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
          for (int nt = 0; nt < kVTiles; ++nt) {
            acc[mt][nt][0] *= a_lo[mt], acc[mt][nt][1] *= a_lo[mt];
            acc[mt][nt][2] *= a_hi[mt], acc[mt][nt][3] *= a_hi[mt];
          }
      }
#pragma unroll
      for (int ks = 0; ks < kBlockN * kStepTiles; ks += 16) {  // tokens of the step (its stages are adjacent)
        uint32_t pa[kMTiles][4];
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt)
          ldmatrix_x4(pa[mt], p_lane + (((ks / kBlockN) * kM + mt * 16) * kMmaPStride + ks % kBlockN) * 2);
        if constexpr (kF16) {  // four n8 tiles per 32-column half from four words (columns: pv_code_col)
          // P' = P x scale x 2^-E: A register i holds tokens a_pair_tok(lane, i) and the next of this k-step.
          const float own_unit = exp2_int(-own_exp);
          uint32_t scale2[2];
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int tok = ks + lanes::a_pair_tok(lane, 2 * h);
            scale2[h] = pack2<__half>(row_scale<F>(kv, tok, p_tile) * own_unit,
                                      row_scale<F>(kv, tok + 1, p_tile) * own_unit);
          }
#pragma unroll
          for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
            for (int i = 0; i < 4; ++i) pa[mt][i] = hmul2_f16(pa[mt][i], scale2[i >> 1]);
#pragma unroll
          for (int h = 0; h < kVTiles / 4; ++h) {
            uint32_t b0[4], b1[4];
            pv_code_fragments<F, kRowStride>(kv, ks, pv_col0 + 32 * h, lane, b0, b1);
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
              for (int mt = 0; mt < kMTiles; ++mt) mma_16816<__half>(acc[mt][4 * h + i], pa[mt], b0[i], b1[i]);
          }
        } else {
#pragma unroll
          for (int np = 0; np < kVTiles / 2; ++np) {  // pairs of n8 tiles
            uint32_t vb[4];
            ldmatrix_x4_trans(vb, lat_u32 + v_lane_off + ks * kLatStride + np * 16 * 2);
#pragma unroll
            for (int mt = 0; mt < kMTiles; ++mt) {
              mma_16816<__nv_bfloat16>(acc[mt][2 * np], pa[mt], vb[0], vb[1]);
              mma_16816<__nv_bfloat16>(acc[mt][2 * np + 1], pa[mt], vb[2], vb[3]);
            }
          }
        }
      }
      // No barrier here: the next step's opening barrier orders these reads before any write they would see.
    }
    cp_async_wait<0>();  // only empty groups can be pending here; the next piece starts its count from zero

    // The piece's result (final when it is its sequence's only piece, else a partial), as the other kernels.
    const bool whole = piece_is_whole(a, pv);
    softmax.finish(a, pi, pv, whole, row0, warp, lane, inv_l_s);
    __syncthreads();  // inv_l_s complete; every warp is done with the ring, q_s, s_s and p_s of this piece
    if constexpr (kF16)
      store_code_col_rows(a, pi, pv, whole, row0, lane, pv_col0, acc, inv_l_s, exp2_int(unit_exp));
    else
      store_acc_rows(a, pi, pv, whole, row0, lane, pv_col0, acc, inv_l_s);
    __syncthreads();  // q_s and inv_l_s are rewritten by the next piece
  }
}

// Opts the kernel into its shared memory and, where two CTAs share an SM, into the largest shared-memory carveout
// (once per process: the attribute belongs to the function, not to a launch).
template <int kM, Format F, bool kRegCodes>
void prepare() {
  constexpr auto kernel = mla_decode_attend_fitted_kernel<kM, F, kRegCodes>;
  allow_dynamic_smem<kernel>(FitSmem<kM, F, kRegCodes>::kBytes);
  if constexpr (fit_ctas_per_sm(kM) > 1) {
    static const bool carveout = [] {
      MLARUN_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                             int(cudaSharedmemCarveoutMaxShared)));
      return true;
    }();
    (void)carveout;
  }
}

template <int kM, Format F, bool kRegCodes>
void launch(const AttendArgs& a, dim3 grid, cudaStream_t stream) {
  prepare<kM, F, kRegCodes>();
  mla_decode_attend_fitted_kernel<kM, F, kRegCodes><<<grid, kThreads, FitSmem<kM, F, kRegCodes>::kBytes, stream>>>(a);
  MLARUN_CUDA_CHECK(cudaGetLastError());
}

template <int kM>
void launch_format(const MlaDecodeParams& p, const AttendArgs& a, dim3 grid, cudaStream_t stream) {
  const bool regs = p.codes_in_registers;
  switch (p.kv_format) {
    case Format::Bf16: return launch<kM, Format::Bf16, false>(a, grid, stream);
    case Format::Fp8:
      return regs ? launch<kM, Format::Fp8, true>(a, grid, stream) : launch<kM, Format::Fp8, false>(a, grid, stream);
    case Format::Int8:
      return regs ? launch<kM, Format::Int8, true>(a, grid, stream) : launch<kM, Format::Int8, false>(a, grid, stream);
  }
  fail("mla_decode: kv_format ", int(p.kv_format), " is not bf16, fp8 or int8");
}

template <int kM, Format F, bool kRegCodes>
int resident() {
  prepare<kM, F, kRegCodes>();
  int ctas = 0;
  MLARUN_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
      &ctas, mla_decode_attend_fitted_kernel<kM, F, kRegCodes>, kThreads, FitSmem<kM, F, kRegCodes>::kBytes));
  return ctas;
}

template <int kM>
int resident_format(bool quantized, bool codes_in_registers) {
  if (!quantized) return resident<kM, Format::Bf16, false>();
  return codes_in_registers ? resident<kM, Format::Fp8, true>() : resident<kM, Format::Fp8, false>();
}

}  // namespace

namespace mla {

void launch_mla_decode_attend_mma_fitted(const MlaDecodeParams& p, const WorkspaceLayout& w, cudaStream_t stream) {
  const AttendArgs a = attend_args(p, w);
  const dim3 grid = attend_grid(p, w);
  const AttendGeometry g = attend_geometry_of(p);
  switch (g.rows_per_cta) {
    case 16: return launch_format<16>(p, a, grid, stream);
    case 32: return launch_format<32>(p, a, grid, stream);
    case 64: return launch_format<64>(p, a, grid, stream);
  }
  fail("mla_decode: no fitted attend kernel for ", g.rows_per_cta, " rows per CTA");
}

int fitted_attend_resident_ctas(int rows_per_cta, bool quantized, bool codes_in_registers) {
  switch (rows_per_cta) {
    case 16: return resident_format<16>(quantized, codes_in_registers);
    case 32: return resident_format<32>(quantized, codes_in_registers);
    case 64: return resident_format<64>(quantized, codes_in_registers);
  }
  fail("mla_decode: no fitted attend kernel for ", rows_per_cta, " rows per CTA");
}

}  // namespace mla
}  // namespace mlarun::ops::cuda
