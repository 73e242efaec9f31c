// One instantiation of the Hopper flash prefill launcher, kernel_wgmma.cuh (d_qk 256, d_v 256, fp16), one per file
// as for stage A; its warp-specialized variant takes d_v up to 128.
#include "kernels/cuda/flash_prefill/kernel_wgmma.cuh"

namespace mlarun::ops::cuda::flash {
template void launch_flash_prefill_wgmma<256, 256, DType::F16>(const FlashPrefillParams&, int, cudaStream_t);
}  // namespace mlarun::ops::cuda::flash
