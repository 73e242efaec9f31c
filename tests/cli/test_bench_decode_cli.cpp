// `mlarun bench decode` end to end: the table and JSON (one record per attention kind and --kv-cache-dtype), the
// cache bytes per token per layer measured on the allocated pools against bench cache's accounting of the same
// rows (MLA fp8/int8: kv_lora_rank + 4 ceil(kv_lora_rank / 128) + 2 rope, 656 for DeepSeek-V2/V3 shapes; a
// baseline K or V head of d values d + 4 ceil(d / 128)) and the tokens that fit, the time split of every row
// (runtime/step_profiler.h), and clear failures on bad input.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <utility>

#include "cli_runner.h"
#include "runtime/json.h"
#include "test_util.h"

using namespace mlarun;
using mlarun::testing::ScratchDir;

namespace {

using mlarun::testing::run_mlarun;
using mlarun::testing::RunResult;

std::string config(const std::string& name) { return mlarun::testing::source_dir() + "/configs/" + name; }

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

int64_t quantized_bytes(int64_t n) { return n + 4 * ((n + 127) / 128); }

// A record's time split: every category present and non-negative, summing to its total and its shares to 1; the
// total within 5% of the measured step time (the profiled span is the step's, less the microseconds between the
// clock reads and the profiler's first and last boundary). MoE time only where the cut model has MoE layers,
// communication none on one rank (bench decode runs one rank; tests/model/test_mpi_model.cpp times it at tp 2).
void check_time_split(const json::Value& rec, bool has_moe) {
  const json::Value& ms = rec.at("time_split_ms");
  const json::Value& share = rec.at("time_split_share");
  double sum = 0, shares = 0;
  for (const char* c : {"attention", "moe", "dense_gemm", "norm_rope_other", "communication"}) {
    ASSERT_TRUE(ms.contains(c) && share.contains(c)) << c << ": " << json::dump(rec, 2);
    EXPECT_GE(ms.at(c).get<double>(), 0) << c;
    sum += ms.at(c).get<double>();
    shares += share.at(c).get<double>();
  }
  const double total = rec.at("time_split_total_ms").get<double>(), step = 1e3 * rec.at("avg_latency").get<double>();
  EXPECT_NEAR(sum, total, 1e-9 * total);
  EXPECT_NEAR(shares, 1, 1e-9);
  EXPECT_NEAR(total, step, 0.05 * step);
  EXPECT_GT(ms.at("attention").get<double>(), 0);
  EXPECT_GT(ms.at("dense_gemm").get<double>(), 0);
  EXPECT_GT(ms.at("norm_rope_other").get<double>(), 0);
  if (has_moe)
    EXPECT_GT(ms.at("moe").get<double>(), 0);
  else
    EXPECT_EQ(ms.at("moe").get<double>(), 0);
  EXPECT_EQ(ms.at("communication").get<double>(), 0);
}

// bench decode's records for `cfg` in every dtype, keyed by (attention, kv_cache_dtype).
std::map<std::pair<std::string, std::string>, json::Value> decode_records(const std::string& cfg,
                                                                          const ScratchDir& tmp) {
  RunResult r = run_mlarun("bench decode --config " + cfg +
                           " --layers 1 --batch 2 --seq-len 40 --block-size 16 --iters 1 --warmup 0"
                           " --attention mla,mha,gqa:8,mqa --kv-cache-dtype auto,bf16,fp8,int8 --json " +
                           tmp.file("decode.json"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  for (const char* part : {"kv cache dtype", "cache B/token/layer", "tokens in 80 GiB", "auto (f32)", "int8"})
    EXPECT_TRUE(contains(r.output, part)) << part << "\n" << r.output;
  std::map<std::pair<std::string, std::string>, json::Value> out;
  const json::Value j = json::parse_file(tmp.file("decode.json"));
  EXPECT_EQ(j.at("time_split_clock").get<std::string>(), "steady_clock");
  for (const json::Value& rec : j.at("records")) {
    out[{rec.at("attention").get<std::string>(), rec.at("kv_cache_dtype").get<std::string>()}] = rec;
    SCOPED_TRACE(rec.at("attention").get<std::string>() + " " + rec.at("kv_cache_dtype").get<std::string>());
    check_time_split(rec, /*has_moe=*/false);  // --layers 1 keeps the one dense layer
  }
  EXPECT_EQ(out.size(), 16u);
  return out;
}

// bench cache's records at tp 1, dcp 1, keyed the same way.
std::map<std::pair<std::string, std::string>, json::Value> cache_records(const std::string& cfg,
                                                                         const ScratchDir& tmp) {
  RunResult r = run_mlarun("bench cache --config " + cfg + " --tp 1 --kv-cache-dtype bf16,fp8,int8 --block-size 16"
                           " --gqa-groups 8 --measure-gib 0 --json " + tmp.file("cache.json"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::map<std::pair<std::string, std::string>, json::Value> out;
  const json::Value j = json::parse_file(tmp.file("cache.json"));
  for (const json::Value& rec : j.at("records"))
    if (rec.at("tensor_parallel_size").get<int64_t>() == 1 &&
        rec.at("decode_context_parallel_size").get<int64_t>() == 1)
      out[{rec.at("attention").get<std::string>(), rec.at("kv_cache_dtype").get<std::string>()}] = rec;
  return out;
}

// Every row of bench decode against the byte rule and bench cache: bytes per token per layer as allocated, and the
// blocks and tokens that fit in the same 80 GiB beside the same bf16 weights. Returns bench decode's records.
std::map<std::pair<std::string, std::string>, json::Value> check_against_bench_cache(
    const std::string& cfg, int64_t R, int64_t Dr, int64_t d, int64_t H, const ScratchDir& tmp) {
  const auto decode = decode_records(cfg, tmp);
  const auto cache = cache_records(cfg, tmp);
  const std::map<std::string, int64_t> kv_heads = {{"mha", H}, {"gqa:8", 8}, {"mqa", 1}};
  for (const auto& [key, rec] : decode) {
    const auto& [kind, dtype] = key;
    SCOPED_TRACE(kind + " " + dtype);
    const bool mla = kind == "mla";
    const int64_t values = mla ? R + Dr : 2 * kv_heads.at(kind) * d;
    int64_t want = 0;
    if (dtype == "auto") want = values * 4;  // the CPU runs f32
    if (dtype == "bf16") want = values * 2;
    if (dtype == "fp8" || dtype == "int8")
      want = mla ? quantized_bytes(R) + 2 * Dr : 2 * kv_heads.at(kind) * quantized_bytes(d);
    EXPECT_EQ(rec.at("kv_bytes_per_token_per_layer").get<int64_t>(), want);
    EXPECT_EQ(rec.at("kv_cache_quantized").get<bool>(), dtype == "fp8" || dtype == "int8");
    EXPECT_EQ(rec.at("cache_bytes_read_per_step").get<int64_t>(), 2 * 1 * 41 * want);
    EXPECT_GT(rec.at("tokens_per_second").get<double>(), 0);
    EXPECT_EQ(rec.at("kv_cache_tokens").get<int64_t>(), rec.at("num_gpu_blocks").get<int64_t>() * 16);
    if (dtype == "auto") continue;  // bench cache has no f32 rows
    const json::Value& acc = cache.at(key);
    EXPECT_EQ(rec.at("kv_bytes_per_token_per_layer").get<int64_t>(),
              acc.at("kv_bytes_per_token_per_layer").get<int64_t>());
    EXPECT_EQ(rec.at("num_gpu_blocks").get<int64_t>(), acc.at("num_gpu_blocks").get<int64_t>());
    EXPECT_EQ(rec.at("kv_cache_tokens").get<int64_t>(), acc.at("kv_cache_tokens").get<int64_t>());
  }
  return decode;
}

}  // namespace

// config_small has DeepSeek-V2/V3's latent shape (512, 64): MLA fp8/int8 656 B per token per layer.
TEST(BenchDecodeCli, KvCacheDtypeRowsMatchBenchCacheV2Shapes) {
  ScratchDir tmp;
  const auto decode = check_against_bench_cache(config("config_small.json"), 512, 64, 128, 16, tmp);
  EXPECT_EQ(decode.at({"mla", "fp8"}).at("kv_bytes_per_token_per_layer").get<int64_t>(), 656);
  EXPECT_EQ(decode.at({"mla", "int8"}).at("kv_bytes_per_token_per_layer").get<int64_t>(), 656);
  EXPECT_EQ(decode.at({"mha", "fp8"}).at("kv_bytes_per_token_per_layer").get<int64_t>(), 2 * 16 * 132);
}

// A latent and heads that 128 does not divide: the last tile of each is shorter, its scale counted.
TEST(BenchDecodeCli, KvCacheDtypeRowsFollowTheTileRuleInGeneral) {
  ScratchDir tmp;
  json::Value c = json::parse_file(config("config_small.json"));
  c["kv_lora_rank"] = 200;
  c["qk_rope_head_dim"] = 32;
  c["v_head_dim"] = 96;
  const std::string cfg = tmp.write("odd.json", json::dump(c, 2));
  check_against_bench_cache(cfg, 200, 32, 96, 16, tmp);
}

TEST(BenchDecodeCli, SmallConfigTableAndJson) {
  ScratchDir tmp;
  RunResult r = run_mlarun("bench decode --config " + config("config_small.json") +
                           " --layers 2 --batch 2 --seq-len 100 --block-size 16 --iters 2 --attention mla,mha,gqa:8,mqa"
                           " --json " + tmp.file("decode.json"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* part : {"tokens/s", "mla", "gqa:8", "this machine's CPU", "attn %", "MoE %", "GEMM %", "other %",
                           "comm %", "time split"})
    EXPECT_TRUE(contains(r.output, part)) << part << "\n" << r.output;
  json::Value j = json::parse_file(tmp.file("decode.json"));
  const json::Value& records = j.at("records");
  ASSERT_EQ(records.size(), 4u);
  for (const json::Value& rec : records) {
    EXPECT_GT(rec.at("tokens_per_second").get<double>(), 0);
    EXPECT_EQ(rec.at("latencies").size(), 2u);
    SCOPED_TRACE(rec.at("attention").get<std::string>());
    check_time_split(rec, /*has_moe=*/true);  // layer 0 dense, layer 1 MoE
  }
  // Cache bytes read per step: 2 sequences x 2 layers x 101 tokens x row width x 4 bytes (f32).
  EXPECT_EQ(records[0].at("cache_bytes_read_per_step").get<int64_t>(), 2 * 2 * 101 * 576 * 4);
  EXPECT_EQ(records[1].at("cache_bytes_read_per_step").get<int64_t>(), 2 * 2 * 101 * (2 * 16 * 128) * 4);
  EXPECT_EQ(records[3].at("cache_bytes_read_per_step").get<int64_t>(), 2 * 2 * 101 * (2 * 128) * 4);
}

// --no-time-split: the steps run without markers; the split's columns and fields are gone, the timings stay.
TEST(BenchDecodeCli, NoTimeSplitLeavesTheSplitOut) {
  ScratchDir tmp;
  RunResult r = run_mlarun("bench decode --config " + config("config_small.json") +
                           " --layers 1 --batch 1 --seq-len 16 --block-size 16 --iters 1 --attention mla"
                           " --no-time-split --json " + tmp.file("decode.json"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(contains(r.output, "attn %")) << r.output;
  json::Value j = json::parse_file(tmp.file("decode.json"));
  EXPECT_EQ(j.at("time_split_clock").get<std::string>(), "off");
  ASSERT_EQ(j.at("records").size(), 1u);
  EXPECT_FALSE(j.at("records")[0].contains("time_split_ms"));
  EXPECT_GT(j.at("records")[0].at("tokens_per_second").get<double>(), 0);
  // On the CPU no step is replayed from a CUDA graph, and the report says why; the MoE layout is the CPU's.
  EXPECT_EQ(j.at("records")[0].at("graph_absent").get<std::string>(), "not on the GPU");
  EXPECT_FALSE(j.at("records")[0].contains("graph_median_latency"));
  // The bytes the step must read are reported on every device; the floor (time at a measured copy bandwidth)
  // only on a GPU.
  EXPECT_GT(j.at("records")[0].at("step_weight_bytes").get<double>(), 0);
  EXPECT_GT(j.at("records")[0].at("step_cache_bytes").get<double>(), 0);
  EXPECT_FALSE(j.at("records")[0].contains("floor_ms"));
  EXPECT_EQ(j.at("moe_layout").get<std::string>(), "compact");
  EXPECT_EQ(j.at("moe_capacity_max_tokens").get<int64_t>(), 0);
}

// --moe-capacity-max-tokens puts a decode step of at most that many tokens in the capacity layout; the JSON and
// the header say which ran. A negative value other than -1 is refused, naming the option.
TEST(BenchDecodeCli, MoeCapacityLayoutIsReported) {
  ScratchDir tmp;
  RunResult r = run_mlarun("bench decode --config " + config("config_small.json") +
                           " --layers 2 --batch 2 --seq-len 16 --block-size 16 --iters 1 --attention mla"
                           " --moe-capacity-max-tokens 2 --json " + tmp.file("decode.json"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "capacity layout (--moe-capacity-max-tokens 2)")) << r.output;
  json::Value j = json::parse_file(tmp.file("decode.json"));
  EXPECT_EQ(j.at("moe_layout").get<std::string>(), "capacity");
  RunResult bad = run_mlarun("bench decode --config " + config("config_small.json") + " --moe-capacity-max-tokens -2");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_TRUE(contains(bad.output, "--moe-capacity-max-tokens: value -2")) << bad.output;
}

TEST(BenchDecodeCli, BadInputFailsClearly) {
  RunResult gqa7 = run_mlarun("bench decode --config " + config("config_236B.json") + " --layers 1 --attention gqa:7");
  EXPECT_EQ(gqa7.exit_code, 1);
  EXPECT_TRUE(contains(gqa7.output, "--attention")) << gqa7.output;
  EXPECT_TRUE(contains(gqa7.output, "gqa:7")) << gqa7.output;
  EXPECT_TRUE(contains(gqa7.output, "128 attention heads")) << gqa7.output;
  RunResult unknown = run_mlarun("bench decode --config " + config("config_small.json") + " --attention mla,sparse");
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_TRUE(contains(unknown.output, "'sparse'")) << unknown.output;
  RunResult layers = run_mlarun("bench decode --config " + config("config_small.json") + " --layers 9");
  EXPECT_EQ(layers.exit_code, 1);
  EXPECT_TRUE(contains(layers.output, "option --layers: value 9")) << layers.output;
  RunResult dtype = run_mlarun("bench decode --config " + config("config_small.json") + " --kv-cache-dtype fp8,int4");
  EXPECT_EQ(dtype.exit_code, 1);
  EXPECT_TRUE(contains(dtype.output, "--kv-cache-dtype: value 'int4'")) << dtype.output;
  RunResult twice = run_mlarun("bench decode --config " + config("config_small.json") + " --kv-cache-dtype fp8,fp8");
  EXPECT_EQ(twice.exit_code, 1);
  EXPECT_TRUE(contains(twice.output, "listed twice")) << twice.output;
}
