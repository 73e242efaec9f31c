// One instantiation of the Hopper flash prefill launchers, kernel_wgmma.cuh and its warp-specialized and
// pipelined variants (d_qk 64, d_v 64, fp16), one per file as for stage A.
#include "kernels/cuda/flash_prefill/kernel_wgmma_pipelined.cuh"
#include "kernels/cuda/flash_prefill/kernel_wgmma_ws.cuh"

namespace mlarun::ops::cuda::flash {
template void launch_flash_prefill_wgmma<64, 64, DType::F16>(const FlashPrefillParams&, int, cudaStream_t);
template void launch_flash_prefill_wgmma_ws<64, 64, DType::F16>(const FlashPrefillParams&, int, cudaStream_t);
template void launch_flash_prefill_wgmma_pipelined<64, 64, DType::F16>(const FlashPrefillParams&, int,
                                                                  cudaStream_t);
}  // namespace mlarun::ops::cuda::flash
