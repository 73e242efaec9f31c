// Hostile configs (issue 13, items 1-4): YAML aliases that expand without limit, sizes far above any model,
// products of sizes that overflow int64, and non-finite numbers. Each bad file is written here in the formats it
// applies to (DeepSeek JSON, YAML, Hugging Face config.json) and loaded in a child process under a time and an
// address-space limit, so a regression fails fast instead of hanging or swamping the machine; the message must
// name the file, the key, the value and the limit.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <functional>
#include <limits>

#include "runtime/config_reader.h"
#include "runtime/config_value.h"
#include "runtime/json.h"
#include "runtime/model_config.h"
#include "test_util.h"

using namespace mlarun;
using mlarun::testing::ScratchDir;

namespace {

using mlarun::testing::kAsan;  // ASan reserves terabytes of address space: no RLIMIT_AS then

struct Outcome {
  bool finished = false;  // the child returned or threw mlarun::Error (not killed, no other exception)
  std::string message;    // the mlarun::Error message, "" when none was thrown
  double seconds = 0;
  long max_rss_kb = 0;
};

// Runs `fn` in a forked child with alarm(`limit_s`) and a 4 GiB address-space limit; reports what it threw.
Outcome run_bounded(const std::function<void()>& fn, unsigned limit_s = 10) {
  int fds[2];
  if (pipe(fds) != 0) return {};
  auto start = std::chrono::steady_clock::now();
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    alarm(limit_s);
    if (!kAsan) {
      rlimit as{rlim_t(4) << 30, rlim_t(4) << 30};
      setrlimit(RLIMIT_AS, &as);
    }
    std::string out = "ok";
    int code = 0;
    try {
      fn();
    } catch (const Error& e) {
      out = std::string("error:") + e.what();
    } catch (const std::exception& e) {
      out = std::string("other exception: ") + e.what();
      code = 3;
    }
    for (size_t at = 0; at < out.size();) {
      ssize_t n = write(fds[1], out.data() + at, out.size() - at);
      if (n <= 0) break;
      at += size_t(n);
    }
    _exit(code);
  }
  close(fds[1]);
  std::string got;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) got.append(buf, size_t(n));
  close(fds[0]);
  int status = 0;
  rusage usage{};
  wait4(pid, &status, 0, &usage);
  Outcome o;
  o.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  o.max_rss_kb = usage.ru_maxrss;
  o.finished = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (!o.finished) o.message = "child did not finish cleanly (status " + std::to_string(status) + "): " + got;
  else if (got.rfind("error:", 0) == 0) o.message = got.substr(6);
  return o;
}

// Loads `path` under the bounds and checks that it fails quickly, in little memory, naming every one of `parts`.
void expect_refused(const std::string& path, const std::vector<std::string>& parts) {
  Outcome o = run_bounded([&] { load_model_config(path); });
  ASSERT_TRUE(o.finished) << path << ": " << o.message;
  ASSERT_FALSE(o.message.empty()) << path << " was accepted";
  EXPECT_LT(o.seconds, 3.0) << path;
  EXPECT_LT(o.max_rss_kb, 512L * 1024) << path;
  for (const std::string& part : parts)
    EXPECT_NE(o.message.find(part), std::string::npos) << path << ": " << o.message << "\nmissing: " << part;
}

// A small, valid HF config.json body without the closing brace, for one more key to be appended.
const char* kHfBase = R"({"model_type": "deepseek_v3", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 48,
  "moe_intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 4, "kv_lora_rank": 16,
  "qk_nope_head_dim": 8, "qk_rope_head_dim": 4, "v_head_dim": 8, "n_routed_experts": 4, "num_experts_per_tok": 2,
  "first_k_dense_replace": 1)";

// The HF config with `key` set to the raw JSON text `value` (replacing the base's own, if it has one).
std::string hf(const std::string& key, const std::string& value) {
  json::Value base = json::parse(std::string(kHfBase) + "}", "base");
  base.erase(key);
  std::string text = json::dump(base);
  return text.substr(0, text.size() - 1) + ", \"" + key + "\": " + value + "}";
}

// Nested anchors: level k is a list of `width` aliases of level k-1 ("billion laughs": 9^9 values from ~350 bytes).
std::string laughs(int levels, int width, const std::string& leaf) {
  std::string text = "l0: &l0 " + leaf + "\n";
  for (int k = 1; k <= levels; ++k) {
    text += "l" + std::to_string(k) + ": &l" + std::to_string(k) + " [";
    for (int i = 0; i < width; ++i) text += (i ? ", *l" : "*l") + std::to_string(k - 1);
    text += "]\n";
  }
  return text;
}

}  // namespace

TEST(ConfigHardening, YamlAliasExpansionIsBounded) {
  ScratchDir dir;
  std::string bomb = laughs(9, 9, R"(["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"])");
  ASSERT_LT(bomb.size(), 600u);
  expect_refused(dir.write("laughs.yaml", bomb),
                 {"laughs.yaml", "expands to more than " + std::to_string(kMaxYamlValues) + " values", "key 'l"});
  // Few values but a large scalar used many times: the bytes are bounded too.
  expect_refused(dir.write("wide.yaml", laughs(3, 8, std::string(1 << 20, 'x'))),
                 {"wide.yaml", std::to_string(kMaxYamlTextBytes) + " bytes"});
  // An alias inside the node it names would expand forever.
  expect_refused(dir.write("cycle.yaml", "dim: 64\nr: &r [1, *r]\n"), {"cycle.yaml", "key 'r[1]'", "cycle"});
  expect_refused(dir.write("cycle_map.yaml", "m: &m {a: 1, b: *m}\n"), {"cycle_map.yaml", "key 'm.b'", "cycle"});
  // Nesting deeper than JSON allows.
  expect_refused(dir.write("deep.yaml", "a: " + std::string(200, '[') + std::string(200, ']') + "\n"),
                 {"deep.yaml", "nesting deeper than " + std::to_string(json::kMaxDepth)});
  // A scalar of two million digits neither overflows the stack nor fills the message.
  Outcome o = run_bounded([&] { parse_yaml("n_layers: " + std::string(2'000'000, '7') + "\n", "long.yaml"); });
  ASSERT_TRUE(o.finished) << o.message;
  EXPECT_NE(o.message.find("key 'n_layers'"), std::string::npos) << o.message.substr(0, 300);
  EXPECT_NE(o.message.find("(2000000 characters)"), std::string::npos) << o.message.substr(0, 300);
  EXPECT_LT(o.message.size(), 300u);
  // Ordinary use of anchors still works, and a moderate expansion stays under the bounds.
  json::Value v = parse_yaml("a: &x [1, 2]\nb: *x\nc: &s 7\nd: *s\n", "ok.yaml");
  EXPECT_EQ(v.at("b"), v.at("a"));
  EXPECT_EQ(v.at("d").get<int64_t>(), 7);
  EXPECT_EQ(parse_yaml(laughs(4, 9, "1"), "small.yaml").at("l4").size(), 9u);
}

TEST(ConfigHardening, SizesHaveUpperBounds) {
  using namespace config_limits;
  ScratchDir dir;
  const std::string big = "4611686018427387904";  // 2^62
  expect_refused(dir.write("layers.json", R"({"n_layers": )" + big + "}"),
                 {"layers.json", "key 'n_layers'", big, "limit of 4096"});
  expect_refused(dir.write("layers.yaml", "n_layers: 1000000000\n"),
                 {"layers.yaml", "key 'n_layers'", "1000000000", "limit of 4096"});
  expect_refused(dir.write("hf_layers.json", hf("num_hidden_layers", R"(2147483648)")),
                 {"hf_layers.json", "key 'num_hidden_layers'", "2147483648", "limit of 4096"});
  expect_refused(dir.write("vocab.json", R"({"vocab_size": )" + big + "}"),
                 {"vocab.json", "key 'vocab_size'", big, "limit of " + std::to_string(kMaxVocab)});
  expect_refused(dir.write("kv.yaml", "kv_lora_rank: " + big + "\n"),
                 {"kv.yaml", "key 'kv_lora_rank'", big, "limit of " + std::to_string(kMaxWidth)});
  expect_refused(dir.write("hf_dim.json", hf("hidden_size", "2097152")),
                 {"hf_dim.json", "key 'hidden_size'", "2097152", "limit of " + std::to_string(kMaxWidth)});
  expect_refused(dir.write("experts.json", R"({"n_routed_experts": 1000000000})"),
                 {"experts.json", "key 'n_routed_experts'", "1000000000", "limit of " + std::to_string(kMaxExperts)});
  expect_refused(dir.write("hf_seq.json", hf("max_position_embeddings", R"(1099511627776)")),
                 {"hf_seq.json", "key 'max_position_embeddings'", "1099511627776", "limit of " + std::to_string(kMaxSeqLen)});
  expect_refused(dir.write("heads.yaml", "n_heads: 131072\n"), {"heads.yaml", "key 'n_heads'", "131072", "limit of 65536"});
  expect_refused(dir.write("vhead.json", R"({"v_head_dim": 70000})"), {"vhead.json", "key 'v_head_dim'", "70000", "limit of 65536"});
  expect_refused(dir.write("hf_eos.json", hf("eos_token_id", R"(-5)")), {"hf_eos.json", "key 'eos_token_id'", "-5"});
  expect_refused(dir.write("neg_experts.json", R"({"n_routed_experts": -1})"),
                 {"neg_experts.json", "key 'n_routed_experts'", "-1", "must not be negative"});
  // At the bound it loads, and counting MoE layers costs nothing at any size.
  ModelConfig c = load_model_config(dir.write("max_layers.json", R"({"n_layers": 4096, "n_dense_layers": 3,
    "vocab_size": 64, "dim": 32, "inter_dim": 48, "moe_inter_dim": 16, "n_heads": 4, "kv_lora_rank": 16,
    "q_lora_rank": 0, "qk_nope_head_dim": 8, "qk_rope_head_dim": 4, "v_head_dim": 8})"));
  EXPECT_EQ(c.num_moe_layers(), 4093);
  for (int64_t layers : {1, 2, 7, 61}) {
    for (int64_t dense : {-2, 0, 1, 3, 7, 70}) {
      for (int64_t freq : {1, 2, 3}) {
        ModelConfig m = c;
        m.n_layers = layers, m.n_dense_layers = dense, m.moe_layer_freq = freq;
        int64_t loop = 0;
        for (int64_t l = 0; l < layers; ++l) loop += m.is_moe_layer(l);
        EXPECT_EQ(m.num_moe_layers(), loop) << layers << " " << dense << " " << freq;
      }
    }
  }
  ModelConfig huge = c;
  huge.n_layers = int64_t(1) << 62;
  Outcome o = run_bounded([&] { (void)huge.num_moe_layers(); huge.validate(); });
  ASSERT_TRUE(o.finished) << o.message;
  EXPECT_LT(o.seconds, 1.0);
  EXPECT_NE(o.message.find("limit of 4096"), std::string::npos) << o.message;
}

TEST(ConfigHardening, SizeProductsAreCheckedForOverflow) {
  ScratchDir dir;
  // Every size within its bound, but 4095 MoE layers of 65536 experts of 2^20 x 2^20 weights exceed int64.
  const char* ds = R"({"n_layers": 4096, "dim": 1048576, "moe_inter_dim": 1048576, "n_routed_experts": 65536,
    "n_activated_experts": 6, "n_expert_groups": 1, "n_limited_groups": 1})";
  expect_refused(dir.write("params.json", ds), {"params.json", "the parameter count overflows a signed 64-bit integer",
                                                "n_routed_experts", "dim", "moe_inter_dim"});
  std::string yaml = "n_layers: 4096\ndim: 1048576\nmoe_inter_dim: 1048576\nn_routed_experts: 65536\n";
  expect_refused(dir.write("params.yaml", yaml), {"params.yaml", "overflows", "n_routed_experts", "moe_inter_dim"});
  std::string hf_text = R"({"model_type": "deepseek_v3", "vocab_size": 64, "hidden_size": 1048576,
    "num_hidden_layers": 4096, "num_attention_heads": 4, "kv_lora_rank": 16, "qk_nope_head_dim": 8,
    "qk_rope_head_dim": 4, "v_head_dim": 8, "n_routed_experts": 65536, "num_experts_per_tok": 8,
    "moe_intermediate_size": 1048576, "first_k_dense_replace": 0, "n_group": 1, "topk_group": 1})";
  expect_refused(dir.write("hf_params.json", hf_text),
                 {"hf_params.json", "overflows", "n_routed_experts", "hidden_size", "moe_intermediate_size"});
  // A config built in code skips validation; its derived sizes still refuse to wrap (they printed a 512-byte
  // latent and 29.64M parameters for 2^62 before).
  ModelConfig c;
  c.source = "code";
  c.kv_lora_rank = int64_t(1) << 62;
  EXPECT_ERROR_MENTIONS(c.latent_cache_bytes_per_token(), "code", "latent cache", "n_layers", "kv_lora_rank");
  EXPECT_ERROR_MENTIONS(c.num_params(), "parameter count", "kv_lora_rank");
  c = ModelConfig();
  c.vocab_size = int64_t(1) << 62;
  EXPECT_ERROR_MENTIONS(c.num_params(), "parameter count", "2 * vocab_size", "4611686018427387904");
  c = ModelConfig();
  c.n_heads = int64_t(1) << 61;
  EXPECT_ERROR_MENTIONS(c.mha_cache_bytes_per_token(), "MHA cache", "n_heads");
  // The real models are unchanged by the closed form.
  ModelConfig v2 = load_model_config(mlarun::testing::source_dir() + "/configs/config_236B.json");
  EXPECT_EQ(v2.num_params(), 235741434880);
  EXPECT_EQ(v2.latent_cache_bytes_per_token(), 69120);
}

TEST(ConfigHardening, NonFiniteNumbersAreRefusedNamingTheKey) {
  ScratchDir dir;
  expect_refused(dir.write("scale.json", R"({"route_scale": 1e400})"), {"scale.json", "number overflow", "route_scale"});
  expect_refused(dir.write("hf_eps.json", hf("rms_norm_eps", R"(1e400)")), {"hf_eps.json", "rms_norm_eps", "1e400"});
  expect_refused(dir.write("hf_factor.json", hf("routed_scaling_factor", R"(-1e999)")),
                 {"hf_factor.json", "routed_scaling_factor"});
  expect_refused(dir.write("hf_rope.json", hf("rope_scaling", R"({"type": "yarn", "factor": 1e400})")),
                 {"hf_rope.json", "rope_scaling.factor", "1e400"});
  EXPECT_ERROR_MENTIONS(json::parse(R"({"a": [1, {"b": 2, "c": -1e400}]})", "nested.json"), "nested.json",
                        "number overflow", "(key 'a[1].c')");
  expect_refused(dir.write("scale.yaml", "route_scale: 1e400\n"), {"scale.yaml", "'route_scale'", "out of range"});
  for (const char* v : {".inf", "-.inf", "+.Inf", ".NaN", ".nan", ".INF"}) {
    std::string text = std::string("rope_theta: ") + v + "\n";
    expect_refused(dir.write("theta.yaml", text), {"theta.yaml", "'rope_theta'", v, "finite"});
  }
  expect_refused(dir.write("quoted.yaml", "rope_theta: '.inf'\n"), {"quoted.yaml", "'rope_theta'", "expected a number"});
  // A tree built in code may hold infinity; the reader refuses it by key.
  json::Value tree = json::Value::object();
  tree["mscale"] = std::numeric_limits<double>::infinity();
  tree["n"] = std::nan("");
  ConfigReader r(tree, "tree");
  EXPECT_ERROR_MENTIONS(r.get_double("mscale", 1), "tree", "'mscale'", "inf", "finite");
  EXPECT_ERROR_MENTIONS(r.get_int("n", 1), "tree", "'n'", "nan", "finite");
  // validate() refuses non-finite fields of a config built in code, naming the key of its format.
  ModelConfig c = load_model_config(mlarun::testing::source_dir() + "/configs/config_small.json");
  c.validate();
  ModelConfig bad = c;
  bad.rms_norm_eps = std::numeric_limits<double>::infinity();
  EXPECT_ERROR_MENTIONS(bad.validate(), "'rms_norm_eps'", "inf", "finite");
  bad = c;
  bad.route_scale = std::numeric_limits<double>::infinity();
  EXPECT_ERROR_MENTIONS(bad.validate(), "'route_scale'", "finite");
  bad = c;
  bad.mscale = 1e200;  // finite, but the softmax scale m^2 overflows
  EXPECT_ERROR_MENTIONS(bad.validate(), "'mscale'", "1e+200", "softmax scale");
  // The writer never turns infinity or NaN into null: it fails naming the field.
  json::Value j = bad.to_json();
  EXPECT_ERROR_MENTIONS(json::dump(j, 2), "'softmax_scale'", "inf");
  bad = c;
  bad.rope_theta = std::nan("");
  EXPECT_ERROR_MENTIONS(json::dump(bad.to_json()), "'rope_theta'", "nan");
  EXPECT_EQ(json::dump(c.to_json()).find("null"), std::string::npos);
}
