// One instantiation of the flash prefill launcher (d_qk 256, d_v 256, bf16): one per file so the variants
// compile in parallel and a change to one tile config rebuilds one file.
#include "kernels/cuda/flash_prefill/kernel.cuh"

namespace mlarun::ops::cuda::flash {
template void launch_flash_prefill<256, 256, DType::BF16>(const FlashPrefillParams&, int, cudaStream_t);
}  // namespace mlarun::ops::cuda::flash
