// ModelConfig from the three formats: the shipped configs' derived numbers (docs/model.md §6.3), the field mapping
// of the Hugging Face fixtures (docs/config.md §2-3), and every class of bad config in docs/config.md §5.
#include <gtest/gtest.h>

#include <cmath>

#include "runtime/config_reader.h"
#include "runtime/config_value.h"
#include "runtime/json.h"
#include "runtime/model_config.h"
#include "test_util.h"

using namespace mlarun;
using mlarun::testing::ScratchDir;

static std::string config_path(const std::string& name) { return mlarun::testing::source_dir() + "/configs/" + name; }

TEST(ModelConfig, ShippedConfigsMatchTheSpec) {
  struct Expect {
    const char* name;
    double params_b;
    int64_t cache_bytes;
  };
  for (Expect e : {Expect{"config_16B", 15.71, 31104}, Expect{"config_236B", 235.74, 69120},
                   Expect{"config_671B", 671.03, 70272}}) {
    for (const char* ext : {".json", ".yaml"}) {
      ModelConfig c = load_model_config(config_path(std::string(e.name) + ext));
      EXPECT_EQ(c.format, "deepseek");
      EXPECT_NEAR(double(c.num_params()) / 1e9, e.params_b, e.params_b * 0.001) << e.name << ext;
      EXPECT_EQ(c.latent_cache_bytes_per_token(DType::BF16), e.cache_bytes) << e.name << ext;
      EXPECT_EQ(c.qk_head_dim(), 192);
    }
  }
}

TEST(ModelConfig, DeepSeekFormatDefaultsAndInference) {
  ModelConfig v2 = load_model_config(config_path("config_236B.json"));
  EXPECT_EQ(v2.topk_method, TopkMethod::GroupLimitedGreedy);
  EXPECT_FALSE(v2.norm_topk_prob);
  EXPECT_EQ(v2.max_seq_len, 16384);  // ModelArgs default
  EXPECT_EQ(v2.original_seq_len, 4096);
  EXPECT_TRUE(v2.use_yarn);
  EXPECT_NEAR(v2.softmax_scale(), 0.1352337788608801, 1e-12);  // mscale 1.0 default
  ModelConfig lite = load_model_config(config_path("config_16B.json"));
  EXPECT_EQ(lite.q_lora_rank, 0);
  EXPECT_EQ(lite.topk_method, TopkMethod::Greedy);
  EXPECT_NEAR(lite.softmax_scale(), 0.11472138679292611, 1e-12);
  ModelConfig v3 = load_model_config(config_path("config_671B.yaml"));
  EXPECT_EQ(v3.topk_method, TopkMethod::NoauxTc);
  EXPECT_TRUE(v3.has_gate_bias);
  EXPECT_TRUE(v3.norm_topk_prob);
  EXPECT_EQ(v3.dtype, "fp8");
  EXPECT_EQ(v3.num_moe_layers(), 58);
}

TEST(ModelConfig, YamlTwinsEqualJson) {
  for (const char* name : {"config_16B", "config_236B", "config_671B"}) {
    ModelConfig a = load_model_config(config_path(std::string(name) + ".json"));
    ModelConfig b = load_model_config(config_path(std::string(name) + ".yaml"));
    json::Value ja = a.to_json(), jb = b.to_json();
    ja["source"] = "";
    jb["source"] = "";
    EXPECT_EQ(json::dump(ja), json::dump(jb)) << name;
  }
}

TEST(ModelConfig, HuggingFaceFixturesMapOntoModelArgs) {
  ModelConfig v2 = load_model_config_from_dir(mlarun::testing::data_dir() + "/deepseek-v2-tiny");
  EXPECT_EQ(v2.format, "huggingface");
  EXPECT_EQ(v2.dim, 256);
  EXPECT_EQ(v2.n_heads, 8);
  EXPECT_EQ(v2.q_lora_rank, 96);
  EXPECT_EQ(v2.kv_lora_rank, 64);
  EXPECT_EQ(v2.n_dense_layers, 1);
  EXPECT_EQ(v2.n_routed_experts, 8);
  EXPECT_EQ(v2.n_activated_experts, 3);
  EXPECT_EQ(v2.topk_method, TopkMethod::GroupLimitedGreedy);
  EXPECT_EQ(v2.score_func, ScoreFunc::Softmax);
  EXPECT_EQ(v2.n_expert_groups, 4);
  EXPECT_EQ(v2.n_limited_groups, 2);
  EXPECT_EQ(v2.original_seq_len, 128);
  EXPECT_DOUBLE_EQ(v2.rope_factor, 4.0);
  EXPECT_DOUBLE_EQ(v2.mscale, 0.707);
  EXPECT_DOUBLE_EQ(v2.rope_attention_factor, 1.0);
  EXPECT_NEAR(v2.softmax_scale(), 0.17401743871138856, 1e-12);
  EXPECT_EQ(v2.eos_token_id, 1);

  ModelConfig v3 = load_model_config(mlarun::testing::data_dir() + "/deepseek-v3-tiny/config.json");
  EXPECT_EQ(v3.topk_method, TopkMethod::NoauxTc);
  EXPECT_TRUE(v3.has_gate_bias);
  EXPECT_TRUE(v3.norm_topk_prob);
  EXPECT_EQ(v3.score_func, ScoreFunc::Sigmoid);
  EXPECT_DOUBLE_EQ(v3.route_scale, 2.5);
  EXPECT_EQ(v3.v_head_dim, 24);
  EXPECT_NEAR(v3.softmax_scale(), 0.2579400167008971, 1e-12);
}

TEST(ModelConfig, HuggingFaceVariants) {
  ScratchDir dir;
  // Transformers 5 writes rope_parameters (with rope_theta inside); V2-Lite has q_lora_rank null.
  std::string base = R"("model_type": "deepseek_v2", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 48,
    "moe_intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 4, "kv_lora_rank": 16,
    "qk_nope_head_dim": 8, "qk_rope_head_dim": 4, "v_head_dim": 12, "n_routed_experts": 4, "num_experts_per_tok": 2,
    "first_k_dense_replace": 1, "q_lora_rank": null)";
  ModelConfig a = load_model_config(dir.write("a.json", "{" + base + R"(, "rope_parameters": {"rope_type": "yarn",
    "factor": 4.0, "original_max_position_embeddings": 32, "mscale": 0.707, "mscale_all_dim": 0.707, "rope_theta": 5000.0}})"));
  EXPECT_EQ(a.q_lora_rank, 0);
  EXPECT_DOUBLE_EQ(a.rope_theta, 5000.0);
  EXPECT_TRUE(a.use_yarn);
  EXPECT_EQ(a.topk_method, TopkMethod::Greedy);
  EXPECT_EQ(a.n_shared_experts, 0);
  // No rope scaling: plain RoPE and no mscale.
  ModelConfig b = load_model_config(dir.write("b.json", "{" + base + "}"));
  EXPECT_FALSE(b.use_yarn);
  EXPECT_NEAR(b.softmax_scale(), 1.0 / std::sqrt(12.0), 1e-12);
  // Without mscale/mscale_all_dim HF scales cos/sin by yarn_get_mscale(factor) and leaves the softmax alone.
  ModelConfig c = load_model_config(dir.write("c.json", "{" + base + R"(, "rope_scaling": {"type": "yarn", "factor": 4.0,
    "original_max_position_embeddings": 32}})"));
  EXPECT_NEAR(c.rope_attention_factor, 0.1 * std::log(4.0) + 1.0, 1e-12);
  EXPECT_NEAR(c.softmax_scale(), 1.0 / std::sqrt(12.0), 1e-12);
  // A dense-only model (no routed experts).
  ModelConfig d = load_model_config(dir.write("d.json", R"({"model_type": "deepseek_v3", "vocab_size": 64,
    "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "kv_lora_rank": 16,
    "qk_nope_head_dim": 8, "qk_rope_head_dim": 4, "v_head_dim": 8, "n_routed_experts": null})"));
  EXPECT_EQ(d.num_moe_layers(), 0);
}

struct BadConfig {
  const char* file;
  const char* text;
  std::vector<const char*> mentions;
};

TEST(ModelConfig, BadConfigsNameFileKeyAndValue) {
  ScratchDir dir;
  std::vector<BadConfig> cases = {
      {"unknown.json", R"({"dim": 64, "n_head": 4})", {"unknown.json", "n_head", "unknown key"}},
      {"type.json", R"({"dim": "2048"})", {"type.json", "'dim'", "integer", "\"2048\""}},
      {"type.yaml", "dim: '2048'\n", {"type.yaml", "'dim'", "integer"}},
      {"float.json", R"({"n_layers": 2.5})", {"float.json", "n_layers", "2.5"}},
      {"zero.json", R"({"n_heads": 0})", {"zero.json", "n_heads", "0", "positive"}},
      {"negative.yaml", "kv_lora_rank: -512\n", {"negative.yaml", "kv_lora_rank", "-512"}},
      {"odd_rope.json", R"({"qk_rope_head_dim": 63})", {"odd_rope.json", "qk_rope_head_dim", "63", "even"}},
      {"topk.json", R"({"n_activated_experts": 65})", {"topk.json", "n_activated_experts", "65"}},
      {"groups.json", R"({"n_expert_groups": 5})", {"groups.json", "n_expert_groups", "5", "divide"}},
      {"score.json", R"({"score_func": "relu"})", {"score.json", "score_func", "relu"}},
      {"dense.json", R"({"n_dense_layers": 40})", {"dense.json", "n_dense_layers", "40"}},
      {"notmap.yaml", "- 1\n- 2\n", {"notmap.yaml", "mapping"}},
      {"dup.yaml", "dim: 1\ndim: 2\n", {"dup.yaml", "duplicate", "dim"}},
      {"syntax.json", R"({"dim": 2048,)", {"syntax.json", "invalid JSON"}},
      {"hf_missing.json", R"({"model_type": "deepseek_v3", "vocab_size": 64, "num_hidden_layers": 2})",
       {"hf_missing.json", "missing required key", "hidden_size"}},
      {"hf_rope.json",
       R"({"model_type": "deepseek_v3", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 48,
           "num_hidden_layers": 1, "num_attention_heads": 4, "kv_lora_rank": 16, "qk_nope_head_dim": 8,
           "qk_rope_head_dim": 4, "v_head_dim": 8, "rope_scaling": {"type": "longrope", "factor": 2}})",
       {"hf_rope.json", "rope_scaling.type", "longrope"}},
      {"hf_v2_noaux.json", R"({"model_type": "deepseek_v2", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 48,
           "num_hidden_layers": 1, "num_attention_heads": 4, "kv_lora_rank": 16, "qk_nope_head_dim": 8,
           "qk_rope_head_dim": 4, "v_head_dim": 8, "topk_method": "noaux_tc"})",
       {"hf_v2_noaux.json", "topk_method", "noaux_tc"}},
      {"hf_type.json", R"({"model_type": "llama", "hidden_size": 4})", {"hf_type.json", "model_type", "llama"}},
  };
  for (const BadConfig& bc : cases) {
    std::string path = dir.write(bc.file, bc.text);
    std::string msg = mlarun::testing::error_message([&] { load_model_config(path); });
    ASSERT_FALSE(msg.empty()) << bc.file << " was accepted";
    for (const char* part : bc.mentions)
      EXPECT_NE(msg.find(part), std::string::npos) << bc.file << ": " << msg << "\nmissing: " << part;
  }
  EXPECT_ERROR_MENTIONS(load_model_config(dir.file("absent.json")), "absent.json");
  EXPECT_ERROR_MENTIONS(load_model_config_from_dir(dir.path().string()), "no config.json");
}

TEST(ModelConfig, TensorParallelDivisibility) {
  ModelConfig v3 = load_model_config_from_dir(mlarun::testing::data_dir() + "/deepseek-v3-tiny");
  v3.validate_for_tp(1);
  v3.validate_for_tp(2);
  EXPECT_ERROR_MENTIONS(v3.validate_for_tp(3), "n_routed_experts = 16", "3");
  EXPECT_ERROR_MENTIONS(v3.validate_for_tp(4), "num_attention_heads = 6", "4");
  ModelConfig big = load_model_config(config_path("config_236B.json"));
  big.validate_for_tp(8);
  EXPECT_ERROR_MENTIONS(big.validate_for_tp(3), "n_heads = 128", "3");
  EXPECT_ERROR_MENTIONS(big.validate_for_tp(0), "at least 1");
}

TEST(ConfigValue, YamlScalarsFollowTheCoreSchema) {
  json::Value v = parse_yaml("a: 12\nb: 1.5e3\nc: 'quoted'\nd: ~\ne: true\nf: text\ng: \"7\"\n", "t.yaml");
  EXPECT_TRUE(v.at("a").is_number_integer());
  EXPECT_TRUE(v.at("b").is_number_float());
  EXPECT_DOUBLE_EQ(v.at("b").get<double>(), 1500.0);
  EXPECT_TRUE(v.at("c").is_string());
  EXPECT_TRUE(v.at("d").is_null());
  EXPECT_TRUE(v.at("e").get<bool>());
  EXPECT_EQ(v.at("f").get<std::string>(), "text");
  EXPECT_TRUE(v.at("g").is_string());
  EXPECT_ERROR_MENTIONS(parse_yaml("a: [1, 2\n", "broken.yaml"), "broken.yaml", "line");
}

TEST(ConfigValue, IntegersStayApartFromFloatsInBothFormats) {
  ScratchDir dir;
  for (const char* file : {"types.json", "types.yaml"}) {
    std::string text = std::string(file) == "types.json"
                           ? R"({"quoted": "2048", "int": 2048, "float": 2048.0, "half": 2048.5})"
                           : "quoted: '2048'\nint: 2048\nfloat: 2048.0\nhalf: 2048.5\n";
    std::string path = dir.write(file, text);
    json::Value tree = load_config_tree(path);
    EXPECT_TRUE(tree.at("quoted").is_string()) << file;
    EXPECT_TRUE(tree.at("int").is_number_integer()) << file;
    EXPECT_TRUE(tree.at("float").is_number_float()) << file;
    ConfigReader r(tree, path);
    EXPECT_EQ(r.get_int("int", 0), 2048);
    EXPECT_EQ(r.get_int("float", 0), 2048) << "a whole float is accepted where an integer is expected";
    EXPECT_DOUBLE_EQ(r.get_double("int", 0), 2048.0);
    EXPECT_ERROR_MENTIONS(r.get_int("quoted", 0), file, "'quoted'", "expected an integer", "string \"2048\"");
    EXPECT_ERROR_MENTIONS(r.get_int("half", 0), file, "'half'", "expected an integer", "2048.5");
    EXPECT_ERROR_MENTIONS(r.get_double("quoted", 0), file, "'quoted'", "expected a number");
  }
  std::string huge = dir.write("huge.json", R"({"n": 9223372036854775808})");
  json::Value tree = load_config_tree(huge);
  ConfigReader r(tree, huge);
  EXPECT_ERROR_MENTIONS(r.get_int("n", 0), "huge.json", "'n'", "9223372036854775808", "signed 64-bit");
  EXPECT_ERROR_MENTIONS(parse_yaml("n: 9223372036854775808\n", "huge.yaml"), "huge.yaml", "'n'", "signed 64-bit");
  EXPECT_ERROR_MENTIONS(parse_yaml("x: 1e999\n", "inf.yaml"), "inf.yaml", "'x'", "out of range");
}

TEST(ConfigValue, JsonDuplicateKeysNameFileAndPosition) {
  ScratchDir dir;
  std::string top = dir.write("dup_top.json", "{\"dim\": 64,\n \"dim\": 128}");
  EXPECT_ERROR_MENTIONS(load_model_config(top), "dup_top.json: invalid JSON at line 2, column 6",
                        "duplicate key \"dim\"");
  std::string nested = dir.write("dup_nested.json", R"({"model_type": "deepseek_v3", "rope_scaling": {"factor": 4, "factor": 8}})");
  EXPECT_ERROR_MENTIONS(load_model_config(nested), "dup_nested.json: invalid JSON at line 1", "duplicate key \"factor\"");
}
