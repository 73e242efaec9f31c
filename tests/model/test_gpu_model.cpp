// The whole model on the GPU in bf16 against every fixture's fp32 reference (criterion in gpu_parity.h): a
// teacher-forced prefill over prompt + greedy tokens (naive MLA path, logits at every position), then the prompt
// prefilled and the greedy tokens decoded one by one over the paged latent cache (absorbed path). And the runner
// on the GPU: the cache sized from free memory after the warm-up, device logits sampled on the device, and a step loop that
// allocates nothing from the driver once it has run. Skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <tuple>

#include "gpu_parity.h"
#include "gpu_test_util.h"
#include "engine/deepseek_runner.h"
#include "engine/engine.h"
#include "kernels/ops.h"
#include "model/deepseek_model.h"
#include "runtime/cache_pool.h"
#include "runtime/device_allocator.h"
#include "runtime/runtime_options.h"
#include "test_util.h"

using namespace mlarun;
using namespace mlarun::testing;

namespace {

// The runner options of the GPU engine tests on the tiny fixture: blocks of 16, 256 tokens per sequence.
RuntimeOptions tiny_cuda_options(int64_t max_num_seqs) {
  RuntimeOptions o;
  o.device = Device::CUDA;
  o.block_size = 16;
  o.max_model_len = 256;
  o.max_num_seqs = max_num_seqs;
  o.max_num_batched_tokens = 512;
  return o;
}

ForwardBatch make_step(const std::vector<int32_t>& tokens, int64_t start, const std::vector<int32_t>& table,
                       int64_t block_size, bool all_logits, MlaPath path) {
  ForwardBatch b;
  const int64_t n = int64_t(tokens.size());
  b.add_sequence(tokens, start, table, block_size);
  for (int64_t i = all_logits ? 0 : n - 1; i < n; ++i) b.logit_rows.push_back(i);
  b.mla_path = path;
  return b;
}

// `moe_capacity_max_tokens` (-1: the GPU's default): steps up to this many tokens take the capacity MoE layout.
void check_fixture_bf16(const std::string& name, int64_t block_size, MlaPath prefill_path,
                        int64_t moe_capacity_max_tokens = -1) {
  SingleCommunicator comm;
  const std::string dir = data_dir() + "/" + name;
  auto model = DeepseekModel::load(dir, comm, Placement::cuda_bf16());
  if (moe_capacity_max_tokens >= 0) model->set_moe_capacity_max_tokens(moe_capacity_max_tokens);
  const ModelConfig& c = model->config();
  SafetensorsFile ref(dir + "/reference.safetensors");
  const double bf16_error = bf16_error_of(ref);
  const int64_t V = c.vocab_size;
  ParityTally prefill, decode;
  for (int i = 0; ref.contains("prompt." + std::to_string(i) + ".input_ids"); ++i) {
    const std::string p = "prompt." + std::to_string(i) + ".";
    Tensor ids = ref.load(p + "input_ids", DType::I64), greedy = ref.load(p + "greedy", DType::I64);
    Tensor want = ref.load(p + "logits"), want_greedy = ref.load(p + "greedy_logits");
    const int64_t L = ids.numel(), N = greedy.numel();
    std::vector<int32_t> tokens = teacher_forced_tokens(ids, greedy);
    const int64_t blocks = (L + N + block_size - 1) / block_size + 1;
    std::vector<int32_t> table;
    for (int64_t b = blocks - 1; b >= 0; --b) table.push_back(int32_t(b));  // reversed: not the identity

    CachePool pool = CachePool::allocate(c.n_layers, blocks, block_size, c.latent_dim(), DType::BF16, Device::CUDA);
    Tensor all = ops::to_host_f32(
        model->forward(make_step(tokens, 0, table, block_size, true, prefill_path), pool.layers));
    prefill.add(all.data<float>(), want.data<float>(), L, V);
    prefill.add(all.data<float>() + L * V, want_greedy.data<float>() + V, N - 1, V);

    CachePool fresh = CachePool::allocate(c.n_layers, blocks, block_size, c.latent_dim(), DType::BF16, Device::CUDA);
    std::vector<int32_t> prompt(tokens.begin(), tokens.begin() + L);
    Tensor last = ops::to_host_f32(
        model->forward(make_step(prompt, 0, table, block_size, false, prefill_path), fresh.layers));
    decode.add(last.data<float>(), want_greedy.data<float>(), 1, V);
    for (int64_t s = 0; s + 1 < N; ++s) {
      Tensor step = ops::to_host_f32(model->forward(
          make_step({int32_t(greedy.data<int64_t>()[s])}, L + s, table, block_size, false, MlaPath::Auto),
          fresh.layers));
      decode.add(step.data<float>(), want_greedy.data<float>() + (s + 1) * V, 1, V);
    }
  }
  const std::string tag = name + " (block size " + std::to_string(block_size) +
                          (moe_capacity_max_tokens >= 0 ? ", moe capacity <= " + std::to_string(moe_capacity_max_tokens)
                                                        : std::string()) + ")";
  prefill.check(tag + " teacher-forced prefill", bf16_error);
  decode.check(tag + " prefill + decode", bf16_error);
}

// Three steps of two sequences over a pool of 12 blocks of 4 tokens (shuffled tables): both first prefill chunks,
// then a chunk over its cached prefix beside a decode, then two decodes; logits at every row.
std::vector<ForwardBatch> mixed_steps(const MlaPathRule& rule = {}) {
  static const std::vector<int32_t> a_table = {7, 2, 9, 0}, b_table = {5, 11, 3};
  static const std::vector<int32_t> a = {5, 17, 42, 3, 8, 13, 21, 34, 55, 1, 2}, b = {9, 100, 4, 6, 12, 30, 7};
  using Piece = std::tuple<const std::vector<int32_t>*, int64_t, int64_t, const std::vector<int32_t>*>;
  std::vector<ForwardBatch> steps;
  for (const std::vector<Piece>& pieces : {std::vector<Piece>{{&a, 0, 7, &a_table}, {&b, 0, 5, &b_table}},
                                           std::vector<Piece>{{&b, 5, 1, &b_table}, {&a, 7, 3, &a_table}},
                                           std::vector<Piece>{{&a, 10, 1, &a_table}, {&b, 6, 1, &b_table}}}) {
    ForwardBatch& batch = steps.emplace_back();
    batch.mla_rule = rule;
    for (auto [tokens, start, n, table] : pieces) {
      const int64_t first = batch.add_sequence(tokens->data() + start, n, start, *table, 4);
      for (int64_t i = 0; i < n; ++i) batch.logit_rows.push_back(first + i);
    }
  }
  return steps;
}

}  // namespace

TEST(GpuModel, DeepseekV2TinyBf16WithinTwiceTheReferenceBf16Error) {
  MLARUN_GPU_OR_SKIP();
  check_fixture_bf16("deepseek-v2-tiny", 16, MlaPath::Naive);
  check_fixture_bf16("deepseek-v2-tiny", 1, MlaPath::Absorbed);
}

TEST(GpuModel, DeepseekV3TinyBf16WithinTwiceTheReferenceBf16Error) {
  MLARUN_GPU_OR_SKIP();
  check_fixture_bf16("deepseek-v3-tiny", 16, MlaPath::Naive);
  check_fixture_bf16("deepseek-v3-tiny", 256, MlaPath::Naive);
}

// The five shape fixtures (no q compression, v dim != nope dim, odd head counts, every routing variant, plain and
// half-rotated RoPE) in bf16 against their fp32 references, each within twice its own bf16 error.
TEST(GpuModel, ShapeFixturesBf16WithinTwiceTheReferenceBf16Error) {
  MLARUN_GPU_OR_SKIP();
  for (const std::string& name : reference_fixtures()) {
    if (name.rfind("shapes/", 0) != 0) continue;
    check_fixture_bf16(name, 4, MlaPath::Naive);
    check_fixture_bf16(name, 1, MlaPath::Absorbed);
  }
}

// The routed experts in either layout on the GPU (the default puts these short steps in the capacity layout):
// compact for every step, and capacity for every step.
TEST(GpuModel, DeepseekV3TinyBf16InBothMoeLayouts) {
  MLARUN_GPU_OR_SKIP();
  check_fixture_bf16("deepseek-v3-tiny", 16, MlaPath::Naive, 0);
  check_fixture_bf16("deepseek-v3-tiny", 16, MlaPath::Naive, 1 << 20);
  check_fixture_bf16("deepseek-v2-tiny", 16, MlaPath::Naive, 0);
}

// The CUDA backend (batched: one gather + one up-projection per step, varlen prefill, the decode part through
// the step's plan; fixtures' shapes take the generic kernels) against the CPU reference backend over steps that
// mix prefill chunks on a cached prefix with decodes: within the fixture's bf16 criterion. Twice: with the
// decode-only rule, and with the rule the runner gives a GPU by default (runtime/mla_path_rule.h), under which the
// 3-token chunk over a 7-token prefix takes the absorbed path on both devices.
TEST(GpuModel, BatchedBackendOnMixedStepsMatchesTheCpuReference) {
  MLARUN_GPU_OR_SKIP();
  for (const std::string name : {"deepseek-v2-tiny", "deepseek-v3-tiny"}) {
    SingleCommunicator comm;
    const std::string dir = data_dir() + "/" + name;
    auto cpu = DeepseekModel::load(dir, comm);
    auto gpu = DeepseekModel::load(dir, comm, Placement::cuda_bf16());
    EXPECT_STREQ(gpu->mla_backend().name(), "batched");
    const double bf16_error = bf16_error_of(SafetensorsFile(dir + "/reference.safetensors"));
    const ModelConfig& c = cpu->config();
    CachePool cpu_pool = CachePool::allocate(c.n_layers, 12, 4, c.latent_dim(), DType::F32, Device::CPU);
    CachePool gpu_pool = CachePool::allocate(c.n_layers, 12, 4, c.latent_dim(), DType::BF16, Device::CUDA);
    for (const MlaPathRule& rule : {MlaPathRule(), mla_path_rule(c, RuntimeOptions::kMlaAbsorbedMaxTokensCuda)}) {
      const std::vector<ForwardBatch> steps = mixed_steps(rule);
      EXPECT_EQ(uses_absorbed_path(steps[1], steps[1].sequences[1]), rule.max_absorbed_tokens > 1);
      ParityTally tally;
      for (const ForwardBatch& batch : steps) {
        Tensor want = cpu->forward(batch, cpu_pool.layers);
        Tensor got = ops::to_host_f32(gpu->forward(batch, gpu_pool.layers));
        tally.add(got.data<float>(), want.data<float>(), want.dim(0), c.vocab_size);
      }
      tally.check(name + " batched CUDA backend, mixed steps, absorbed chunks up to " +
                      std::to_string(rule.max_absorbed_tokens),
                  bf16_error);
    }
  }
}

// fp8 and int8 latent caches on the GPU (the quantizing cache write, the dequantizing reads of the generic paths
// the fixtures take; mla_decode's own fp8/int8 reads are checked in tests/kernels) against the CPU over the same
// mixed steps with the same cache dtype. The bf16 activations quantize a slightly different latent, so values near a
// rounding boundary land in the neighbouring code: the bound is the bf16 criterion plus the quantization's own
// effect on these steps, measured here on the CPU (its cache dtype against f32).
TEST(GpuModel, QuantizedCachesMatchTheCpuReadingTheSameFormat) {
  MLARUN_GPU_OR_SKIP();
  for (const std::string name : {"deepseek-v2-tiny", "deepseek-v3-tiny"}) {
    SingleCommunicator comm;
    const std::string dir = data_dir() + "/" + name;
    auto cpu = DeepseekModel::load(dir, comm);
    auto gpu = DeepseekModel::load(dir, comm, Placement::cuda_bf16());
    const double bf16_error = bf16_error_of(SafetensorsFile(dir + "/reference.safetensors"));
    const ModelConfig& c = cpu->config();
    for (KvCacheDtype kv : {KvCacheDtype::Fp8, KvCacheDtype::Int8}) {
      const KvCacheStorage cpu_row = kv_cache_storage(kv, DType::F32, c.kv_lora_rank, c.qk_rope_head_dim);
      const KvCacheStorage gpu_row = kv_cache_storage(kv, DType::BF16, c.kv_lora_rank, c.qk_rope_head_dim);
      ASSERT_EQ(cpu_row.dtype, gpu_row.dtype);
      ASSERT_EQ(cpu_row.width, gpu_row.width);
      CachePool exact = CachePool::allocate(c.n_layers, 12, 4, c.latent_dim(), DType::F32, Device::CPU);
      CachePool cpu_pool = CachePool::allocate(c.n_layers, 12, 4, cpu_row.width, cpu_row.dtype, Device::CPU);
      CachePool gpu_pool = CachePool::allocate(c.n_layers, 12, 4, gpu_row.width, gpu_row.dtype, Device::CUDA);
      ParityTally tally;
      double quant_effect = 0;
      for (const ForwardBatch& batch : mixed_steps()) {
        const Tensor f32 = cpu->forward(batch, exact.layers);
        const Tensor want = cpu->forward(batch, cpu_pool.layers);
        const Tensor got = ops::to_host_f32(gpu->forward(batch, gpu_pool.layers));
        for (int64_t i = 0; i < want.numel(); ++i)
          quant_effect = std::max(quant_effect, double(std::fabs(want.data<float>()[i] - f32.data<float>()[i])));
        tally.add(got.data<float>(), want.data<float>(), want.dim(0), c.vocab_size);
      }
      const double limit = 2 * bf16_error + quant_effect;
      std::printf("GPU parity %s --kv-cache-dtype %s: max |logit - CPU, same cache dtype| %.4f (limit %.4f = 2 x bf16 "
                  "%.4f + quantization %.4f), argmax agreement %.1f%% of %lld positions\n",
                  name.c_str(), kv_cache_dtype_name(kv), tally.worst_abs, limit, bf16_error, quant_effect,
                  100 * tally.agreement(), (long long)tally.positions);
      EXPECT_LE(tally.worst_abs, limit) << name << " " << kv_cache_dtype_name(kv);
      EXPECT_GE(tally.agreement(), 0.95) << name << " " << kv_cache_dtype_name(kv);
    }
  }
}

TEST(GpuModel, RunnerSizesTheCacheFromFreeMemoryAndTheStepLoopStopsAllocating) {
  MLARUN_GPU_OR_SKIP();
  RuntimeOptions o = tiny_cuda_options(/*max_num_seqs=*/8);
  SingleCommunicator comm;
  DeepseekRunner runner(data_dir() + "/deepseek-v3-tiny", o, comm);
  EXPECT_GT(runner.capacity().budget_bytes, 0);
  EXPECT_EQ(runner.num_blocks(), (o.max_model_len + 15) / 16 * o.max_num_seqs) << "a tiny model gets all it wants";
  EXPECT_EQ(runner.placement(), Placement::cuda_bf16());

  auto run_requests = [&] {
    Engine engine(o, runner);  // the same options: the whole cache the runner sized
    SamplingParams params;
    params.max_tokens = 6;
    params.ignore_eos = true;
    for (int r = 0; r < 8; ++r) engine.add_request({5, 17, 42, int32_t(r), 9, 100}, params);
    return engine.run();
  };
  // Warm means after two runs: the allocator does not split blocks and serves a request from a cached block up to
  // twice its size, so what the first run leaves cached (after the blocks of the tests before it in this process)
  // can send one request of the second to the driver; after that every size is cached.
  const int64_t cold = DeviceAllocator::instance().stats().device_mallocs;
  std::vector<RequestOutput> first = run_requests();
  const int64_t after_first = DeviceAllocator::instance().stats().device_mallocs;
  run_requests();
  const int64_t after_second = DeviceAllocator::instance().stats().device_mallocs;
  std::vector<RequestOutput> third = run_requests();
  std::printf("cudaMalloc calls: %lld in the first run, %lld in the second, %lld in the third\n",
              (long long)(after_first - cold), (long long)(after_second - after_first),
              (long long)(DeviceAllocator::instance().stats().device_mallocs - after_second));
  EXPECT_EQ(DeviceAllocator::instance().stats().device_mallocs, after_second) << "no cudaMalloc in a warm step loop";
  ASSERT_EQ(first.size(), third.size());
  for (size_t r = 0; r < first.size(); ++r) {
    EXPECT_EQ(first[r].token_ids.size(), 6u);
    EXPECT_EQ(first[r].token_ids, third[r].token_ids) << "greedy decoding on the GPU is repeatable";
  }
}

// Decode steps replayed from CUDA graphs (engine/decode_graphs.h) give the tokens of the same steps run op by op
// (--enforce-eager) and their logits within bf16 rounding (padding changes the GEMMs' row counts, so cuBLAS may
// sum in another order): six requests of different lengths finish at different steps, so the batch shrinks
// through several buckets (6, 4, 2, 1), each captured once and then replayed.
TEST(GpuModel, DecodeGraphsReplayWhatEagerStepsCompute) {
  MLARUN_GPU_OR_SKIP();
  RuntimeOptions o = tiny_cuda_options(/*max_num_seqs=*/6);
  SingleCommunicator comm;
  struct Run {
    std::vector<RequestOutput> out;
    int64_t captures = 0, replays = 0;
  };
  auto run = [&](bool eager) {
    o.enforce_eager = eager;
    DeepseekRunner runner(data_dir() + "/deepseek-v3-tiny", o, comm);
    const std::string graphs = runner.decode_graphs().describe();
    EXPECT_EQ(graphs.rfind(eager ? "off (--enforce-eager)" : "batches of 1, 2, 4, 6 sequences", 0), 0u) << graphs;
    Engine engine(o, runner);
    for (int r = 0; r < 6; ++r) {
      SamplingParams params;
      params.max_tokens = 3 + 4 * r;
      params.ignore_eos = true;
      RequestOptions keep;
      keep.keep_logits = true;
      engine.add_request({5, 17, 42, int32_t(r), 9, 100, int32_t(7 * r)}, params, keep);
    }
    Run result{engine.run(), runner.decode_graphs().captures(), runner.decode_graphs().replays()};
    return result;
  };
  const Run eager = run(true), graphs = run(false);
  EXPECT_EQ(eager.captures, 0);
  EXPECT_GE(graphs.captures, 3) << "buckets 6, 4, 2 and 1 as the batch shrinks";
  EXPECT_GE(graphs.replays, 20);
  std::printf("decode graphs: %lld captured, %lld steps replayed\n", (long long)graphs.captures,
              (long long)graphs.replays);
  ASSERT_EQ(eager.out.size(), graphs.out.size());
  double worst = 0;
  for (size_t r = 0; r < eager.out.size(); ++r) {
    EXPECT_EQ(graphs.out[r].token_ids, eager.out[r].token_ids) << "request " << r;
    ASSERT_EQ(graphs.out[r].logits.size(), eager.out[r].logits.size());
    for (size_t s = 0; s < eager.out[r].logits.size(); ++s)
      for (size_t v = 0; v < eager.out[r].logits[s].size(); ++v)
        worst = std::max(worst, double(std::fabs(graphs.out[r].logits[s][v] - eager.out[r].logits[s][v])));
  }
  std::printf("decode graphs vs eager: max |logit difference| %.4f\n", worst);
  EXPECT_LT(worst, 0.05) << "bf16 rounding of the same math, not another computation";
}
