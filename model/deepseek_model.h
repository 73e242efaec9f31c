// DeepSeek-V2/V3 for causal LM, as the math reads (docs/model.md §1): embed, then per layer
// h += MLA(RMSNorm(h)); h += FFN(RMSNorm(h)) with FFN dense for the first layers and MoE after, then the final
// norm and the LM head. Loaded from a Hugging Face checkpoint; every rank loads only its own slices.
// Each layer's attention comes from an AttentionFactory (MLA by default); a benchmark may hand in another kind
// of the same heads, and the layer then decides the cache row width. The Placement (default CPU f32) decides
// where the weights and activations live; the model code is the same for every device (it calls only ops).
// With a decode-context-parallel group (`dcp`, docs/layouts.md §2.6) the layers are MLA sharding the latent
// cache by token over the group; everything else (MLP, MoE, embedding, head) is split over tp as without it.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/attention_layer.h"
#include "model/mla_backend.h"
#include "model/mlp.h"
#include "runtime/forward_batch.h"

namespace mlarun {

// Builds one layer's attention from the weights under `prefix` ("model.layers.N.self_attn.").
using AttentionFactory = std::function<std::unique_ptr<AttentionLayer>(
    const ModelConfig& c, const WeightSource& weights, const std::string& prefix, Communicator& comm,
    const Placement& placement)>;
// Multi-head Latent Attention, the model as trained; `dcp`: the rank's decode-context-parallel group, if any.
AttentionFactory mla_attention_factory(Communicator* dcp = nullptr);

class DecoderLayer {
 public:
  DecoderLayer(const ModelConfig& c, const WeightSource& ckpt, int64_t layer, Communicator& comm,
               const AttentionFactory& attention, const Placement& placement = {});
  // Updates the residual stream `h` in place and returns it.
  Tensor forward(Tensor& h, const StepContext& step, Tensor& cache, const ops::RopeTable& rope,
                 MoeLayout moe_layout = MoeLayout::Compact) const;
  int64_t cache_width() const { return attn_->cache_width(); }
  KvCacheFormat cache_format() const { return attn_->cache_format(); }

 private:
  float eps_;
  Tensor input_norm_, post_attention_norm_;
  std::unique_ptr<AttentionLayer> attn_;  // MLA, or a baseline
  std::unique_ptr<ParallelMLP> mlp_;  // dense layers
  std::unique_ptr<MoE> moe_;          // MoE layers
};

// Called after each decoder layer is loaded: (layers loaded, layers in the model). Loading a large checkpoint
// takes minutes; the CLI shows it.
using LoadProgress = std::function<void(int64_t, int64_t)>;

class DeepseekModel {
 public:
  // `dcp`: this rank's decode-context-parallel group (N consecutive ranks of `comm`, made by comm.split; it must
  // outlive the model); null or one rank: none. Under DCP `attention` is ignored: the layers are MLA.
  DeepseekModel(ModelConfig config, const WeightSource& ckpt, Communicator& comm, const Placement& placement = {},
                const LoadProgress& progress = {}, const AttentionFactory& attention = mla_attention_factory(),
                Communicator* dcp = nullptr);
  // Loads config.json and the safetensors of `dir`.
  static std::unique_ptr<DeepseekModel> load(const std::string& dir, Communicator& comm,
                                             const Placement& placement = {}, const LoadProgress& progress = {},
                                             Communicator* dcp = nullptr);
  // The same with a config already read (the process reads it once).
  static std::unique_ptr<DeepseekModel> load(ModelConfig config, const std::string& dir, Communicator& comm,
                                             const Placement& placement = {}, const LoadProgress& progress = {},
                                             Communicator* dcp = nullptr);

  const ModelConfig& config() const { return config_; }
  // Where the weights live; cache pools go there too, in its dtype.
  const Placement& placement() const { return placement_; }
  // Values per token per layer in this rank's cache pools (the latent for MLA, K|V heads for a baseline).
  int64_t cache_width() const { return layers_.front().cache_width(); }
  // The layers' row shape for a quantized cache (AttentionLayer::cache_format): pools of any --kv-cache-dtype are
  // sized by kv_cache_storage(dtype, placement().dtype, f.latent, f.rope, f.head).
  KvCacheFormat cache_format() const { return layers_.front().cache_format(); }
  // Runs one step over `batch` with `cache` (one pool per layer); returns f32 logits [logit_rows, vocab] on the
  // model's device (ops::to_host_f32 brings them to the host). `step` is the batch's tensors on the model's device
  // (StepTensors::build, one upload; the runner keeps the staging buffer); the first form builds them itself.
  Tensor forward(const ForwardBatch& batch, std::vector<Tensor>& cache) const;
  Tensor forward(const ForwardBatch& batch, const StepTensors& step, std::vector<Tensor>& cache) const;
  // forward in its two halves: the final-normed hidden state of each logit row [logit_rows, dim] (everything
  // but the LM head: what a CUDA graph of a decode step holds, engine/decode_graphs.h), then the LM head's f32
  // logits from such rows.
  Tensor hidden_states(const ForwardBatch& batch, const StepTensors& step, std::vector<Tensor>& cache) const;
  Tensor compute_logits(const Tensor& hidden) const;
  // Which MLA backend the layers attend through (Auto: the reference on the CPU, the batched one on the GPU), and
  // how it bounds its work.
  void set_mla_backend(MlaBackendKind kind, MlaBackendOptions options = {});
  const MlaBackend& mla_backend() const { return *mla_; }
  // Steps of at most `max_tokens` tokens run the MoE layers' routed experts in the capacity layout (MoeLayout,
  // model/mlp.h), longer ones compact; 0: always compact. Default: the device's (runtime_options.h).
  void set_moe_capacity_max_tokens(int64_t max_tokens);
  MoeLayout moe_layout(int64_t num_tokens) const {
    return num_tokens <= moe_capacity_max_tokens_ ? MoeLayout::Capacity : MoeLayout::Compact;
  }
  // This rank's place in its decode-context-parallel group (size 1: none); step tensors must be built with it.
  ContextParallel context_parallel() const { return {dcp_.size(), dcp_.rank()}; }

 private:
  ModelConfig config_;
  Placement placement_;
  ops::RopeTable rope_;  // inv_freq also resident on the model's device
  int64_t mla_local_heads_ = 0;
  MlaDcpGroup dcp_;
  std::unique_ptr<MlaBackend> mla_;  // planned once per step, shared by every layer
  int64_t moe_capacity_max_tokens_ = 0;
  VocabParallelEmbedding embed_;
  std::vector<DecoderLayer> layers_;
  Tensor final_norm_;
  ParallelLMHead lm_head_;
};

}  // namespace mlarun
