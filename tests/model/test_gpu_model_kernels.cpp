// The whole model on the GPU with each attention kernel it can choose (kernels/cuda/cuda_ops.h): a model of random
// weights whose MLA shapes are in the fast kernels' contracts (kv_lora_rank 512, rope 64, q/k 192, v 128: the
// fixtures' tiny shapes are not, so they never reach mla_decode or flash_prefill) prefills a prompt through
// flash_prefill and decodes greedy steps through mla_decode. The same model in f32 on the CPU is the reference:
// every kernel's worst step must be within twice the default kernels' worst error against it (or the bf16
// tolerance, if larger), the step-level check that a kernel may serve the model. Two bf16 kernels can differ by
// about as much as each differs from f32 (1.1% after two decode steps on an H100), so they are not compared with
// each other. Skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/random_weights.h"
#include "gpu_test_util.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/kv_quant.h"
#include "kernels/ops.h"
#include "model/deepseek_model.h"
#include "random_model_util.h"
#include "runtime/cache_pool.h"
#include "runtime/placement.h"

using namespace mlarun;
using namespace mlarun::testing;

namespace {

// tiny_random_config with DeepSeek-V2's attention shapes per head: 16 heads of q/k 128 + 64 (rope), v 128, a
// 512-value latent; two layers (one dense, one MoE).
ModelConfig fast_kernel_config() {
  ModelConfig c = tiny_random_config();
  c.dim = 256;
  c.inter_dim = 256;
  c.moe_inter_dim = 64;
  c.n_heads = 16;
  c.kv_lora_rank = 512;
  c.qk_nope_head_dim = 128;
  c.qk_rope_head_dim = 64;
  c.v_head_dim = 128;
  c.validate();
  return c;
}

// Logits of a prompt prefilled in one step (last row) and of `steps` decode steps after it, f32 on the host, one
// [1, vocab] tensor per step, on the model's device, with the kernels set by `decode_kernel` / `flash_kernel` (-1:
// the default). The decoded tokens are the greedy ones, recorded into `tokens` when it is empty, else taken from
// it (so every run decodes the same tokens, whatever near-ties its rounding breaks the other way).
std::vector<Tensor> run_steps(const DeepseekModel& model, Device device, int32_t decode_kernel, int32_t flash_kernel,
                              int steps, std::vector<int32_t>& tokens) {
  ops::cuda::set_mla_decode_kernel(decode_kernel);
  ops::cuda::set_flash_prefill_kernel(flash_kernel);
  const ModelConfig& c = model.config();
  constexpr int64_t kBlock = 16, kBlocks = 12;
  const DType cache_dtype = device == Device::CUDA ? DType::BF16 : DType::F32;
  CachePool pool = CachePool::allocate(c.n_layers, kBlocks, kBlock, c.latent_dim(), cache_dtype, device);
  std::vector<int32_t> table;
  for (int64_t b = kBlocks - 1; b >= 0; --b) table.push_back(int32_t(b));  // reversed: not the identity
  std::vector<int32_t> prompt;
  for (int i = 0; i < 70; ++i) prompt.push_back(int32_t((7 * i + 3) % c.vocab_size));
  std::vector<Tensor> out;
  ForwardBatch first;
  first.add_sequence(prompt, 0, table, kBlock);
  first.logit_rows.push_back(int64_t(prompt.size()) - 1);
  first.mla_path = MlaPath::Naive;
  out.push_back(ops::to_host_f32(model.forward(first, pool.layers)));
  int64_t pos = int64_t(prompt.size());
  for (int s = 0; s < steps; ++s, ++pos) {
    if (int(tokens.size()) <= s) {
      const float* row = out.back().data<float>();
      int32_t best = 0;
      for (int64_t v = 1; v < c.vocab_size; ++v)
        if (row[v] > row[best]) best = int32_t(v);
      tokens.push_back(best);
    }
    const int32_t next = tokens[size_t(s)];
    ForwardBatch step;
    step.add_sequence(std::vector<int32_t>{next}, pos, table, kBlock);
    step.logit_rows.push_back(0);
    step.mla_path = MlaPath::Absorbed;
    out.push_back(ops::to_host_f32(model.forward(step, pool.layers)));
  }
  ops::cuda::set_mla_decode_kernel(-1);
  ops::cuda::set_flash_prefill_kernel(-1);
  return out;
}

}  // namespace

TEST(GpuModelKernels, EveryAttentionKernelIsWithinTwiceTheDefaultKernelsErrorAgainstF32) {
  MLARUN_GPU_OR_SKIP();
  const ModelConfig c = fast_kernel_config();
  RandomWeights weights(c);
  SingleCommunicator comm;
  DeepseekModel cpu_model(c, weights, comm, Placement::cpu());
  DeepseekModel model(c, weights, comm, Placement::cuda_bf16());
  ASSERT_TRUE(ops::flash_prefill_fits(c.qk_nope_head_dim + c.qk_rope_head_dim, c.v_head_dim, DType::BF16));
  constexpr int kSteps = 6;
  std::vector<int32_t> tokens;  // the f32 model's greedy tokens, decoded by every run
  const std::vector<Tensor> want = run_steps(cpu_model, Device::CPU, -1, -1, kSteps, tokens);
  const std::vector<Tensor> base = run_steps(model, Device::CUDA, -1, -1, kSteps, tokens);
  ASSERT_EQ(base.size(), want.size());
  // The worst step's error, not each step's: a step where rounding flips a near-tied expert choice costs every
  // bf16 run about 1% there, whichever kernel it used.
  const auto worst_error = [&](const std::vector<Tensor>& got, std::string& where) {
    double worst = 0;
    for (size_t s = 0; s < got.size(); ++s) {
      const double e = rel_error(got[s], want[s]);
      if (e > worst) worst = e, where = s == 0 ? "prefill" : "decode step " + std::to_string(s);
    }
    return worst;
  };
  std::string base_where;
  const double base_error = worst_error(base, base_where);
  EXPECT_LT(base_error, 5 * kBf16RelTol) << "the default kernels, at " << base_where;  // bf16, not garbage
  const double bound = std::max(2 * base_error, kBf16RelTol);
  std::printf("%-20s worst rel error against f32 %.4f at %s\n", "default kernels", base_error, base_where.c_str());
  struct Choice {
    const char* name;
    int32_t decode_kernel, flash_kernel;
  };
  for (const Choice& k : {Choice{"decode simt", 0, -1}, Choice{"decode mma", 1, -1}, Choice{"decode fitted", 2, -1},
                          Choice{"decode wgmma", 3, -1}, Choice{"decode wgmma-split", 4, -1},
                          Choice{"flash mma", -1, 0}, Choice{"flash wgmma", -1, 1}, Choice{"flash wgmma-ws", -1, 2},
                          Choice{"flash wgmma-pipelined", -1, 3}, Choice{"flash wgmma-pingpong", -1, 4},
                          Choice{"flash wgmma-persistent", -1, 5}, Choice{"flash wgmma-persistent-pingpong", -1, 6},
                          Choice{"decode wgmma-ws", 6, -1}, Choice{"decode wgmma-seesaw", 7, -1}}) {
    SCOPED_TRACE(k.name);
    const std::vector<Tensor> got = run_steps(model, Device::CUDA, k.decode_kernel, k.flash_kernel, kSteps, tokens);
    ASSERT_EQ(got.size(), want.size());
    std::string where;
    const double error = worst_error(got, where);
    std::printf("%-20s worst rel error against f32 %.4f at %s\n", k.name, error, where.c_str());
    EXPECT_LT(error, bound) << "at " << where << "; the default kernels' worst error " << base_error << " at "
                            << base_where;
  }
}

// Random weights made on the GPU (RandomWeights::load_slice_placed, ops::fill_random_normal) are the bf16 of the
// values the host makes, bit for bit: every tensor of the model above, whole and as a slice of each dimension
// (a tensor-parallel shard), and the random cache rows of the benchmarks.
TEST(GpuModelKernels, RandomWeightsMadeOnTheGpuAreTheHostsValues) {
  MLARUN_GPU_OR_SKIP();
  const ModelConfig c = fast_kernel_config();
  const RandomWeights w(c, AttentionKind::mla(), 3);
  const Placement gpu = Placement::cuda_bf16();
  const auto same_bits = [](const Tensor& host_f32, const Tensor& device_bf16, const std::string& what) {
    const Tensor want = host_f32.to_dtype(DType::BF16);
    const Tensor got = device_bf16.to(Device::CPU);
    ASSERT_EQ(got.shape(), want.shape()) << what;
    ASSERT_EQ(got.dtype(), DType::BF16) << what;
    const auto* a = static_cast<const uint16_t*>(want.raw());
    const auto* b = static_cast<const uint16_t*>(got.raw());
    for (int64_t i = 0; i < want.numel(); ++i) ASSERT_EQ(a[i], b[i]) << what << " element " << i;
  };
  for (const std::string& name : w.tensor_names()) {
    const Shape shape = w.shape_of(name);
    for (int dim = 0; dim < int(shape.size()); ++dim) {
      const int64_t n = shape[size_t(dim)], begin = n / 3, end = n - n / 4;  // a middle slice; whole for dim 0 too
      same_bits(w.load_slice(name, dim, begin, end), w.load_slice_placed(name, dim, begin, end, gpu),
                name + " dim " + std::to_string(dim));
      if (dim == 0) same_bits(w.load(name), w.load_slice_placed(name, 0, 0, n, gpu), name);
    }
  }
  // Cache rows: slot s of layer l holds value i of the row's stream, rounded to bf16 (bench/random_weights.h).
  const KvCacheFormat f = kv_cache_format(DType::BF16, DType::BF16, c.kv_lora_rank, c.qk_rope_head_dim);
  const int64_t width = f.width();
  CachePool pool = CachePool::allocate(2, 4, 16, width, DType::BF16, Device::CUDA);
  const std::vector<int64_t> slots = {3, 17, 40, 41, 63};
  const uint64_t seed = 9;
  const int64_t seq = 1, num_seqs = 4;
  write_random_cache_rows(pool.layers, f, slots, seed, seq, num_seqs, gpu);
  for (int64_t l = 0; l < 2; ++l) {
    Tensor want = Tensor::empty({int64_t(slots.size()), width}, DType::F32);
    random_normal_values(seed * 1000003 + uint64_t(l * num_seqs + seq), 0, want.data<float>(), want.numel());
    const Tensor want_bf16 = want.to_dtype(DType::BF16), got = pool.layers[size_t(l)].to(Device::CPU);
    for (size_t k = 0; k < slots.size(); ++k)
      for (int64_t i = 0; i < width; ++i)
        ASSERT_EQ(static_cast<const uint16_t*>(got.raw())[size_t(slots[k] * width + i)],
                  static_cast<const uint16_t*>(want_bf16.raw())[k * size_t(width) + size_t(i)])
            << "layer " << l << " slot " << slots[k] << " value " << i;
  }
}
