// The fitted kernel over fp8/int8 rows with the codes read from the ring straight into the tensor cores' registers
// (MlaDecodeParams::codes_in_registers), instead of widened to bf16 into a buffer of their own behind one more
// barrier (widen_codes). Why: at the TP 8 shape the fp8 cache ran at 0.72x the bf16 tokens/s on an H200 though it
// reads 0.57x the bytes; the widening pass, its barrier and its 33 KB (which kept the ring at two tiles) are the
// likely cost. Each lane converts the codes of its own fragments:
//   - codes become f16 (every e4m3 and int8 value is one, exactly): one cvt per e4m3 pair, two operations per int8
//     pair, against four per pair to bf16; so both products run on f16 operands;
//   - scores: q's latent values are staged once per piece as f16 times a power of two per row (q_f16_exp, taken back
//     out by the softmax) in the permuted order mma_lanes.h q_code_col gives, so one 32-bit load of four codes is a
//     lane's whole B fragment of a k-step;
//   - P.V: P' = p x scale x 2^-E per 128-value tile (scale_tile_exp keeps it below 2), formed by each warp in its
//     A fragments for its own columns' tile from the one P in f16 (lanes::a_pair_tok), the accumulators carried in
//     units of 2^E from tile to tile (the factor joins the softmax's rescaling); four 32-bit loads and four byte
//     permutes give a lane's B fragments of four n8 tiles, whose columns are therefore interleaved
//     (pv_code_col), and a lane stores 8 consecutive columns per row.
// The lane maps are replayed on the CPU (tests/kernels/test_mla_decode_code_lanes.cpp, MlaDecodeMmaLanes.Codes*).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/cuda/mla_decode/attend_common.cuh"
#include "kernels/cuda/mla_decode/mma_lanes.h"
#include "kernels/cuda/mma_sm80.cuh"

namespace mlarun::ops::cuda::mla {

// 2^e for e in [-126, 127], exactly.
__device__ __forceinline__ float exp2_int(int e) { return __int_as_float((127 + e) << 23); }

// Codes 0, 1 and 2, 3 of the word `w` as two f16x2 registers (the lower byte in the lower half), exactly.
template <Format F>
__device__ __forceinline__ void codes4_to_f16x2(uint32_t w, uint32_t& lo, uint32_t& hi) {
  if constexpr (F == Format::Fp8) {
    // The word's halves as the cvt's 16-bit operands: the upper one is read in place (F2FP's .H1 selector), where
    // cuda_fp8.h's `w >> 16` cost a shift per word.
    asm("{\n .reg .b16 l, h;\n mov.b32 {l, h}, %2;\n cvt.rn.f16x2.e4m3x2 %0, l;\n cvt.rn.f16x2.e4m3x2 %1, h;\n}\n"
        : "=r"(lo), "=r"(hi)
        : "r"(w));
  } else {
    const uint32_t flipped = w ^ 0x80808080u;
    const __half2 bias = __half2half2(__ushort_as_half(lanes::kInt8F16Bias));
    const uint32_t biased_lo = lanes::interleave_bytes_01(flipped, lanes::kInt8F16Exponents);
    const uint32_t biased_hi = lanes::interleave_bytes_23(flipped, lanes::kInt8F16Exponents);
    const __half2 l = __hsub2(*reinterpret_cast<const __half2*>(&biased_lo), bias);
    const __half2 h = __hsub2(*reinterpret_cast<const __half2*>(&biased_hi), bias);
    lo = *reinterpret_cast<const uint32_t*>(&l);
    hi = *reinterpret_cast<const uint32_t*>(&h);
  }
}

// The two f16 products of the pairs `a` and `b` (round to nearest), as one register.
__device__ __forceinline__ uint32_t hmul2_f16(uint32_t a, uint32_t b) {
  const __half2 r = __hmul2(*reinterpret_cast<const __half2*>(&a), *reinterpret_cast<const __half2*>(&b));
  return *reinterpret_cast<const uint32_t*>(&r);
}

// 32-bit load from shared memory at a 4-byte-aligned address.
__device__ __forceinline__ uint32_t lds32(const unsigned char* p) { return *reinterpret_cast<const uint32_t*>(p); }

// q rows warp + kWarps j (j < kRows) of the CTA's tile into q_s: the latent values as f16 times 2^e (e =
// lanes::q_f16_exp of the row) at columns q_code_col, k_pe as bf16 times the same 2^e; rows at or past `valid` as
// zeros. unit[j] = 2^-e, by which the softmax multiplies the row's scores. One warp per row, once per piece.
template <int kRows>
__device__ __forceinline__ void stage_q_rows_f16(const uint16_t* q_tile, int valid, uint16_t* q_s, int warp,
                                                 int lane, float (&unit)[kRows]) {
#pragma unroll
  for (int j = 0; j < kRows; ++j) {
    const int r = warp + kWarps * j;
    const uint16_t* src = q_tile + int64_t(r) * kHeadDimQK;
    const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
    const uint4 lat[2] = {r < valid ? __ldg(reinterpret_cast<const uint4*>(src + 8 * lane)) : zero,
                          r < valid ? __ldg(reinterpret_cast<const uint4*>(src + 256 + 8 * lane)) : zero};
    const uint4 rope = r < valid && lane < kRopeDim / 8
                           ? __ldg(reinterpret_cast<const uint4*>(src + kKvLoraRank + 8 * lane))
                           : zero;
    const uint32_t words[8] = {lat[0].x, lat[0].y, lat[0].z, lat[0].w, lat[1].x, lat[1].y, lat[1].z, lat[1].w};
    uint32_t abs_max = 0;
#pragma unroll
    for (uint32_t w : words) abs_max = max(abs_max, max(w & 0x7fffu, (w >> 16) & 0x7fffu));
    const int e = lanes::q_f16_exp(__reduce_max_sync(0xffffffffu, abs_max));
    const float up = exp2_int(e);
    unit[j] = exp2_int(-e);
    uint16_t* row = q_s + r * kMmaQStride;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float f[8];
      bf16x8_to_f32(lat[h], f);
#pragma unroll
      for (int i = 0; i < 4; ++i) {  // latent values k, k + 1: adjacent at q_code_col(k) (k even)
        const int k = 256 * h + 8 * lane + 2 * i;
        *reinterpret_cast<uint32_t*>(row + lanes::q_code_col(k)) =
            mma_sm80::pack2<__half>(f[2 * i] * up, f[2 * i + 1] * up);
      }
    }
    if (lane < kRopeDim / 8) {
      float f[8];
      bf16x8_to_f32(rope, f);
      uint32_t out[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) out[i] = mma_sm80::pack2<__nv_bfloat16>(f[2 * i] * up, f[2 * i + 1] * up);
      *reinterpret_cast<uint4*>(row + kKvLoraRank + 8 * lane) = make_uint4(out[0], out[1], out[2], out[3]);
    }
  }
}

// The power-of-two exponent (lanes::scale_tile_exp) of 128-value tile t's scales over a step's 32 kTiles tokens
// (from the rows `kv`, adjacent stages), kTiles per lane; the same in every warp that asks.
template <Format F, int kTiles>
__device__ __forceinline__ int step_scale_exp(const unsigned char* kv, int lane, int t) {
  uint32_t bits = 0;
#pragma unroll
  for (int i = 0; i < kTiles; ++i)
    bits = max(bits, __float_as_uint(row_scale<F>(kv, lane + kBlockN * i, t)) & 0x7fffffffu);
  return lanes::scale_tile_exp(__reduce_max_sync(0xffffffffu, bits));
}

// A lane's B fragments of P.V for one 16-token k-step and one 32-column half of its warp's columns: b0[i], b1[i]
// for n8 tile 4 h + i (columns lanes::pv_code_col), from the stage's rows `kv` (kRowStride bytes apart) at
// `half_col`, the half's first byte.
template <Format F, int kRowStride>
__device__ __forceinline__ void pv_code_fragments(const unsigned char* kv, int ks, int half_col, int lane,
                                                  uint32_t (&b0)[4], uint32_t (&b1)[4]) {
  const unsigned char* base = kv + ks * kRowStride + half_col + lanes::pv_code_byte(lane);
  uint32_t w[4];
#pragma unroll
  for (int r = 0; r < 4; ++r) w[r] = lds32(base + lanes::pv_code_tok(lane, r) * kRowStride);
  codes4_to_f16x2<F>(lanes::interleave_bytes_01(w[0], w[1]), b0[0], b0[1]);
  codes4_to_f16x2<F>(lanes::interleave_bytes_23(w[0], w[1]), b0[2], b0[3]);
  codes4_to_f16x2<F>(lanes::interleave_bytes_01(w[2], w[3]), b1[0], b1[1]);
  codes4_to_f16x2<F>(lanes::interleave_bytes_23(w[2], w[3]), b1[2], b1[3]);
}

// The piece's result from accumulators in the interleaved columns: acc[mt][4 h + i][e] is column col0 +
// pv_code_out_col(lane, h) + 4 (e & 1) + i of row mt * 16 + c_row(lane, e), in units of 2^-E (`unit` = 2^E);
// divided by the row's l and stored 8 columns at a time (store_o) for rows inside the sequence's `rows`.
template <int kMTiles>
__device__ __forceinline__ void store_code_col_rows(const AttendArgs& a, int pi, const PieceView& pv, bool whole,
                                                    int row0, int lane, int col0, const float (&acc)[kMTiles][8][4],
                                                    const float* inv_l_s, float unit) {
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
    for (int half = 0; half < 2; ++half) {  // accumulator elements {0, 1} (row g), then {2, 3} (row g + 8)
      const int r = mt * 16 + lanes::c_row(lane, 2 * half);
      if (row0 + r >= pv.rows) continue;
      const float f = inv_l_s[r] * unit;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float o[8];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          o[i] = acc[mt][4 * h + i][2 * half] * f;
          o[4 + i] = acc[mt][4 * h + i][2 * half + 1] * f;
        }
        store_o<8>(a, pi, pv, whole, row0 + r, col0 + lanes::pv_code_out_col(lane, h), o);
      }
    }
}

}  // namespace mlarun::ops::cuda::mla
