// Argument checks and device dispatch for token choice over a batch of logit rows: argmax, and
// temperature/top-k/top-p sampling with a given uniform per row. The CPU backend applies the host sampler
// (kernels/cpu/sampling.h) row by row, the reference; CUDA runs kernels/cuda/sampling.cu, so logits that live
// on the GPU need not travel to the host to pick a token.
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/op_checks.h"
#include "kernels/ops.h"
#include "runtime/error.h"

namespace mlarun::ops {

using detail::device_of;

namespace {
void check_logits(const char* op, const Tensor& logits) {
  MLARUN_CHECK(logits.ndim() == 2 && logits.dim(1) >= 1, op, ": logits must be [rows, vocab], got ",
               logits.describe());
}
}  // namespace

std::vector<int32_t> argmax_rows(const Tensor& logits) {
  const Device dev = device_of("argmax_rows", {{"logits", logits}});
  check_logits("argmax_rows", logits);
  if (dev == Device::CUDA) return cuda::argmax_rows(logits);
  detail::require_f32("argmax_rows", {{"logits", logits}});
  return cpu::argmax_rows(logits);
}

std::vector<int32_t> sample_rows(const Tensor& logits, const std::vector<SamplingParams>& params,
                                 const std::vector<double>& uniforms) {
  const Device dev = device_of("sample_rows", {{"logits", logits}});
  check_logits("sample_rows", logits);
  const int64_t R = logits.dim(0);
  MLARUN_CHECK(int64_t(params.size()) == R && int64_t(uniforms.size()) == R, "sample_rows: ", params.size(),
               " params and ", uniforms.size(), " uniforms for ", R, " rows");
  for (size_t r = 0; r < params.size(); ++r) {
    params[r].validate();
    MLARUN_CHECK(uniforms[r] >= 0 && uniforms[r] < 1, "sample_rows: uniform ", uniforms[r], " of row ", r,
                 " is outside [0, 1)");
  }
  if (dev == Device::CUDA) return cuda::sample_rows(logits, params, uniforms);
  detail::require_f32("sample_rows", {{"logits", logits}});
  return cpu::sample_rows(logits, params, uniforms);
}

}  // namespace mlarun::ops
