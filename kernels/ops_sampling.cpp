// Token choice over a batch of logit rows: argmax, and temperature/top-k/top-p sampling with a given uniform per
// row. The CPU path is runtime/sampler.h row by row (the reference); CUDA runs kernels/cuda/sampling.cu, so logits
// that live on the GPU need not travel to the host to pick a token.
#include "kernels/cuda/cuda_ops.h"
#include "kernels/op_checks.h"
#include "kernels/ops.h"
#include "runtime/error.h"
#include "runtime/sampler.h"

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
  if (dev == Device::CUDA) return cuda_ops::argmax_rows(logits);
  detail::require_f32("argmax_rows", {{"logits", logits}});
  const int64_t R = logits.dim(0), V = logits.dim(1);
  std::vector<int32_t> out(static_cast<size_t>(R));
  for (int64_t r = 0; r < R; ++r) out[size_t(r)] = argmax_token(logits.data<float>() + r * V, V);
  return out;
}

std::vector<int32_t> sample_rows(const Tensor& logits, const std::vector<SamplingParams>& params,
                                 const std::vector<double>& uniforms) {
  const Device dev = device_of("sample_rows", {{"logits", logits}});
  check_logits("sample_rows", logits);
  const int64_t R = logits.dim(0), V = logits.dim(1);
  MLARUN_CHECK(int64_t(params.size()) == R && int64_t(uniforms.size()) == R, "sample_rows: ", params.size(),
               " params and ", uniforms.size(), " uniforms for ", R, " rows");
  for (size_t r = 0; r < params.size(); ++r) {
    params[r].validate();
    MLARUN_CHECK(uniforms[r] >= 0 && uniforms[r] < 1, "sample_rows: uniform ", uniforms[r], " of row ", r,
                 " is outside [0, 1)");
  }
  if (dev == Device::CUDA) return cuda_ops::sample_rows(logits, params, uniforms);
  detail::require_f32("sample_rows", {{"logits", logits}});
  std::vector<int32_t> out(static_cast<size_t>(R));
  for (int64_t r = 0; r < R; ++r)
    out[size_t(r)] = sample_with_uniform(logits.data<float>() + r * V, V, params[size_t(r)], uniforms[size_t(r)]);
  return out;
}

}  // namespace mlarun::ops
