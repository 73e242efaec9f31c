// Decoder layers and the whole model (see deepseek_model.h).
#include "model/deepseek_model.h"

#include <cstring>

#include "model/baseline_attention.h"
#include "model/mla_attention.h"
#include "runtime/error.h"
#include "runtime/safetensors.h"

namespace mlarun {

DecoderLayer::DecoderLayer(const ModelConfig& c, const WeightSource& ckpt, int64_t layer, Communicator& comm,
                           AttentionKind attention)
    : eps_(float(c.rms_norm_eps)) {
  const std::string p = "model.layers." + std::to_string(layer) + ".";
  if (attention.is_mla())
    attn_ = std::make_unique<MLAttention>(c, ckpt, p + "self_attn.", comm);
  else
    attn_ = std::make_unique<BaselineAttention>(c, attention, ckpt, p + "self_attn.", comm);
  input_norm_ = load_checked(ckpt, p + "input_layernorm.weight", {c.dim});
  post_attention_norm_ = load_checked(ckpt, p + "post_attention_layernorm.weight", {c.dim});
  if (c.is_moe_layer(layer))
    moe_ = std::make_unique<MoE>(c, ckpt, p + "mlp.", comm);
  else
    mlp_ = std::make_unique<ParallelMLP>(ckpt, p + "mlp.", c.dim, c.inter_dim, comm);
}

Tensor DecoderLayer::forward(const Tensor& h, const ForwardBatch& batch, Tensor& cache,
                             const ops::RopeTable& rope) const {
  Tensor x = ops::add(h, attn_->forward(ops::rms_norm(h, input_norm_, eps_), batch, cache, rope));
  Tensor normed = ops::rms_norm(x, post_attention_norm_, eps_);
  ops::add_inplace(x, moe_ ? moe_->forward(normed) : mlp_->forward(normed));
  return x;
}

DeepseekModel::DeepseekModel(ModelConfig config, const WeightSource& ckpt, Communicator& comm, AttentionKind attention)
    : config_(std::move(config)), attention_(attention), rope_(ops::make_rope_table(config_)) {
  config_.validate_for_tp(comm.world_size());
  embed_ = VocabParallelEmbedding(ckpt, "model.embed_tokens.weight", config_.vocab_size, config_.dim, comm);
  layers_.reserve(size_t(config_.n_layers));
  for (int64_t l = 0; l < config_.n_layers; ++l) layers_.emplace_back(config_, ckpt, l, comm, attention_);
  final_norm_ = load_checked(ckpt, "model.norm.weight", {config_.dim});
  lm_head_ = ParallelLMHead(ckpt, "lm_head.weight", config_.dim, config_.vocab_size, comm);
}

std::unique_ptr<DeepseekModel> DeepseekModel::load(const std::string& dir, Communicator& comm) {
  ModelConfig config = load_model_config_from_dir(dir);
  Checkpoint ckpt(dir);
  return std::make_unique<DeepseekModel>(std::move(config), ckpt, comm);
}

Tensor DeepseekModel::forward(const ForwardBatch& batch, std::vector<Tensor>& cache) const {
  const int64_t T = batch.num_tokens();
  MLARUN_CHECK(T > 0, "forward: empty batch");
  MLARUN_CHECK(int64_t(batch.positions.size()) == T && int64_t(batch.slot_mapping.size()) == T,
               "forward: ", T, " tokens but ", batch.positions.size(), " positions and ", batch.slot_mapping.size(),
               " slots");
  MLARUN_CHECK(int64_t(cache.size()) == config_.n_layers, "forward: cache has ", cache.size(), " layers, model ",
               config_.n_layers);
  Tensor h = embed_.forward(batch.token_ids);
  for (size_t l = 0; l < layers_.size(); ++l) h = layers_[l].forward(h, batch, cache[l], rope_);
  Tensor rows = Tensor::empty({int64_t(batch.logit_rows.size()), config_.dim}, DType::F32);
  for (size_t i = 0; i < batch.logit_rows.size(); ++i) {
    int64_t r = batch.logit_rows[i];
    MLARUN_CHECK(r >= 0 && r < T, "forward: logit row ", r, " outside the ", T, " tokens");
    std::memcpy(rows.data<float>() + int64_t(i) * config_.dim, h.data<float>() + r * config_.dim,
                size_t(config_.dim) * 4);
  }
  return lm_head_.forward(ops::rms_norm(rows, final_norm_, float(config_.rms_norm_eps)));
}

}  // namespace mlarun
