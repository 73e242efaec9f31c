// The GPU step path against the CPU reference: StepTensors built on the device hold the host layout byte for
// byte (one upload from pinned staging); the device MoE permutation equals the host one exactly and its combine
// matches in f32; the generic paged MLA kernel over a step part, flash_prefill through varlen_attention (MLA's
// 192/128 in bf16) and mla_decode through the once-per-step plan (kv_lora_rank 512, rope 64) all match the CPU
// ops on the same rounded values, and so do the pieces of a chunked naive prefill merged by log-sum-exp. Skips
// without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>

#include "gpu_test_util.h"
#include "random_routing.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/ops.h"
#include "runtime/step_tensors.h"
#include "test_util.h"

using namespace mlarun;
using namespace mlarun::testing;

namespace {

// Two prefill chunks over cached prefixes and three decodes, blocks shuffled, block size 16.
ForwardBatch step_batch(int64_t decode_rows) {
  ForwardBatch b;
  b.add_sequence(std::vector<int32_t>(9, 1), 20, {7, 3}, 16);
  b.add_sequence(std::vector<int32_t>(size_t(decode_rows), 2), 40, {1, 0, 6}, 16);
  b.add_sequence(std::vector<int32_t>(13, 3), 0, {5}, 16);
  b.add_sequence(std::vector<int32_t>(size_t(decode_rows), 4), 3, {2}, 16);
  b.mla_path = MlaPath::Auto;
  return b;
}

// Sets the model's kernel choices for a test (kernels/cuda/cuda_ops.h) and gives them back to the environment.
struct KernelChoice {
  KernelChoice(int32_t mla_decode_kernel, int32_t flash_kernel) {
    ops::cuda::set_mla_decode_kernel(mla_decode_kernel);
    ops::cuda::set_flash_prefill_kernel(flash_kernel);
  }
  ~KernelChoice() {
    ops::cuda::set_mla_decode_kernel(-1);
    ops::cuda::set_flash_prefill_kernel(-1);
  }
};
// config.h AttendKernel: simt, mma, fitted, wgmma, wgmma-split, wgmma-ws and wgmma-seesaw (5 is auto, which picks
// one of them).
constexpr int32_t kMlaDecodeKernels[] = {0, 1, 2, 3, 4, 6, 7};

}  // namespace

TEST(GpuStepOps, StepTensorsOnTheDeviceHoldTheHostLayout) {
  MLARUN_GPU_OR_SKIP();
  const ForwardBatch b = step_batch(1);
  HostStaging staging;
  const StepTensors cpu = StepTensors::build(b, Device::CPU, 16, 8);
  const StepTensors gpu = StepTensors::build(b, Device::CUDA, 16, 8, &staging);
  for (auto [c, g] : {std::pair{&cpu.token_ids, &gpu.token_ids}, {&cpu.positions, &gpu.positions},
                      {&cpu.slot_mapping, &gpu.slot_mapping}, {&cpu.block_tables, &gpu.block_tables},
                      {&cpu.naive.kv_slots, &gpu.naive.kv_slots}, {&cpu.absorbed.block_tables, &gpu.absorbed.block_tables},
                      {&cpu.absorbed.cu_seqlens_q, &gpu.absorbed.cu_seqlens_q}})
    EXPECT_TRUE(bitwise_equal(*c, g->to(Device::CPU)));
}

TEST(GpuStepOps, MoePermutationAndCombineMatchTheCpu) {
  MLARUN_GPU_OR_SKIP();
  std::mt19937 rng(5);
  const int64_t T = 37, K = 6, E = 64, D = 48;
  const ops::Routing host = random_routing(T, K, E, rng);
  const ops::Routing dev{host.experts.to(Device::CUDA), host.weights.to(Device::CUDA)};
  for (auto [first, local] : {std::pair<int64_t, int64_t>{0, 64}, {16, 16}, {48, 16}}) {
    ops::ExpertPermutation want = ops::permute_by_expert(host, first, local);
    ops::ExpertPermutation got = ops::permute_by_expert(dev, first, local);
    EXPECT_EQ(got.offsets, want.offsets);
    EXPECT_TRUE(bitwise_equal(got.tokens.to(Device::CPU), want.tokens));
    EXPECT_TRUE(bitwise_equal(got.slot_of.to(Device::CPU), want.slot_of));
    EXPECT_TRUE(bitwise_equal(got.weights.to(Device::CPU), want.weights));
    Tensor out = random_f32({want.offsets.back(), D}, rng);
    Tensor y_want = ops::combine_experts(out, want.slot_of, host);
    Tensor y_got = ops::combine_experts(out.to(Device::CUDA), got.slot_of, dev);
    EXPECT_LT(rel_error(y_got, y_want), kF32RelTol);
  }
}

// The capacity layout on the device: the same grid and slots as the CPU's (more tokens than one 256-thread
// chunk, so the ordered compaction carries across chunks), the -1 rows gather as zeros, and the combine over the
// grid matches the CPU's.
TEST(GpuStepOps, MoeCapacityLayoutMatchesTheCpu) {
  MLARUN_GPU_OR_SKIP();
  std::mt19937 rng(6);
  const int64_t T = 300, K = 8, E = 64, D = 40;
  const ops::Routing host = random_routing(T, K, E, rng);
  const ops::Routing dev{host.experts.to(Device::CUDA), host.weights.to(Device::CUDA)};
  Tensor x = random_f32({T, D}, rng);
  for (auto [first, local] : {std::pair<int64_t, int64_t>{0, 64}, {8, 8}, {56, 8}}) {
    const ops::ExpertCapacityLayout want = ops::permute_to_capacity(host, first, local);
    const ops::ExpertCapacityLayout got = ops::permute_to_capacity(dev, first, local);
    EXPECT_TRUE(bitwise_equal(got.tokens.to(Device::CPU), want.tokens));
    EXPECT_TRUE(bitwise_equal(got.slot_of.to(Device::CPU), want.slot_of));
    EXPECT_TRUE(bitwise_equal(ops::gather_rows(x.to(Device::CUDA), got.tokens).to(Device::CPU),
                              ops::gather_rows(x, want.tokens)));
    Tensor out = random_f32({T * local, D}, rng);
    Tensor y_want = ops::combine_experts(out, want.slot_of, host);
    Tensor y_got = ops::combine_experts(out.to(Device::CUDA), got.slot_of, dev);
    EXPECT_LT(rel_error(y_got, y_want), kF32RelTol);
  }
}

// expert_linear on the GPU (kernels/cuda/expert_gemv.cu) against the CPU on the same bf16 values: experts with
// no token (their CTAs return at once), one, eight (one pass) and twenty (three passes of eight), a count past T
// clipped to T; rows past a count are zeros, also after the cuBLAS fallback K not a multiple of 8 takes.
TEST(GpuStepOps, ExpertLinearMatchesTheCpu) {
  MLARUN_GPU_OR_SKIP();
  std::mt19937 rng(8);
  for (const int64_t K : {264, 60}) {
    SCOPED_TRACE("K " + std::to_string(K));
    const int64_t T = 24, n = 6, N = 136;
    const Tensor x = bf16_rounded(random_f32({T, n, K}, rng)), w = bf16_rounded(random_f32({n, N, K}, rng, 0.1f));
    Tensor counts = Tensor::empty({n}, DType::I64);
    const int64_t c[] = {0, 1, 8, 20, 0, 99};
    std::copy(c, c + n, counts.data<int64_t>());
    const Tensor want = ops::expert_linear(x, w, counts);
    const Tensor got = ops::to_host_f32(ops::expert_linear(to_gpu(x), to_gpu(w), counts.to(Device::CUDA)));
    EXPECT_LT(rel_error(got, want), kBf16RelTol);
    for (int64_t r = 0; r < T; ++r)
      for (int64_t j = 0; j < n; ++j) {
        if (r < std::min(T, c[j])) continue;
        for (int64_t o = 0; o < N; ++o) ASSERT_EQ(got.data<float>()[(r * n + j) * N + o], 0.f);
      }
  }
}

TEST(GpuStepOps, GenericPagedMlaOverAPartMatchesTheCpu) {
  MLARUN_GPU_OR_SKIP();
  std::mt19937 rng(9);
  const ForwardBatch b = step_batch(1);
  const StepTensors cpu = StepTensors::build(b, Device::CPU, 16, 8), gpu = StepTensors::build(b, Device::CUDA, 16, 8);
  const int64_t H = 5, R = 64, Dr = 32;  // shapes outside mla_decode's contract: the generic kernel
  Tensor pool = random_f32({8, 16, R + Dr}, rng), q = random_f32({cpu.absorbed.num_tokens, H, R + Dr}, rng);
  Tensor want = ops::mla_paged_attention_part(q, pool, cpu.absorbed, R, 0.1f);
  Tensor got = ops::mla_paged_attention_part(to_gpu(q, DType::F32), to_gpu(pool, DType::F32), gpu.absorbed, R, 0.1f);
  EXPECT_LT(rel_error(got, want), kF32RelTol);
}

namespace {

// flash_prefill through varlen_attention (MLA's 192/128 in bf16), and a shape outside its contract.
void check_flash_through_varlen() {
  std::mt19937 rng(13);
  const ForwardBatch b = step_batch(1);
  const StepTensors cpu = StepTensors::build(b, Device::CPU, 16, 8), gpu = StepTensors::build(b, Device::CUDA, 16, 8);
  const int64_t H = 4, Q = cpu.naive.num_tokens, K = cpu.naive.total_k;
  ASSERT_TRUE(ops::flash_prefill_fits(192, 128, DType::BF16));
  Tensor q = bf16_rounded(random_f32({Q, H, 192}, rng)), k = bf16_rounded(random_f32({K, H, 192}, rng));
  Tensor v = bf16_rounded(random_f32({K, H, 128}, rng));
  Tensor want = ops::varlen_attention(q, k, v, 0.07f, cpu.naive);
  Tensor got = ops::varlen_attention(to_gpu(q), to_gpu(k), to_gpu(v), 0.07f, gpu.naive);
  EXPECT_LT(rel_error(got, want), kBf16RelTol);
  // Outside the contract (96/64): the generic kernel, the same answer.
  Tensor q2 = bf16_rounded(random_f32({Q, H, 96}, rng)), k2 = bf16_rounded(random_f32({K, H, 96}, rng));
  Tensor v2 = bf16_rounded(random_f32({K, H, 64}, rng));
  EXPECT_LT(rel_error(ops::varlen_attention(to_gpu(q2), to_gpu(k2), to_gpu(v2), 0.1f, gpu.naive),
                      ops::varlen_attention(q2, k2, v2, 0.1f, cpu.naive)),
            kBf16RelTol);
}

// mla_decode through the once-per-step plan, two layers on one schedule, with the attend kernel `kernel`: decode,
// MTP-style rows, and prefill chunks of 7 and 13 rows on the absorbed path (mla_decode takes at most 4 rows a
// sequence: these go through the step's decode view, StepPart::decode_view_*).
void check_decode_through_plan(int32_t kernel) {
  std::mt19937 rng(17);
  for (int64_t rows : {1, 3, 7, 13}) {
    ForwardBatch b;  // `rows` query rows per sequence, absorbed path forced
    b.add_sequence(std::vector<int32_t>(size_t(rows), 2), 40, {1, 0, 6, 7}, 16);
    b.add_sequence(std::vector<int32_t>(size_t(rows), 4), 3, {2}, 16);
    b.mla_path = MlaPath::Absorbed;
    const StepTensors cpu = StepTensors::build(b, Device::CPU, 16, 8);
    const StepTensors gpu = StepTensors::build(b, Device::CUDA, 16, 8);
    const int64_t H = 16, R = 512, Dr = 64;
    ops::MlaDecodePlan plan = ops::plan_mla_decode(gpu.absorbed, Device::CUDA, DType::BF16, H, R, Dr, 16);
    ASSERT_TRUE(plan.fast) << plan.reason;
    EXPECT_EQ(plan.attend, kernel);
    Tensor pool = bf16_rounded(random_f32({8, 16, R + Dr}, rng));
    Tensor pool_gpu = to_gpu(pool);
    for (int layer = 0; layer < 2; ++layer) {  // the second call reuses the schedule
      Tensor q = bf16_rounded(random_f32({cpu.absorbed.num_tokens, H, R + Dr}, rng, 0.3f));
      Tensor want = ops::mla_paged_attention_part(q, pool, cpu.absorbed, R, 0.05f);
      Tensor got = ops::mla_decode(to_gpu(q), pool_gpu, gpu.absorbed, plan, R, 0.05f);
      EXPECT_LT(rel_error(got, want), kBf16RelTol) << rows << " rows, layer " << layer;
    }
  }
}

}  // namespace

// Every flash prefill kernel (stage A, wgmma, wgmma warp-specialized: FlashPrefillParams::wgmma and
// warp_specialized as the model chooses them).
TEST(GpuStepOps, FlashPrefillThroughVarlenAttentionMatchesTheCpu) {
  MLARUN_GPU_OR_SKIP();
  for (int32_t kernel : {0, 1, 2}) {
    SCOPED_TRACE(kernel == 0 ? "stage A kernel" : kernel == 1 ? "wgmma kernel" : "wgmma warp-specialized kernel");
    KernelChoice choice(-1, kernel);
    check_flash_through_varlen();
  }
}

// Every attend kernel of mla_decode, as the model chooses it (recorded in the plan that holds its schedule).
TEST(GpuStepOps, MlaDecodeThroughTheStepPlanMatchesTheCpu) {
  MLARUN_GPU_OR_SKIP();
  for (int32_t kernel : kMlaDecodeKernels) {
    SCOPED_TRACE("attend kernel " + std::to_string(kernel));
    KernelChoice choice(kernel, -1);
    check_decode_through_plan(kernel);
  }
}

// fp8 and int8 latent caches through the plan (dequantized inside mla_decode), with the log-sum-exp decode context
// parallelism merges by: against the CPU reading the same quantized rows back.
TEST(GpuStepOps, MlaDecodeOverAQuantizedCacheMatchesTheCpuWithLse) {
  MLARUN_GPU_OR_SKIP();
  std::mt19937 rng(19);
  ForwardBatch b;
  b.add_sequence(std::vector<int32_t>(1, 2), 40, {1, 0, 6}, 16);
  b.add_sequence(std::vector<int32_t>(1, 4), 3, {2}, 16);
  b.mla_path = MlaPath::Absorbed;
  const StepTensors cpu = StepTensors::build(b, Device::CPU, 16, 8);
  const StepTensors gpu = StepTensors::build(b, Device::CUDA, 16, 8);
  const int64_t H = 16, R = 512, Dr = 64, blocks = 8, bs = 16;
  for (KvQuant quant : {KvQuant::Fp8, KvQuant::Int8}) {
    const DType pool_dtype = quant == KvQuant::Fp8 ? DType::F8_E4M3 : DType::I8;
    const KvCacheFormat f = kv_cache_format(pool_dtype, DType::BF16, R, Dr);
    Tensor pool = Tensor::zeros({blocks, bs, f.row_bytes()}, pool_dtype);
    std::vector<int64_t> slots(size_t(blocks * bs));
    for (size_t i = 0; i < slots.size(); ++i) slots[i] = int64_t(i);
    ops::write_cache_quantized(pool, f, slots, random_f32({blocks * bs, R + Dr}, rng));
    Tensor readback = Tensor::empty({blocks, bs, R + Dr}, DType::F32);  // what every read must see
    for (int64_t i = 0; i < blocks * bs; ++i)
      kvq::dequantize_row(static_cast<const uint8_t*>(pool.raw()) + i * f.row_bytes(), f,  // raw: i8 or fp8 pool
                          readback.data<float>() + i * (R + Dr));
    ops::MlaDecodePlan plan = ops::plan_mla_decode(gpu.absorbed, Device::CUDA, DType::BF16, H, R, Dr, bs, quant);
    ASSERT_TRUE(plan.fast) << plan.reason;
    Tensor q = bf16_rounded(random_f32({cpu.absorbed.num_tokens, H, R + Dr}, rng, 0.3f));
    Tensor want_lse, got_lse;
    Tensor want = ops::mla_paged_attention_part(q, readback, cpu.absorbed, R, 0.05f, &want_lse);
    Tensor got = ops::mla_decode(to_gpu(q), pool.to(Device::CUDA), gpu.absorbed, plan, R, 0.05f, &got_lse);
    EXPECT_LT(rel_error(got, want), kBf16RelTol) << (quant == KvQuant::Fp8 ? "fp8" : "int8");
    EXPECT_LT(rel_error(got_lse, want_lse), 1e-4) << (quant == KvQuant::Fp8 ? "fp8" : "int8");
  }
}

// The pieces of a chunked naive prefill on the device (docs/model.md §2.4): varlen attention with causal offsets
// over four key ranges (before the queries: every row sees all of it; the last: the first rows see none of it, o 0
// and lse -inf), each folded into an f32 running output by merge_attention_partials, equals dense attention over
// all the keys on the CPU, and each piece matches the CPU's. Head dims 192/128 take flash_prefill with its
// causal_offset; 24/16 the generic kernel.
TEST(GpuStepOps, OffsetVarlenPiecesMergedByLseMatchTheCpu) {
  MLARUN_GPU_OR_SKIP();
  std::mt19937 rng(21);
  for (auto [dqk, dv] : std::vector<std::pair<int64_t, int64_t>>{{192, 128}, {24, 16}}) {
    const int64_t Tq = 70, H = 4, Tk = 300, start = Tk - Tq;
    const Tensor q = bf16_rounded(random_f32({Tq, H, dqk}, rng)), k = bf16_rounded(random_f32({Tk, 2, dqk}, rng));
    const Tensor v = bf16_rounded(random_f32({Tk, 2, dv}, rng));
    const Tensor q_gpu = to_gpu(q), k_gpu = to_gpu(k), v_gpu = to_gpu(v);
    const Tensor want = ops::attention(q, k, v, 0.07f, start);
    Tensor o, lse;
    for (auto [k0, k1] : std::vector<std::pair<int64_t, int64_t>>{{0, 117}, {117, 236}, {236, 261}, {261, 300}}) {
      ops::OffsetVarlen l;
      l.cu_seqlens_q_host = {0, int32_t(Tq)};
      l.cu_seqlens_k_host = {0, int32_t(k1 - k0)};
      l.causal_offset_host = {int32_t(start - k0)};
      Tensor cpu_lse, gpu_lse;
      const Tensor cpu_part = ops::varlen_attention(q, k.rows(k0, k1 - k0), v.rows(k0, k1 - k0), 0.07f, l, cpu_lse);
      auto on_gpu = [](const std::vector<int32_t>& list) {
        Tensor t = Tensor::empty({int64_t(list.size())}, DType::I32);
        std::copy(list.begin(), list.end(), t.data<int32_t>());
        return t.to(Device::CUDA);
      };
      l.cu_seqlens_q = on_gpu(l.cu_seqlens_q_host);
      l.cu_seqlens_k = on_gpu(l.cu_seqlens_k_host);
      l.causal_offset = on_gpu(l.causal_offset_host);
      const Tensor part =
          ops::varlen_attention(q_gpu, k_gpu.rows(k0, k1 - k0), v_gpu.rows(k0, k1 - k0), 0.07f, l, gpu_lse);
      EXPECT_LT(rel_error(to_host(part), cpu_part), kBf16RelTol) << dqk << ": keys [" << k0 << ", " << k1 << ")";
      const Tensor host_lse = to_host(gpu_lse);
      int64_t unseen = 0;
      for (int64_t i = 0; i < host_lse.numel(); ++i) {
        const float got = host_lse.data<float>()[i], ref = cpu_lse.data<float>()[i];
        if (ref == -INFINITY) {
          ++unseen;
          EXPECT_EQ(got, -INFINITY) << dqk << ": keys [" << k0 << ", " << k1 << ") row " << i;
        } else {
          EXPECT_NEAR(got, ref, 2e-3f) << dqk << ": keys [" << k0 << ", " << k1 << ") row " << i;
        }
      }
      if (k0 == 261) {
        EXPECT_EQ(unseen, (261 - start) * H) << "queries before the last range see none of it";
      }
      if (!o.defined()) {
        o = ops::convert(part, DType::F32);
        lse = gpu_lse;
      } else {
        ops::merge_attention_partials(o, lse, part, gpu_lse);
      }
    }
    EXPECT_LT(rel_error(to_host(o), want), kBf16RelTol) << dqk;
  }
}
