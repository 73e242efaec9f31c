// `mlarun info`: what a config or checkpoint holds, its parameter count, and what its latent cache costs per
// token next to what a standard multi-head attention cache of the same heads would cost.
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "launch/commands.h"
#include "runtime/json.h"
#include "runtime/model_config.h"
#include "runtime/safetensors.h"

namespace mlarun::cli {

namespace {

std::string with_commas(int64_t v) {
  std::string s = std::to_string(v < 0 ? -v : v);
  for (int i = int(s.size()) - 3; i > 0; i -= 3) s.insert(size_t(i), ",");
  return v < 0 ? "-" + s : s;
}

void print_config(const ModelConfig& c) {
  std::printf("config          %s (%s format)\n", c.source.c_str(), c.format.c_str());
  std::printf("layers          %lld (%lld dense, %lld MoE)\n", (long long)c.n_layers,
              (long long)(c.n_layers - c.num_moe_layers()), (long long)c.num_moe_layers());
  std::printf("hidden          dim %lld, vocab %lld, dense inter %lld\n", (long long)c.dim, (long long)c.vocab_size,
              (long long)c.inter_dim);
  std::printf("attention       MLA, %lld heads, q_lora_rank %lld%s, kv_lora_rank %lld, nope %lld + rope %lld, v %lld\n",
              (long long)c.n_heads, (long long)c.q_lora_rank, c.q_lora_rank ? "" : " (no q compression)",
              (long long)c.kv_lora_rank, (long long)c.qk_nope_head_dim, (long long)c.qk_rope_head_dim,
              (long long)c.v_head_dim);
  std::printf("rope            theta %g, %s", c.rope_theta, c.use_yarn ? "YaRN" : "plain");
  if (c.use_yarn)
    std::printf(" factor %g, original %lld, beta %g/%g, mscale %g", c.rope_factor, (long long)c.original_seq_len,
                c.beta_fast, c.beta_slow, c.mscale);
  std::printf("; softmax scale %.6f\n", c.softmax_scale());
  if (c.num_moe_layers() > 0)
    std::printf("moe             %lld routed (top-%lld, %s, %s, groups %lld keep %lld, scale %g%s) + %lld shared, inter %lld\n",
                (long long)c.n_routed_experts, (long long)c.n_activated_experts, score_func_name(c.score_func),
                topk_method_name(c.topk_method), (long long)c.n_expert_groups, (long long)c.n_limited_groups,
                c.route_scale, c.norm_topk_prob ? ", renormalised" : "", (long long)c.n_shared_experts,
                (long long)c.moe_inter_dim);
  int64_t params = c.num_params();
  if (params >= 1'000'000'000)
    std::printf("parameters      %s (%.2fB)\n", with_commas(params).c_str(), double(params) / 1e9);
  else
    std::printf("parameters      %s (%.2fM)\n", with_commas(params).c_str(), double(params) / 1e6);
  int64_t mla = c.latent_cache_bytes_per_token(DType::BF16);
  int64_t mha = c.mha_cache_bytes_per_token(DType::BF16);
  std::printf("cache/token     MLA latent %s bytes in bf16 (%lld layers x (%lld + %lld) x 2)\n",
              with_commas(mla).c_str(), (long long)c.n_layers, (long long)c.kv_lora_rank,
              (long long)c.qk_rope_head_dim);
  std::printf("                MHA, same heads: %s bytes (%lld layers x %lld heads x (%lld K + %lld V) x 2): MLA is %.1fx smaller\n",
              with_commas(mha).c_str(), (long long)c.n_layers, (long long)c.n_heads, (long long)c.qk_head_dim(),
              (long long)c.v_head_dim, double(mha) / double(mla));
}

void print_checkpoint(const Checkpoint& ckpt) {
  int64_t bias_values = 0, bias_tensors = 0;
  for (const std::string& name : ckpt.tensor_names()) {
    if (name.size() > 23 && name.compare(name.size() - 23, 23, "e_score_correction_bias") == 0) {
      bias_values += ckpt.info(name).numel();
      ++bias_tensors;
    }
  }
  std::printf("checkpoint      %s: %zu %s, %zu tensors, %s values", ckpt.dir().c_str(), ckpt.num_files(),
              ckpt.num_files() == 1 ? "file" : "shards", ckpt.tensor_names().size(),
              with_commas(ckpt.total_values()).c_str());
  if (bias_tensors)
    std::printf(", of which %s are gate biases (%lld e_score_correction_bias tensors)", with_commas(bias_values).c_str(),
                (long long)bias_tensors);
  std::printf("\n");
}

}  // namespace

Command add_info_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Describe a model config or a Hugging Face checkpoint directory");
  auto config = std::make_shared<std::string>();
  auto model = std::make_shared<std::string>();
  auto json_out = std::make_shared<bool>(false);
  auto* c = cmd->add_option("--config", *config, "DeepSeek inference config (.json/.yaml) or HF config.json");
  auto* m = cmd->add_option("--model", *model, "Hugging Face checkpoint directory (config.json + safetensors)");
  c->excludes(m);
  cmd->add_flag("--json", *json_out, "Print the config and derived quantities as JSON");
  return {cmd, [=]() {
    if (config->empty() && model->empty()) {
      std::cerr << "error: info needs --config FILE or --model DIR\n";
      return 1;
    }
    ModelConfig cfg = config->empty() ? load_model_config_from_dir(*model) : load_model_config(*config);
    if (*json_out) {
      std::cout << json::dump(cfg.to_json(), 2) << "\n";
      return 0;
    }
    print_config(cfg);
    if (!model->empty()) print_checkpoint(Checkpoint(*model));
    return 0;
  }};
}

}  // namespace mlarun::cli
