// One instantiation of the Hopper flash prefill launcher (d_qk 128, d_v 128, fp16), one per file as for stage A.
#include "kernels/cuda/flash_prefill/kernel_wgmma.cuh"

namespace mlarun::ops::cuda::flash {
template void launch_flash_prefill_wgmma<128, 128, DType::F16>(const FlashPrefillParams&, int, cudaStream_t);
}  // namespace mlarun::ops::cuda::flash
