// DeepSeek-V2/V3 for causal LM, as the math reads (spec section 2): embed, then per layer
// h += MLA(RMSNorm(h)); h += FFN(RMSNorm(h)) with FFN dense for the first layers and MoE after, then the final
// norm and the LM head. Loaded from a Hugging Face checkpoint; every rank loads only its own slices.
// For benchmarks the attention may instead be an MHA/GQA/MQA baseline of the same heads (AttentionKind,
// default MLA); the layer then decides the cache row width. The Placement (default CPU f32) decides where the
// weights and activations live; the model code is the same for every device (it calls only ops).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/attention_kind.h"
#include "model/attention_layer.h"
#include "model/mlp.h"
#include "runtime/forward_batch.h"

namespace mlarun {

class DecoderLayer {
 public:
  DecoderLayer(const ModelConfig& c, const WeightSource& ckpt, int64_t layer, Communicator& comm,
               AttentionKind attention = AttentionKind::mla(), const Placement& placement = {});
  // Updates the residual stream `h` in place and returns it.
  Tensor forward(Tensor& h, const ForwardBatch& batch, Tensor& cache, const ops::RopeTable& rope) const;
  int64_t cache_width() const { return attn_->cache_width(); }

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
  DeepseekModel(ModelConfig config, const WeightSource& ckpt, Communicator& comm,
                AttentionKind attention = AttentionKind::mla(), const Placement& placement = {},
                const LoadProgress& progress = {});
  // Loads config.json and the safetensors of `dir`.
  static std::unique_ptr<DeepseekModel> load(const std::string& dir, Communicator& comm,
                                             const Placement& placement = {});

  const ModelConfig& config() const { return config_; }
  const AttentionKind& attention() const { return attention_; }
  // Where the weights live; cache pools go there too, in its dtype.
  const Placement& placement() const { return placement_; }
  // Values per token per layer in this rank's cache pools (the latent for MLA, K|V heads for a baseline).
  int64_t cache_width() const { return layers_.front().cache_width(); }
  // Runs one step over `batch` with `cache` (one pool per layer); returns f32 logits [logit_rows, vocab] on the
  // model's device (ops::to_host_f32 brings them to the host).
  Tensor forward(const ForwardBatch& batch, std::vector<Tensor>& cache) const;

 private:
  ModelConfig config_;
  AttentionKind attention_;
  Placement placement_;
  ops::RopeTable rope_;
  VocabParallelEmbedding embed_;
  std::vector<DecoderLayer> layers_;
  Tensor final_norm_;
  ParallelLMHead lm_head_;
};

}  // namespace mlarun
