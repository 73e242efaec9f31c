// The wgmma instructions the kernels use (m64nNk16, bf16 or fp16 A and B, fp32 accumulators, N = 32, 64, 128 or
// 256), one struct per N: ss takes A and B from shared memory (descriptors of wgmma_sm90.cuh), rs takes A from
// registers (each warp's 16 rows as an m16n8k16 A fragment: rows lane / 4 and + 8, columns 2 (lane % 4) and + 8)
// and B from shared memory. `accumulate` 0 overwrites d, else adds; kTransB 1 reads B N-major. Each call issues
// one asynchronous MMA: wgmma_fence before, wgmma_commit and wgmma_wait after (wgmma_sm90.cuh). The operand
// lists are long by nature (N / 2 accumulators per thread); the macros below spell the accumulator lists out once,
// each count built on the one before (MLARUN_WGMMA_D<count>: its places in the instruction and its operands), for
// ss and rs, and each instruction once for both element types.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "kernels/cuda/wgmma_sm90.cuh"

namespace mlarun::ops::cuda::wgmma_sm90 {

template <int kN>
struct Mma;

// The accumulator lists, each spelled once and built on the one before: _PLACES is the list of an
// instruction's %-places, the bare name its "+f" operands (d[0] .. d[count - 1]).
#define MLARUN_WGMMA_D16_PLACES \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15"
#define MLARUN_WGMMA_D16 \
  "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
  "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
#define MLARUN_WGMMA_D32_PLACES \
  MLARUN_WGMMA_D16_PLACES \
  ", %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define MLARUN_WGMMA_D32 \
  MLARUN_WGMMA_D16, \
  "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), \
  "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), \
  "+f"(d[30]), "+f"(d[31])
#define MLARUN_WGMMA_D64_PLACES \
  MLARUN_WGMMA_D32_PLACES \
  ", %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
#define MLARUN_WGMMA_D64 \
  MLARUN_WGMMA_D32, \
  "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), \
  "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), \
  "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), \
  "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), \
  "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
#define MLARUN_WGMMA_D128_PLACES \
  MLARUN_WGMMA_D64_PLACES \
  ", %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, " \
  "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, " \
  "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, " \
  "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
#define MLARUN_WGMMA_D128 \
  MLARUN_WGMMA_D64, \
  "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), \
  "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), \
  "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), \
  "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), \
  "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), \
  "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]), "+f"(d[105]), \
  "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), \
  "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), \
  "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), \
  "+f"(d[127])

#define MLARUN_WGMMA_SS_32(TYPE) \
  MLARUN_WGMMA_ASM("{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n" \
  "wgmma.mma_async.sync.aligned.m64n32k16.f32." TYPE "." TYPE " {" MLARUN_WGMMA_D16_PLACES "}" \
  ", %16, %17, p, 1, 1, 0, %19;\n}\n" \
  : MLARUN_WGMMA_D16 \
  : "l"(desc_a), "l"(desc_b), "r"(accumulate), "n"(kTransB))
#define MLARUN_WGMMA_RS_32(TYPE) \
  MLARUN_WGMMA_ASM("{\n.reg .pred p;\nsetp.ne.b32 p, %21, 0;\n" \
  "wgmma.mma_async.sync.aligned.m64n32k16.f32." TYPE "." TYPE " {" MLARUN_WGMMA_D16_PLACES "}" \
  ", {%16, %17, %18, %19}, %20, p, 1, 1, %22;\n}\n" \
  : MLARUN_WGMMA_D16 \
  : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(accumulate), "n"(kTransB))

template <>
struct Mma<32> {
  static constexpr int kRegs = 16;
  template <int kTransB, typename Element = __nv_bfloat16>
  static __device__ __forceinline__ void ss(float (&d)[16], uint64_t desc_a, uint64_t desc_b, int accumulate) {
    if constexpr (std::is_same_v<Element, __half>) MLARUN_WGMMA_SS_32("f16");
    else MLARUN_WGMMA_SS_32("bf16");
  }
  template <int kTransB, typename Element = __nv_bfloat16>
  static __device__ __forceinline__ void rs(float (&d)[16], const uint32_t (&a)[4], uint64_t desc_b, int accumulate) {
    if constexpr (std::is_same_v<Element, __half>) MLARUN_WGMMA_RS_32("f16");
    else MLARUN_WGMMA_RS_32("bf16");
  }
};
#undef MLARUN_WGMMA_SS_32
#undef MLARUN_WGMMA_RS_32

#define MLARUN_WGMMA_SS_64(TYPE) \
  MLARUN_WGMMA_ASM("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n" \
  "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE "." TYPE " {" MLARUN_WGMMA_D32_PLACES "}" \
  ", %32, %33, p, 1, 1, 0, %35;\n}\n" \
  : MLARUN_WGMMA_D32 \
  : "l"(desc_a), "l"(desc_b), "r"(accumulate), "n"(kTransB))
#define MLARUN_WGMMA_RS_64(TYPE) \
  MLARUN_WGMMA_ASM("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n" \
  "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE "." TYPE " {" MLARUN_WGMMA_D32_PLACES "}" \
  ", {%32, %33, %34, %35}, %36, p, 1, 1, %38;\n}\n" \
  : MLARUN_WGMMA_D32 \
  : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(accumulate), "n"(kTransB))

template <>
struct Mma<64> {
  static constexpr int kRegs = 32;
  template <int kTransB, typename Element = __nv_bfloat16>
  static __device__ __forceinline__ void ss(float (&d)[32], uint64_t desc_a, uint64_t desc_b, int accumulate) {
    if constexpr (std::is_same_v<Element, __half>) MLARUN_WGMMA_SS_64("f16");
    else MLARUN_WGMMA_SS_64("bf16");
  }
  template <int kTransB, typename Element = __nv_bfloat16>
  static __device__ __forceinline__ void rs(float (&d)[32], const uint32_t (&a)[4], uint64_t desc_b, int accumulate) {
    if constexpr (std::is_same_v<Element, __half>) MLARUN_WGMMA_RS_64("f16");
    else MLARUN_WGMMA_RS_64("bf16");
  }
};
#undef MLARUN_WGMMA_SS_64
#undef MLARUN_WGMMA_RS_64

#define MLARUN_WGMMA_SS_128(TYPE) \
  MLARUN_WGMMA_ASM("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n" \
  "wgmma.mma_async.sync.aligned.m64n128k16.f32." TYPE "." TYPE " {" MLARUN_WGMMA_D64_PLACES "}" \
  ", %64, %65, p, 1, 1, 0, %67;\n}\n" \
  : MLARUN_WGMMA_D64 \
  : "l"(desc_a), "l"(desc_b), "r"(accumulate), "n"(kTransB))
#define MLARUN_WGMMA_RS_128(TYPE) \
  MLARUN_WGMMA_ASM("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n" \
  "wgmma.mma_async.sync.aligned.m64n128k16.f32." TYPE "." TYPE " {" MLARUN_WGMMA_D64_PLACES "}" \
  ", {%64, %65, %66, %67}, %68, p, 1, 1, %70;\n}\n" \
  : MLARUN_WGMMA_D64 \
  : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(accumulate), "n"(kTransB))

template <>
struct Mma<128> {
  static constexpr int kRegs = 64;
  template <int kTransB, typename Element = __nv_bfloat16>
  static __device__ __forceinline__ void ss(float (&d)[64], uint64_t desc_a, uint64_t desc_b, int accumulate) {
    if constexpr (std::is_same_v<Element, __half>) MLARUN_WGMMA_SS_128("f16");
    else MLARUN_WGMMA_SS_128("bf16");
  }
  template <int kTransB, typename Element = __nv_bfloat16>
  static __device__ __forceinline__ void rs(float (&d)[64], const uint32_t (&a)[4], uint64_t desc_b, int accumulate) {
    if constexpr (std::is_same_v<Element, __half>) MLARUN_WGMMA_RS_128("f16");
    else MLARUN_WGMMA_RS_128("bf16");
  }
};
#undef MLARUN_WGMMA_SS_128
#undef MLARUN_WGMMA_RS_128

#define MLARUN_WGMMA_SS_256(TYPE) \
  MLARUN_WGMMA_ASM("{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n" \
  "wgmma.mma_async.sync.aligned.m64n256k16.f32." TYPE "." TYPE " {" MLARUN_WGMMA_D128_PLACES "}" \
  ", %128, %129, p, 1, 1, 0, %131;\n}\n" \
  : MLARUN_WGMMA_D128 \
  : "l"(desc_a), "l"(desc_b), "r"(accumulate), "n"(kTransB))
#define MLARUN_WGMMA_RS_256(TYPE) \
  MLARUN_WGMMA_ASM("{\n.reg .pred p;\nsetp.ne.b32 p, %133, 0;\n" \
  "wgmma.mma_async.sync.aligned.m64n256k16.f32." TYPE "." TYPE " {" MLARUN_WGMMA_D128_PLACES "}" \
  ", {%128, %129, %130, %131}, %132, p, 1, 1, %134;\n}\n" \
  : MLARUN_WGMMA_D128 \
  : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(accumulate), "n"(kTransB))

template <>
struct Mma<256> {
  static constexpr int kRegs = 128;
  template <int kTransB, typename Element = __nv_bfloat16>
  static __device__ __forceinline__ void ss(float (&d)[128], uint64_t desc_a, uint64_t desc_b, int accumulate) {
    if constexpr (std::is_same_v<Element, __half>) MLARUN_WGMMA_SS_256("f16");
    else MLARUN_WGMMA_SS_256("bf16");
  }
  template <int kTransB, typename Element = __nv_bfloat16>
  static __device__ __forceinline__ void rs(float (&d)[128], const uint32_t (&a)[4], uint64_t desc_b, int accumulate) {
    if constexpr (std::is_same_v<Element, __half>) MLARUN_WGMMA_RS_256("f16");
    else MLARUN_WGMMA_RS_256("bf16");
  }
};
#undef MLARUN_WGMMA_SS_256
#undef MLARUN_WGMMA_RS_256

#undef MLARUN_WGMMA_D16_PLACES
#undef MLARUN_WGMMA_D16
#undef MLARUN_WGMMA_D32_PLACES
#undef MLARUN_WGMMA_D32
#undef MLARUN_WGMMA_D64_PLACES
#undef MLARUN_WGMMA_D64
#undef MLARUN_WGMMA_D128_PLACES
#undef MLARUN_WGMMA_D128

}  // namespace mlarun::ops::cuda::wgmma_sm90
