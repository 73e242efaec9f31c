// make_tma_map (tma_map.h): the arguments checked by name, then the driver's encoder, found once per process.
#include "kernels/cuda/tma_map.h"

#include <cuda_runtime_api.h>

#include <mutex>

#include "runtime/error.h"

namespace mlarun::ops::cuda {
namespace {

using EncodeTiled = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                 const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                 CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

// The driver's cuTensorMapEncodeTiled (the CUDA 12.0 signature), or null with `why` set.
EncodeTiled encoder(std::string& why) {
  static std::once_flag once;
  static EncodeTiled fn = nullptr;
  static std::string failure;
  std::call_once(once, [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
    const cudaError_t e =
        cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &found);
    if (e != cudaSuccess || found != cudaDriverEntryPointSuccess || p == nullptr) {
      failure = std::string("cudaGetDriverEntryPointByVersion: ") + cudaGetErrorString(e) + " (query result " +
                std::to_string(int(found)) + ")";
      (void)cudaGetLastError();
      return;
    }
    fn = reinterpret_cast<EncodeTiled>(p);
  });
  why = failure;
  return fn;
}

}  // namespace

void check_tma_matrix(const TmaMatrixBf16& m) {
  MLARUN_CHECK(m.base != nullptr, "tma map: base is null");
  MLARUN_CHECK(reinterpret_cast<uintptr_t>(m.base) % 16 == 0, "tma map: base ", m.base, " is not 16-byte aligned");
  MLARUN_CHECK(m.rows >= 1 && m.rows <= (uint64_t(1) << 32), "tma map: rows = ", m.rows, " must be in [1, 2^32]");
  MLARUN_CHECK(m.cols >= 1 && m.cols <= (uint64_t(1) << 32), "tma map: cols = ", m.cols, " must be in [1, 2^32]");
  MLARUN_CHECK(m.row_stride_bytes % 16 == 0 && m.row_stride_bytes >= m.cols * 2 &&
                   m.row_stride_bytes < (uint64_t(1) << 40),
               "tma map: row_stride_bytes = ", m.row_stride_bytes, " must be a multiple of 16, at least cols * 2 = ",
               m.cols * 2, " and below 2^40");
  MLARUN_CHECK(m.box_rows >= 1 && m.box_rows <= 256, "tma map: box_rows = ", m.box_rows, " must be in [1, 256]");
}

CUtensorMap make_tma_map(const TmaMatrixBf16& m) {
  check_tma_matrix(m);
  std::string why;
  const EncodeTiled encode = encoder(why);
  MLARUN_CHECK(encode != nullptr, "tma map: the driver has no cuTensorMapEncodeTiled: ", why);
  CUtensorMap map;
  const cuuint64_t dims[2] = {m.cols, m.rows};
  const cuuint64_t strides[1] = {m.row_stride_bytes};
  const cuuint32_t box[2] = {kTmaBoxCols, m.box_rows};
  const cuuint32_t element_strides[2] = {1, 1};
  const CUresult r = encode(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<void*>(m.base), dims, strides, box,
                            element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                            CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  MLARUN_CHECK(r == CUDA_SUCCESS, "tma map: cuTensorMapEncodeTiled failed with CUresult ", int(r), " for ", m.rows,
               " x ", m.cols, " bf16, row stride ", m.row_stride_bytes, " bytes, box ", m.box_rows, " x ", kTmaBoxCols);
  return map;
}

}  // namespace mlarun::ops::cuda
