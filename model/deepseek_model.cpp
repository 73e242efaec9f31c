// Decoder layers and the whole model (see deepseek_model.h).
#include "model/deepseek_model.h"

#include "model/mla_attention.h"
#include "runtime/error.h"
#include "runtime/runtime_options.h"
#include "runtime/safetensors.h"
#include "runtime/step_profiler.h"

namespace mlarun {

AttentionFactory mla_attention_factory(Communicator* dcp) {
  return [dcp](const ModelConfig& c, const WeightSource& weights, const std::string& prefix, Communicator& comm,
               const Placement& placement) -> std::unique_ptr<AttentionLayer> {
    return std::make_unique<MLAttention>(c, weights, prefix, comm, placement, dcp);
  };
}

DecoderLayer::DecoderLayer(const ModelConfig& c, const WeightSource& ckpt, int64_t layer, Communicator& comm,
                           const AttentionFactory& attention, const Placement& placement)
    : eps_(float(c.rms_norm_eps)) {
  const std::string p = "model.layers." + std::to_string(layer) + ".";
  attn_ = attention(c, ckpt, p + "self_attn.", comm, placement);
  input_norm_ = load_checked(ckpt, p + "input_layernorm.weight", {c.dim}, placement);
  post_attention_norm_ = load_checked(ckpt, p + "post_attention_layernorm.weight", {c.dim}, placement);
  if (c.is_moe_layer(layer))
    moe_ = std::make_unique<MoE>(c, ckpt, p + "mlp.", comm, placement);
  else
    mlp_ = std::make_unique<ParallelMLP>(ckpt, p + "mlp.", c.dim, c.inter_dim, comm, placement);
}

Tensor DecoderLayer::forward(Tensor& h, const StepContext& step, Tensor& cache, const ops::RopeTable& rope,
                             MoeLayout moe_layout) const {
  Tensor attn_out = attn_->forward(ops::rms_norm(h, input_norm_, eps_), step, cache, rope);
  Tensor normed = ops::add_rms_norm(h, attn_out, post_attention_norm_, eps_);  // h += attention
  // Time split: a dense layer's MLP is dense GEMM work; the MoE marks itself (its shared experts included).
  ops::add_inplace(h, moe_ ? moe_->forward(normed, moe_layout)
                           : profiled(ProfileCategory::DenseGemm, [&] { return mlp_->forward(normed); }));
  return h;
}

DeepseekModel::DeepseekModel(ModelConfig config, const WeightSource& ckpt, Communicator& comm,
                             const Placement& placement, const LoadProgress& progress,
                             const AttentionFactory& attention, Communicator* dcp)
    : config_(std::move(config)),
      placement_(placement),
      rope_(ops::rope_table_on(ops::make_rope_table(config_), placement.device)),
      dcp_{dcp} {
  config_.validate_for_tp(comm.world_size());
  MLARUN_CHECK(comm.world_size() % dcp_.size() == 0, "a decode-context-parallel group of ", dcp_.size(),
               " ranks does not divide ", comm.world_size(), " tensor-parallel ranks");
  mla_local_heads_ = config_.n_heads / (comm.world_size() / dcp_.size());  // query heads (a DCP group's)
  mla_ = make_mla_backend(MlaBackendKind::Auto, config_, mla_local_heads_, placement_, dcp_);
  moe_capacity_max_tokens_ = RuntimeOptions::moe_capacity_max_tokens_for(placement_.device);
  const AttentionFactory layers_attention = dcp_.on() ? mla_attention_factory(dcp) : attention;
  embed_ = VocabParallelEmbedding(ckpt, "model.embed_tokens.weight", config_.vocab_size, config_.dim, comm, placement_);
  layers_.reserve(size_t(config_.n_layers));
  for (int64_t l = 0; l < config_.n_layers; ++l) {
    layers_.emplace_back(config_, ckpt, l, comm, layers_attention, placement_);
    if (progress) progress(l + 1, config_.n_layers);
  }
  final_norm_ = load_checked(ckpt, "model.norm.weight", {config_.dim}, placement_);
  lm_head_ = ParallelLMHead(ckpt, "lm_head.weight", config_.dim, config_.vocab_size, comm, placement_);
}

std::unique_ptr<DeepseekModel> DeepseekModel::load(const std::string& dir, Communicator& comm,
                                                   const Placement& placement, const LoadProgress& progress,
                                                   Communicator* dcp) {
  return load(load_model_config_from_dir(dir), dir, comm, placement, progress, dcp);
}

std::unique_ptr<DeepseekModel> DeepseekModel::load(ModelConfig config, const std::string& dir, Communicator& comm,
                                                   const Placement& placement, const LoadProgress& progress,
                                                   Communicator* dcp) {
  Checkpoint ckpt(dir);
  return std::make_unique<DeepseekModel>(std::move(config), ckpt, comm, placement, progress, mla_attention_factory(),
                                         dcp);
}

void DeepseekModel::set_moe_capacity_max_tokens(int64_t max_tokens) {
  MLARUN_CHECK(max_tokens >= 0, "option --moe-capacity-max-tokens: value ", max_tokens, ": must be at least 0");
  moe_capacity_max_tokens_ = max_tokens;
}

void DeepseekModel::set_mla_backend(MlaBackendKind kind, MlaBackendOptions options) {
  mla_ = make_mla_backend(kind, config_, mla_local_heads_, placement_, dcp_, options);
}

Tensor DeepseekModel::forward(const ForwardBatch& batch, std::vector<Tensor>& cache) const {
  MLARUN_CHECK(!cache.empty() && cache.front().ndim() == 3, "forward: no cache pools");
  const StepTensors step = StepTensors::build(batch, placement_.device, cache.front().dim(1), cache.front().dim(0),
                                              nullptr, context_parallel());
  return forward(batch, step, cache);
}

Tensor DeepseekModel::forward(const ForwardBatch& batch, const StepTensors& step, std::vector<Tensor>& cache) const {
  return compute_logits(hidden_states(batch, step, cache));
}

Tensor DeepseekModel::compute_logits(const Tensor& hidden) const {
  return profiled(ProfileCategory::DenseGemm, [&] { return lm_head_.forward(hidden); });
}

Tensor DeepseekModel::hidden_states(const ForwardBatch& batch, const StepTensors& step,
                                    std::vector<Tensor>& cache) const {
  const int64_t T = batch.num_tokens();
  MLARUN_CHECK(T > 0, "forward: empty batch");
  MLARUN_CHECK(step.num_tokens == T && step.device == placement_.device, "forward: step tensors of ", step.num_tokens,
               " tokens on ", device_name(step.device), " for a batch of ", T, " on ", placement_.describe());
  MLARUN_CHECK(int64_t(cache.size()) == config_.n_layers, "forward: cache has ", cache.size(), " layers, model ",
               config_.n_layers);
  for (int32_t id : batch.token_ids)  // checked on the host: the ids reach the device as the step's tensor
    MLARUN_CHECK(id >= 0 && id < config_.vocab_size, "token id ", id, " is outside the vocabulary [0, ",
                 config_.vocab_size, ")");
  profiled(ProfileCategory::Attention, [&] { mla_->plan(batch, step); });
  const StepContext ctx{batch, step, mla_.get()};
  Tensor h = embed_.forward(step.token_ids);
  const MoeLayout moe_layout = this->moe_layout(T);
  for (size_t l = 0; l < layers_.size(); ++l) layers_[l].forward(h, ctx, cache[l], rope_, moe_layout);
  return ops::rms_norm(ops::gather_rows(h, step.logit_rows), final_norm_, float(config_.rms_norm_eps));
}

}  // namespace mlarun
