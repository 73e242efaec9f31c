// `mlarun bench cache` end to end (bench decode: test_bench_decode_cli.cpp): the table, JSON with one record per
// (attention, dcp, dtype, tp), the SVG chart, decode context parallelism (MLA's latent split by token:
// 144 B per token per layer per rank at tp 8 / dcp 8), quantized caches with their scales (MLA fp8/int8 656 B per
// token per layer), sliding windows at several --seq-len values, and clear failures on bad input.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "runtime/json.h"
#include "cli_runner.h"
#include "test_util.h"

using namespace mlarun;
using mlarun::testing::ScratchDir;

namespace {

using mlarun::testing::run_mlarun;
using mlarun::testing::RunResult;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string config(const std::string& name) { return mlarun::testing::source_dir() + "/configs/" + name; }

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST(BenchCacheCli, Deepseek236BTableJsonAndChart) {
  ScratchDir tmp;
  RunResult r = run_mlarun("bench cache --config " + config("config_236B.json") + " --measure-gib 0.0625 --json " +
                           tmp.file("cache.json") + " --chart " + tmp.file("cache.svg"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* part : {"== Cache per token", "== Per rank", "69,120", "3,932,160", "56.89", "latent (whole)",
                           "weights exceed 80 GiB", "shard the latent cache by token", "largest deviation"})
    EXPECT_TRUE(contains(r.output, part)) << "missing '" << part << "' in\n" << r.output;

  json::Value j = json::parse_file(tmp.file("cache.json"));
  ASSERT_TRUE(j.contains("records"));
  const json::Value& records = j.at("records");
  ASSERT_EQ(records.size(), 4u * 3u * 4u);  // (mla, mha, gqa:8, mqa) x (bf16, fp8, int8) x (tp 1, 2, 4, 8)
  int checked = 0;
  for (const json::Value& rec : records) {
    std::string kind = rec.at("attention").get<std::string>(), dtype = rec.at("kv_cache_dtype").get<std::string>();
    int64_t tp = rec.at("tensor_parallel_size").get<int64_t>();
    int64_t per_rank = rec.at("kv_bytes_per_token_per_layer_per_rank").get<int64_t>();
    if (dtype == "bf16" && tp == 8) {
      int64_t expected = kind == "mla" ? 1152 : kind == "mha" ? 8192 : 512;  // gqa:8 one group per rank; mqa one head
      EXPECT_EQ(per_rank, expected) << kind;
      ++checked;
    }
    ASSERT_TRUE(rec.contains("measured")) << kind;
    const json::Value& m = rec.at("measured");
    EXPECT_LE(std::fabs(m.at("deviation").get<double>()), 0.01);
    EXPECT_EQ(m.at("tokens").get<int64_t>(), m.at("tokens_verified").get<int64_t>());
    EXPECT_TRUE(rec.contains("num_gpu_blocks"));
  }
  EXPECT_EQ(checked, 4);

  std::string svg = read_file(tmp.file("cache.svg"));
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_TRUE(contains(svg, "</svg>"));
  for (const char* part : {"mla bf16", "mha bf16", "gqa:8 bf16", "mqa fp8", "tensor-parallel degree",
                           "config_236B.json", "80 GiB"})
    EXPECT_TRUE(contains(svg, part)) << part;
}

TEST(BenchCacheCli, SmallConfigOptions) {
  ScratchDir tmp;
  RunResult r = run_mlarun("bench cache --config " + config("config_small.yaml") +
                           " --tp 1,2 --kv-dtype bf16 --gqa-groups 8,4 --memory-gib 2 --seq-len 512 --block-size 16"
                           " --measure-gib 0.01 --json " + tmp.file("small.json"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  json::Value j = json::parse_file(tmp.file("small.json"));
  EXPECT_EQ(j.at("records").size(), 5u * 1u * 2u);  // mla, mha, gqa:8, gqa:4, mqa
  EXPECT_TRUE(contains(r.output, "gqa:4"));
}

TEST(BenchCacheCli, PngIsConvertedOrSaidToBeSvgOnly) {
  ScratchDir tmp;
  RunResult r = run_mlarun("bench cache --config " + config("config_16B.json") + " --measure-gib 0 --chart " +
                           tmp.file("cache.png"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(std::filesystem::exists(tmp.file("cache.svg")));
  if (std::filesystem::exists(tmp.file("cache.png")))
    EXPECT_EQ(read_file(tmp.file("cache.png")).substr(1, 3), "PNG");
  else
    EXPECT_TRUE(contains(r.output, "PNG is not produced natively")) << r.output;
}

TEST(BenchCacheCli, BadInputFailsClearly) {
  RunResult tp3 = run_mlarun("bench cache --config " + config("config_236B.json") + " --tp 1,3");
  EXPECT_EQ(tp3.exit_code, 1);
  EXPECT_TRUE(contains(tp3.output, "option --tp: value 3")) << tp3.output;
  EXPECT_TRUE(contains(tp3.output, "128")) << tp3.output;
  RunResult gqa = run_mlarun("bench cache --config " + config("config_236B.json") + " --gqa-groups 7");
  EXPECT_EQ(gqa.exit_code, 1);
  EXPECT_TRUE(contains(gqa.output, "--gqa-groups")) << gqa.output;
  RunResult dtype = run_mlarun("bench cache --config " + config("config_236B.json") + " --kv-dtype bf16,int4");
  EXPECT_EQ(dtype.exit_code, 1);
  EXPECT_TRUE(contains(dtype.output, "--kv-cache-dtype: 'int4' is not a kv cache dtype")) << dtype.output;
  RunResult twice = run_mlarun("bench cache --config " + config("config_236B.json") + " --kv-cache-dtype fp8,fp8");
  EXPECT_EQ(twice.exit_code, 1);
  EXPECT_TRUE(contains(twice.output, "listed twice")) << twice.output;
  for (const char* bad : {"0", "x", "4096,0"}) {
    RunResult w = run_mlarun("bench cache --config " + config("config_236B.json") + " --measure-gib 0 --window " + bad);
    EXPECT_EQ(w.exit_code, 1) << bad;
    EXPECT_TRUE(contains(w.output, "option --window")) << bad << ": " << w.output;
    EXPECT_TRUE(contains(w.output, ">= 1")) << bad << ": " << w.output;
  }
  RunResult wmla = run_mlarun("bench cache --config " + config("config_236B.json") +
                              " --measure-gib 0 --window 4096 --window-heads mla");
  EXPECT_EQ(wmla.exit_code, 1);
  EXPECT_TRUE(contains(wmla.output, "option --window-heads")) << wmla.output;
  RunResult missing = run_mlarun("bench cache --config /nonexistent/config.json");
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_TRUE(contains(missing.output, "/nonexistent/config.json")) << missing.output;
}

// The check: `bench cache --config configs/config_236B.json --tp 8 --decode-context-parallel-size 8`.
TEST(BenchCacheCli, DecodeContextParallel236BAtTp8) {
  ScratchDir tmp;
  RunResult r = run_mlarun("bench cache --config " + config("config_236B.json") +
                           " --tp 8 --decode-context-parallel-size 8 --json " + tmp.file("dcp.json") + " --chart " +
                           tmp.file("dcp.svg"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // The per-rank table's MLA dcp 8 bf16 row: 144 B per token per layer, 8,640 for 60 layers.
  std::istringstream lines(r.output);
  std::string line, row;
  while (std::getline(lines, line))
    if (contains(line, "latent, 1/8 of tokens") && contains(line, "bf16")) row = line;
  ASSERT_FALSE(row.empty()) << r.output;
  for (const char* part : {" mla ", " 144 ", " 8,640 "}) EXPECT_TRUE(contains(row, part)) << part << " in " << row;
  for (const char* part : {"== Decode communication", "DCP merge B", "229,376", "17,920", "3,584", "ring",
                           "MLA with DCP N", "virtual blocks"})
    EXPECT_TRUE(contains(r.output, part)) << "missing '" << part << "' in\n" << r.output;

  json::Value j = json::parse_file(tmp.file("dcp.json"));
  const json::Value& records = j.at("records");
  ASSERT_EQ(records.size(), (2u + 3u) * 3u);  // (mla dcp 1, mla dcp 8, mha, gqa:8, mqa) x (bf16, fp8, int8)
  int64_t plain_tokens = -1, dcp_tokens = -1;
  for (const json::Value& rec : records) {
    std::string kind = rec.at("attention").get<std::string>(), dtype = rec.at("kv_cache_dtype").get<std::string>();
    int64_t dcp = rec.at("decode_context_parallel_size").get<int64_t>();
    if (kind != "mla") {
      EXPECT_EQ(dcp, 1) << kind;  // the baselines only at dcp 1
    }
    const json::Value& m = rec.at("measured");
    EXPECT_LE(std::fabs(m.at("deviation").get<double>()), 0.01) << kind << " dcp " << dcp;
    EXPECT_EQ(m.at("tokens").get<int64_t>(), m.at("tokens_verified").get<int64_t>());
    const json::Value& comm = rec.at("decode_comm_bytes_per_token_per_layer_per_rank");
    EXPECT_EQ(comm.at("o_proj_all_reduce").get<int64_t>(), 17920);
    if (kind != "mla" || dtype != "bf16") continue;
    if (dcp == 1) plain_tokens = rec.at("kv_cache_tokens").get<int64_t>();
    if (dcp != 8) continue;
    dcp_tokens = rec.at("kv_cache_tokens").get<int64_t>();
    EXPECT_EQ(rec.at("kv_bytes_per_token_per_layer_per_rank").get<int64_t>(), 144);
    EXPECT_EQ(rec.at("kv_bytes_per_token_per_rank").get<int64_t>(), 8640);
    EXPECT_EQ(rec.at("virtual_block_size").get<int64_t>(), 64 * 8);
    EXPECT_EQ(rec.at("max_num_seqs").get<int64_t>(), rec.at("num_gpu_blocks").get<int64_t>() / 8);
    EXPECT_EQ(comm.at("dcp_merge").get<int64_t>(), 3584 + 229376);
    EXPECT_NEAR(double(m.at("tokens").get<int64_t>()), double(m.at("tokens_computed").get<int64_t>()),
                0.01 * double(m.at("tokens_computed").get<int64_t>()));
  }
  ASSERT_GT(plain_tokens, 0);
  EXPECT_EQ(dcp_tokens, 8 * plain_tokens);
  EXPECT_TRUE(contains(j.at("decode_comm_model").get<std::string>(), "ring"));

  std::string svg = read_file(tmp.file("dcp.svg"));
  for (const char* part : {"mla dcp8 bf16", "mla bf16", "mha bf16", "gqa:8 bf16", "mqa bf16", "MLA + DCP"})
    EXPECT_TRUE(contains(svg, part)) << part;
}

TEST(BenchCacheCli, DecodeContextParallelSkipsAndBadValues) {
  // --dcp (the alias) over several TP degrees: sizes that do not divide a degree are skipped with a note.
  ScratchDir tmp;
  RunResult ok = run_mlarun("bench cache --config " + config("config_236B.json") +
                            " --tp 1,2,4,8 --dcp 1,2,4,8 --kv-dtype bf16 --measure-gib 0 --json " +
                            tmp.file("all.json"));
  ASSERT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_TRUE(contains(ok.output, "skipped (dcp must divide tp): dcp 2 at tp 1; dcp 4 at tp 1, 2; dcp 8 at tp 1, 2, 4"))
      << ok.output;
  // MLA at (tp, dcp): 1 + 2 + 3 + 4 = 10, baselines 3 x 4 tp.
  EXPECT_EQ(json::parse_file(tmp.file("all.json")).at("records").size(), 10u + 12u);

  for (const char* bad : {"0", "x", "2,,4"}) {
    RunResult r = run_mlarun("bench cache --config " + config("config_236B.json") +
                             " --measure-gib 0 --decode-context-parallel-size " + bad);
    EXPECT_EQ(r.exit_code, 1) << bad;
    EXPECT_TRUE(contains(r.output, "option --decode-context-parallel-size")) << bad << ": " << r.output;
  }
  RunResult three = run_mlarun("bench cache --config " + config("config_236B.json") +
                                 " --tp 8 --dcp 3 --measure-gib 0");
  EXPECT_EQ(three.exit_code, 1);
  EXPECT_TRUE(contains(three.output, "option --decode-context-parallel-size: value 3: divides none of the --tp"))
      << three.output;
  RunResult big = run_mlarun("bench cache --config " + config("config_236B.json") +
                                 " --tp 2,4 --dcp 8 --measure-gib 0");
  EXPECT_EQ(big.exit_code, 1);
  EXPECT_TRUE(contains(big.output, "value 8")) << big.output;
}

// The row of the per-rank table whose cells include all of `parts` ("" when none).
std::string table_row(const std::string& output, const std::vector<std::string>& parts) {
  std::istringstream lines(output);
  std::string line;
  while (std::getline(lines, line)) {
    bool all = true;
    for (const std::string& p : parts) all = all && contains(line, p);
    if (all) return line;
  }
  return "";
}

// Issue 16's check: `bench cache --config configs/config_236B.json --tp 8 --kv-cache-dtype bf16,fp8,int8`: MLA fp8
// 656 B per token per layer (39,360 over 60 layers), its tokens in the budget measured within 1% of computed.
TEST(BenchCacheCli, QuantizedCaches236BAtTp8) {
  ScratchDir tmp;
  RunResult r = run_mlarun("bench cache --config " + config("config_236B.json") +
                           " --tp 8 --kv-cache-dtype bf16,fp8,int8 --json " + tmp.file("q.json") + " --chart " +
                           tmp.file("q.svg"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* dtype : {" fp8 ", " int8 "}) {
    std::string row = table_row(r.output, {" 8  mla ", dtype, "latent (whole)"});
    ASSERT_FALSE(row.empty()) << dtype << " in\n" << r.output;
    for (const char* part : {" 656 ", " 39,360 "}) EXPECT_TRUE(contains(row, part)) << part << " in " << row;
  }
  for (const char* part : {"fp8 B/token/layer", "int8 B/token", "512 + 4 x 4 + 2 x 64 (RoPE kept in bf16) = 656",
                           "39,360 over 60 layers", "128 + 4 x 1 = 132", "scales counted"})
    EXPECT_TRUE(contains(r.output, part)) << "missing '" << part << "' in\n" << r.output;

  json::Value j = json::parse_file(tmp.file("q.json"));
  const json::Value& records = j.at("records");
  ASSERT_EQ(records.size(), 4u * 3u);
  int quantized_mla = 0;
  for (const json::Value& rec : records) {
    std::string kind = rec.at("attention").get<std::string>(), dtype = rec.at("kv_cache_dtype").get<std::string>();
    const json::Value& m = rec.at("measured");
    EXPECT_LE(std::fabs(m.at("deviation").get<double>()), 0.01) << kind << " " << dtype;
    EXPECT_EQ(m.at("tokens").get<int64_t>(), m.at("tokens_verified").get<int64_t>());
    EXPECT_EQ(m.at("cache_row_bytes").get<int64_t>(), rec.at("kv_bytes_per_token_per_layer_per_rank").get<int64_t>());
    EXPECT_EQ(m.at("pool_element_dtype").get<std::string>(),  // each quantized pool in its own byte type
              dtype == "int8" ? "i8" : dtype == "fp8" ? "fp8_e4m3" : "bf16");
    if (kind == "mha" && dtype != "bf16") {
      EXPECT_EQ(rec.at("kv_bytes_per_token_per_layer").get<int64_t>(), 33792);  // 256 heads x (128 + 4)
    }
    if (kind != "mla" || dtype == "bf16") continue;
    ++quantized_mla;
    EXPECT_TRUE(rec.at("kv_cache_quantized").get<bool>());
    EXPECT_EQ(rec.at("kv_bytes_per_token_per_layer").get<int64_t>(), 656);
    EXPECT_EQ(rec.at("kv_bytes_per_token").get<int64_t>(), 39360);
    EXPECT_EQ(rec.at("kv_bytes_per_token_per_rank").get<int64_t>(), 39360);
    EXPECT_EQ(m.at("cache_row_bytes").get<int64_t>(), 656);
    EXPECT_NEAR(double(m.at("tokens").get<int64_t>()), double(m.at("tokens_computed").get<int64_t>()),
                0.01 * double(m.at("tokens_computed").get<int64_t>()));
  }
  EXPECT_EQ(quantized_mla, 2);
  EXPECT_TRUE(contains(j.at("kv_cache_byte_rule").get<std::string>(), "scale"));
  std::string svg = read_file(tmp.file("q.svg"));
  for (const char* part : {"mla fp8", "mla int8", "mha int8", "with scales"}) EXPECT_TRUE(contains(svg, part)) << part;
}

// A sliding window of 4,096 over GQA-8's heads: the same rows, but at 32,768 tokens a sequence caches 4,096, so
// 8x the sequences of full GQA-8 fit; at 4,096 no gain.
TEST(BenchCacheCli, SlidingWindowPaysBeyondTheWindow) {
  ScratchDir tmp;
  RunResult r = run_mlarun("bench cache --config " + config("config_236B.json") +
                           " --tp 8 --kv-cache-dtype bf16 --window 4096 --seq-len 4096,32768 --measure-gib 0.0625"
                           " --json " + tmp.file("w.json") + " --chart " + tmp.file("w.svg"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* part : {"seqs@4096", "seqs@32768", "swa:4096/gqa:8", "min(L, W)"})
    EXPECT_TRUE(contains(r.output, part)) << "missing '" << part << "' in\n" << r.output;
  json::Value j = json::parse_file(tmp.file("w.json"));
  const json::Value* swa = nullptr;
  const json::Value* gqa = nullptr;
  for (const json::Value& rec : j.at("records")) {
    if (rec.at("attention").get<std::string>() == "swa:4096/gqa:8") swa = &rec;
    if (rec.at("attention").get<std::string>() == "gqa:8") gqa = &rec;
  }
  ASSERT_TRUE(swa && gqa);
  EXPECT_EQ(swa->at("sliding_window").get<int64_t>(), 4096);
  EXPECT_TRUE(gqa->at("sliding_window").is_null());
  EXPECT_EQ(swa->at("kv_bytes_per_token_per_layer_per_rank"), gqa->at("kv_bytes_per_token_per_layer_per_rank"));
  const json::Value& ws = swa->at("per_max_model_len");
  const json::Value& gs = gqa->at("per_max_model_len");
  ASSERT_EQ(ws.size(), 2u);
  EXPECT_EQ(ws[0].at("max_num_seqs"), gs[0].at("max_num_seqs"));  // L = W
  EXPECT_EQ(ws[1].at("cached_tokens_per_seq").get<int64_t>(), 4096);
  const int64_t blocks = swa->at("num_gpu_blocks").get<int64_t>();
  EXPECT_EQ(gqa->at("num_gpu_blocks").get<int64_t>(), blocks);
  EXPECT_EQ(ws[1].at("max_num_seqs").get<int64_t>(), blocks / 64);   // 4,096 cached tokens: 64 blocks of 64
  EXPECT_EQ(gs[1].at("max_num_seqs").get<int64_t>(), blocks / 512);  // 32,768: 512 blocks
  EXPECT_GE(ws[1].at("max_num_seqs").get<int64_t>(), 8 * gs[1].at("max_num_seqs").get<int64_t>());
  EXPECT_EQ(swa->at("measured").at("tokens_per_seq_filled").get<int64_t>(), 4096);
  EXPECT_LE(std::fabs(swa->at("measured").at("deviation").get<double>()), 0.01);
  std::string svg = read_file(tmp.file("w.svg"));
  for (const char* part : {"swa:4096/gqa:8 bf16", "Sequences of 32,768 tokens", "sliding window"})
    EXPECT_TRUE(contains(svg, part)) << part;
}
