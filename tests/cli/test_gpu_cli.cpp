// The `mlarun` command line on the GPU against both fixtures: `score --device cuda` over prompt + greedy tokens
// meets the bf16 criterion of gpu_parity.h at every position; `generate --device cuda` runs greedy decoding to the
// end and reports how many of the fp32 greedy tokens it reproduced (bf16 may part ways after a near tie). Without a
// GPU, `--device cuda` must fail with a message naming the option and the reason (that case runs everywhere).
#include <gtest/gtest.h>

#include "cli_runner.h"
#include "gpu_parity.h"
#include "gpu_test_util.h"
#include "runtime/json.h"
#include "test_util.h"

using namespace mlarun;
using namespace mlarun::testing;

namespace {

std::string join(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s;
}

void check_fixture(const std::string& name) {
  ScratchDir tmp;
  const std::string dir = data_dir() + "/" + name;
  SafetensorsFile ref(dir + "/reference.safetensors");
  ParityTally tally;
  int64_t greedy_same = 0, greedy_total = 0;
  for (int i = 0; ref.contains("prompt." + std::to_string(i) + ".input_ids"); ++i) {
    const std::string p = "prompt." + std::to_string(i) + ".";
    Tensor ids = ref.load(p + "input_ids", DType::I64), greedy = ref.load(p + "greedy", DType::I64);
    Tensor want = ref.load(p + "logits"), want_greedy = ref.load(p + "greedy_logits");
    const int64_t L = ids.numel(), N = greedy.numel(), V = want.dim(1);
    std::vector<int32_t> tokens = teacher_forced_tokens(ids, greedy);
    // A small warm-up step (the fixtures' prompts are short): quick here and under compute-sanitizer.
    const std::string limits = " --max-seq-len 256 --max-num-batched-tokens 512 --max-batch-size 8";
    RunResult score = run_mlarun("score --device cuda --model " + dir + limits + " --tokens " + join(tokens) +
                                 " --out " + tmp.file("score.safetensors"));
    ASSERT_EQ(score.exit_code, 0) << score.output;
    EXPECT_NE(score.output.find("on cuda"), std::string::npos) << score.output;
    Tensor logits = SafetensorsFile(tmp.file("score.safetensors")).load("logits");
    ASSERT_EQ(logits.dim(0), L + N - 1);
    tally.add(logits.data<float>(), want.data<float>(), L, V);
    tally.add(logits.data<float>() + L * V, want_greedy.data<float>() + V, N - 1, V);

    std::vector<int32_t> prompt(tokens.begin(), tokens.begin() + L);
    RunResult gen = run_mlarun("generate --device cuda --model " + dir + limits + " --prompt-ids " + join(prompt) +
                               " --max-new-tokens " + std::to_string(N) + " --temperature 0 --ignore-eos --json");
    ASSERT_EQ(gen.exit_code, 0) << gen.output;
    std::string line = gen.output.substr(gen.output.find("{\"id\""));
    json::Value result = json::parse(line.substr(0, line.find('\n')), "generate output");
    const json::Value& got = result.at("tokens");
    ASSERT_EQ(int64_t(got.size()), N);
    for (int64_t s = 0; s < N && got[size_t(s)].get<int64_t>() == greedy.data<int64_t>()[s]; ++s) ++greedy_same;
    greedy_total += N;
  }
  tally.check(name + " via mlarun score --device cuda", bf16_error_of(ref));
  std::printf("GPU generate %s: %lld of %lld fp32 greedy tokens reproduced before the first difference\n",
              name.c_str(), (long long)greedy_same, (long long)greedy_total);
}

}  // namespace

TEST(GpuCli, V2TinyScoreAndGenerateOnCuda) {
  MLARUN_GPU_OR_SKIP();
  check_fixture("deepseek-v2-tiny");
}

TEST(GpuCli, V3TinyScoreAndGenerateOnCuda) {
  MLARUN_GPU_OR_SKIP();
  check_fixture("deepseek-v3-tiny");
}

// `bench decode --device cuda`: the time split read from CUDA events (runtime/step_profiler.h) covers each row's
// step (within 10 % of the host-timed step: the events span the GPU work, the host clock also the launch and the
// synchronization around it) and finds the attention, MoE and GEMM work the model marks.
TEST(GpuCli, BenchDecodeTimeSplitFromEvents) {
  MLARUN_GPU_OR_SKIP();
  ScratchDir tmp;
  RunResult r = run_mlarun("bench decode --device cuda --config " + source_dir() +
                           "/configs/config_small.json --layers 2 --batch 2 --seq-len 64 --block-size 16 --iters 3"
                           " --attention mla,mha --json " + tmp.file("decode.json"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json::Value j = json::parse_file(tmp.file("decode.json"));
  EXPECT_EQ(j.at("time_split_clock").get<std::string>(), "cuda events on the current stream");
  ASSERT_EQ(j.at("records").size(), 2u);
  for (const json::Value& rec : j.at("records")) {
    SCOPED_TRACE(rec.at("attention").get<std::string>());
    const json::Value& ms = rec.at("time_split_ms");
    const double total = rec.at("time_split_total_ms").get<double>(), step = 1e3 * rec.at("avg_latency").get<double>();
    EXPECT_NEAR(total, step, 0.1 * step);
    for (const char* c : {"attention", "moe", "dense_gemm"}) EXPECT_GT(ms.at(c).get<double>(), 0) << c;
    EXPECT_GE(ms.at("norm_rope_other").get<double>(), 0);
    EXPECT_EQ(ms.at("communication").get<double>(), 0);
  }
}

TEST(GpuCli, DeviceCudaWithoutAGpuIsAClearError) {
  if (gpu_available()) GTEST_SKIP() << "a GPU is present";
  mlarun::testing::ScratchDir tmp;
  RunResult r = run_mlarun("score --device cuda --model " + data_dir() + "/deepseek-v2-tiny --tokens 1,2 --out " +
                           tmp.file("logits.safetensors"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("option --device: value cuda: no usable GPU"), std::string::npos) << r.output;
  RunResult bench = run_mlarun("bench decode --device cuda --config " + source_dir() + "/configs/config_small.json");
  EXPECT_EQ(bench.exit_code, 1);
  EXPECT_NE(bench.output.find("option --device"), std::string::npos) << bench.output;
}
