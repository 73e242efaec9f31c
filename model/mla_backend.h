// The MLA attention backend seam, as vLLM's MLA backends have it: `plan` once per step builds what every layer
// shares (the step's split into absorbed decode and naive prefill sequences with their layouts, from the step's
// device tensors; the mla_decode work schedule), then `forward` per layer takes that layer's rotated queries and
// its cache (this step's latents already written) and returns the attention output before o_proj.
//
// - ReferenceMlaBackend: the CPU reference (f32), sequence by sequence, exactly as the model always computed
//   (gather the context, up-project, dense causal attention; or the absorbed attention over the paged cache).
// - BatchedMlaBackend: one call per path for the whole step. Naive prefill: the context latents of every prefill
//   sequence gathered in one op, up-projected by one GEMM (qk = nope + rope, v per head), then causal varlen
//   attention over the cached prefix (chunked prefill): kernels/cuda/flash_prefill when (qk, v, dtype) is in its
//   contract ((192,128), (128,128), (64,64), (256,256); bf16/fp16), otherwise the generic CUDA kernel per
//   sequence. When the step's context rows exceed MlaBackendOptions::prefill_context_piece_rows they go in
//   pieces instead (model/prefill_pieces.h): each piece gathered and up-projected alone, attended as a varlen
//   batch with explicit causal offsets (flash_prefill again where it fits) and merged into the running output by
//   log-sum-exp. Absorbed
//   decode: q_nope . W_UK, then kernels/cuda/mla_decode when in its contract (bf16, kv_lora_rank 512, rope 64,
//   <= 128 heads per rank, <= 4 query rows per sequence, block_size <= 256), its schedule computed by the first
//   layer and reused by the rest; otherwise the generic paged CUDA kernel; then . W_UV. Each fallback prints one
//   line on stderr the first time. It runs on the CPU too (tests hold it to the reference there); on the GPU it
//   is the default.
//
// Under decode context parallelism (MlaDcpGroup, docs/layouts.md §2.6) only the batched backend runs (Auto and
// Reference pick it too): the queries hold the DCP group's heads; absorbed decode attends this rank's cache slice
// (the generic kernel, which returns the log-sum-exp), merges the group's partial outputs by log-sum-exp (an
// all-gather of the lse, a rescale, an all-reduce of o_lat), then keeps this rank's own heads; naive prefill
// all-gathers the context latents within the group (whole: latents, not K/V; the pieces are cut after it) and
// attends for this rank's own heads. The output is this rank's own heads either way, ready for the row-parallel
// o_proj. A quantized cache (on the GPU too, compile-checked): prefill all-gathers the rows as stored (fp8/int8
// bytes with their scales) and reads them back dequantized, the values dcp 1 reads; decode reads back this rank's
// blocks of the step dequantized into a pool of their own and runs the same kernel and merge over it.
#pragma once

#include <memory>

#include "kernels/ops.h"
#include "model/prefill_pieces.h"
#include "parallel/parallel_layers.h"
#include "runtime/forward_batch.h"
#include "runtime/model_config.h"
#include "runtime/step_tensors.h"

namespace mlarun {

// One layer's weights the attention core needs. H_q: the heads whose queries this rank computes; H_out: the heads
// it outputs (the same H_local without DCP; under DCP H_q is the group's heads, H_out this rank's own H / tp).
struct MlaLayerWeights {
  const Tensor& wkv_b;   // [H_out * (nope + v), kv_lora_rank]: the naive path's up-projection
  const Tensor& w_uk_t;  // [H_q, kv_lora_rank, nope]
  const Tensor& w_uv;    // [H_out, v, kv_lora_rank]
};

// This rank's decode-context-parallel group; no communicator or one rank: no DCP.
struct MlaDcpGroup {
  Communicator* comm = nullptr;
  bool on() const { return comm != nullptr && comm->world_size() > 1; }
  int64_t size() const { return on() ? comm->world_size() : 1; }
  int64_t rank() const { return on() ? comm->rank() : 0; }
};

// How the backends bound their work.
struct MlaBackendOptions {
  // The batched backend's naive prefill up-projects at most this many context rows to K/V at once: a step whose
  // prefill sequences hold more attends them in pieces of this many rows, merged by log-sum-exp
  // (model/prefill_pieces.h); at most piece_rows x heads x (qk_head_dim + v_head_dim) values of K/V at a time.
  int64_t prefill_context_piece_rows = 8192;
};

class MlaBackend {
 public:
  virtual ~MlaBackend() = default;
  virtual const char* name() const = 0;
  // Once per step, before the first layer. `batch` and `step` must outlive the step's forward calls.
  virtual void plan(const ForwardBatch& batch, const StepTensors& step) = 0;
  // q [T, H_q, qk_head_dim] (rope applied), cache [blocks, block_size, kv_lora_rank + rope] -> [T, H_out, v].
  virtual Tensor forward(const Tensor& q, const Tensor& cache, const MlaLayerWeights& w) const = 0;
  // The most context rows the naive path held as K/V at once since the last plan (the batched backend; 0 for others).
  virtual int64_t kv_rows_peak() const { return 0; }
};

enum class MlaBackendKind { Auto, Reference, Batched };  // Auto: Reference on the CPU, Batched on the GPU

// `placement`: where the model's weights, activations and cache live (device and dtype); `local_heads`: H_q.
std::unique_ptr<MlaBackend> make_mla_backend(MlaBackendKind kind, const ModelConfig& c, int64_t local_heads,
                                             const Placement& placement, MlaDcpGroup dcp = {},
                                             MlaBackendOptions options = {});

}  // namespace mlarun
