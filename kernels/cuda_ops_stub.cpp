// Builds without CUDA kernels (no nvcc, or MLARUN_CUDA=OFF) link these instead of kernels/cuda/*.cu: every entry
// point fails with one clear message. They are unreachable in practice, since no CUDA tensor can be made in such
// a build (device_malloc refuses), but the dispatch in kernels/ops*.cpp needs the symbols.
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/kv_quant_cuda.h"
#include "runtime/error.h"

namespace mlarun::ops::cuda {

namespace {
[[noreturn]] void unavailable(const char* op) {
  fail(op, ": this build has no CUDA kernels (configure with nvcc and NCCL available, MLARUN_CUDA=AUTO or ON)");
}
}  // namespace

Tensor linear(const Tensor&, const Tensor&, DType) { unavailable("linear"); }
Tensor head_linear(const Tensor&, const Tensor&) { unavailable("head_linear"); }
KeysValues mla_up_project(const Tensor&, const Tensor&, int64_t, int64_t) { unavailable("mla_up_project"); }
Tensor expert_linear(const Tensor&, const Tensor&, const Tensor&) { unavailable("expert_linear"); }
void add(const Tensor&, const Tensor&, const Tensor&) { unavailable("add"); }
Tensor silu_mul(const Tensor&, const Tensor&) { unavailable("silu_mul"); }
Tensor embedding(const std::vector<int32_t>&, const Tensor&, int64_t) { unavailable("embedding"); }
Tensor convert(const Tensor&, DType) { unavailable("convert"); }
void fill_random_normal(Tensor&, uint64_t, int64_t, int64_t, int64_t, float, float) {
  unavailable("fill_random_normal");
}
Tensor rms_norm(const Tensor&, const Tensor&, float) { unavailable("rms_norm"); }
Tensor add_rms_norm(const Tensor&, const Tensor&, const Tensor&, float) { unavailable("add_rms_norm"); }
Tensor narrow_last_dim(const Tensor&, int64_t, int64_t) { unavailable("narrow_last_dim"); }
Tensor concat_last_dim(const Tensor&, const Tensor&, int64_t) { unavailable("concat_last_dim"); }
void copy_columns(const Tensor&, const Tensor&, const ColumnCopy&) { unavailable("copy_columns"); }
Tensor transpose_last_two(const Tensor&) { unavailable("transpose_last_two"); }
Tensor gather_rows(const Tensor&, const std::vector<int64_t>&) { unavailable("gather_rows"); }
void scatter_add_rows(const Tensor&, const std::vector<int64_t>&, const Tensor&, const std::vector<float>&) {
  unavailable("scatter_add_rows");
}
void apply_rope(const Tensor&, const std::vector<int64_t>&, const RopeTable&) { unavailable("apply_rope"); }
Routing route(const Tensor&, const Tensor&, const RoutingParams&) { unavailable("route"); }
void write_cache(const Tensor&, const std::vector<int64_t>&, const Tensor&) { unavailable("write_cache"); }
Tensor gather_cache(const Tensor&, const std::vector<int32_t>&, int64_t) { unavailable("gather_cache"); }
Tensor attention(const Tensor&, const Tensor&, const Tensor&, float, int64_t, Tensor*) { unavailable("attention"); }
void lse_merge_rescale(const Tensor&, const Tensor&, int64_t) { unavailable("lse_merge_rescale"); }
void merge_attention_partials(const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  unavailable("merge_attention_partials");
}
Tensor mla_paged_attention(const Tensor&, const Tensor&, const std::vector<BatchSequence>&, int64_t, float, Tensor*) {
  unavailable("mla_paged_attention");
}
std::vector<int32_t> argmax_rows(const Tensor&) { unavailable("argmax_rows"); }
std::vector<int32_t> sample_rows(const Tensor&, const std::vector<SamplingParams>&, const std::vector<double>&) {
  unavailable("sample_rows");
}

Tensor embedding(const Tensor&, const Tensor&, int64_t) { unavailable("embedding"); }
Tensor gather_rows(const Tensor&, const Tensor&) { unavailable("gather_rows"); }
void scatter_rows(const Tensor&, const Tensor&, const Tensor&) { unavailable("scatter_rows"); }
void apply_rope(const Tensor&, const Tensor&, const RopeTable&) { unavailable("apply_rope"); }
void write_cache(const Tensor&, const Tensor&, const Tensor&) { unavailable("write_cache"); }
Tensor mla_paged_attention(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, int64_t, float,
                           Tensor*) {
  unavailable("mla_paged_attention");
}
ExpertPermutation permute_by_expert(const Tensor&, const Tensor&, int64_t, int64_t) {
  unavailable("permute_by_expert");
}
ExpertCapacityLayout permute_to_capacity(const Tensor&, int64_t, int64_t) { unavailable("permute_to_capacity"); }
Tensor combine_experts(const Tensor&, const Tensor&, const Tensor&, const Tensor&) { unavailable("combine_experts"); }
// Without the kernels nothing fits them: the ops layer takes the generic path (which then fails as above).
bool flash_prefill_fits(int64_t, int64_t, DType) { return false; }
Tensor flash_varlen(const Tensor&, const Tensor&, const Tensor&, float, const StepPart&) { unavailable("flash_prefill"); }
Tensor flash_varlen(const Tensor&, const Tensor&, const Tensor&, float, const OffsetVarlen&, Tensor&) {
  unavailable("flash_prefill");
}
std::string mla_decode_unfit(const StepPart&, DType, KvQuant, int64_t, int64_t, int64_t, int64_t) {
  return "this build has no CUDA kernels";
}
int mla_decode_sm_count() { unavailable("mla_decode"); }
size_t mla_decode_workspace(const StepPart&, int64_t, int) { unavailable("mla_decode"); }
Tensor mla_decode_run(const Tensor&, const Tensor&, KvQuant, const StepPart&, const Tensor&, int, int32_t, bool,
                      int64_t, float, Tensor*) {
  unavailable("mla_decode");
}
int32_t mla_decode_kernel() { unavailable("mla_decode"); }
int32_t flash_prefill_kernel() { unavailable("flash_prefill"); }
void set_mla_decode_kernel(int32_t) { unavailable("mla_decode"); }
void set_flash_prefill_kernel(int32_t) { unavailable("flash_prefill"); }

void write_cache_quantized(const Tensor&, const KvCacheFormat&, const Tensor&, const Tensor&) {
  unavailable("write_cache_quantized");
}
Tensor gather_rows_dequantized(const Tensor&, const KvCacheFormat&, const Tensor&, DType) {
  unavailable("gather_rows_dequantized");
}
Tensor upload_slots(const std::vector<int64_t>&) { unavailable("upload_slots"); }

}  // namespace mlarun::ops::cuda
