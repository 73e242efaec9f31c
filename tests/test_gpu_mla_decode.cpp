// MLA decode kernel (kernels/cuda/mla_decode.h) against the CPU reference ops::mla_paged_attention, on the cases of
// issue 9: block sizes 1/16/64/256, 1/16/128 heads, 1..4 query tokens per sequence mixed in one batch, zero-length
// and one-token sequences, shuffled block tables with garbage in unused entries, NaN in every unused cache slot,
// outputs poisoned before each run (so an unwritten element fails), a split schedule from 1 to 1024 parts.
// The API-boundary tests run everywhere (checks happen before any CUDA call); the GPU cases skip without a GPU.
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/mla_decode.h"
#include "kernels/cuda/mla_decode_reference.h"
#include "kernels/ops.h"
#include "runtime/device.h"
#include "runtime/dtype.h"
#include "runtime/error.h"
#include "runtime/tensor.h"

using namespace mlarun;
using cuda::MlaDecodeParams;
using cuda::MlaDecodeStatus;

namespace {

constexpr int kD = 576, kDv = 512;
constexpr float kScale = 0.0721687836f;  // 1/sqrt(192), DeepSeek's pre-absorption scale

// ---- API boundary: no GPU needed --------------------------------------------------------------------------
alignas(256) unsigned char g_fake[512];  // never dereferenced: only its address is checked

MlaDecodeParams fake_params() {
  MlaDecodeParams p;
  p.q = p.kv_cache = p.out = reinterpret_cast<uint16_t*>(g_fake);
  p.block_tables = p.seq_lens = p.cu_seqlens_q = reinterpret_cast<int32_t*>(g_fake);
  p.lse = reinterpret_cast<float*>(g_fake);
  p.workspace = g_fake;
  p.num_tokens = 6, p.batch = 4, p.num_heads = 16, p.kv_lora_rank = 512, p.rope_dim = 64;
  p.num_blocks = 100, p.block_size = 64, p.max_blocks_per_seq = 10, p.max_q_per_seq = 2, p.num_sms = 132;
  p.softmax_scale = kScale;
  p.workspace_bytes = cuda::mla_decode_workspace_bytes(p.batch, p.num_heads, p.max_q_per_seq, p.num_sms);
  return p;
}

TEST(MlaDecodeApi, ValidParamsPassTheChecks) { EXPECT_NO_THROW(cuda::check_mla_decode(fake_params())); }

TEST(MlaDecodeApi, EveryBadFieldIsNamedWithItsValue) {
  struct Bad {
    std::function<void(MlaDecodeParams&)> mutate;
    std::string expect;
  };
  const std::vector<Bad> cases = {
      {[](auto& p) { p.block_size = 0; }, "block_size 0 is outside 1..256"},
      {[](auto& p) { p.block_size = 257; }, "block_size 257 is outside 1..256"},
      {[](auto& p) { p.num_heads = 0; }, "num_heads 0 is outside 1..128"},
      {[](auto& p) { p.num_heads = 129; }, "num_heads 129 is outside 1..128"},
      {[](auto& p) { p.max_q_per_seq = 5; }, "max_q_per_seq (query tokens per sequence) 5 is outside 1..4"},
      {[](auto& p) { p.max_q_per_seq = 0; }, "max_q_per_seq (query tokens per sequence) 0"},
      {[](auto& p) { p.kv_lora_rank = 256; }, "kv_lora_rank 256 and rope_dim 64 are not supported"},
      {[](auto& p) { p.rope_dim = 32; }, "rope_dim 32 are not supported"},
      {[](auto& p) { p.batch = 0; }, "batch 0 is outside 1..8192"},
      {[](auto& p) { p.batch = 9000; }, "batch 9000 is outside 1..8192"},
      {[](auto& p) { p.num_tokens = 3; }, "num_tokens 3 does not fit 4 sequences of 1..2 query tokens"},
      {[](auto& p) { p.num_tokens = 9; }, "num_tokens 9 does not fit"},
      {[](auto& p) { p.num_blocks = 0; }, "num_blocks 0 is outside"},
      {[](auto& p) { p.max_blocks_per_seq = 0; }, "max_blocks_per_seq 0 is outside"},
      {[](auto& p) { p.num_sms = 0; }, "num_sms 0 is outside 1..1024"},
      {[](auto& p) { p.softmax_scale = 0.f; }, "softmax_scale 0 must be positive"},
      {[](auto& p) { p.softmax_scale = NAN; }, "softmax_scale nan must be positive"},
      {[](auto& p) { p.q = nullptr; }, "q is null"},
      {[](auto& p) { p.kv_cache = nullptr; }, "kv_cache is null"},
      {[](auto& p) { p.block_tables = nullptr; }, "block_tables is null"},
      {[](auto& p) { p.seq_lens = nullptr; }, "seq_lens is null"},
      {[](auto& p) { p.cu_seqlens_q = nullptr; }, "cu_seqlens_q is null"},
      {[](auto& p) { p.out = nullptr; }, "out is null"},
      {[](auto& p) { p.lse = nullptr; }, "lse is null"},
      {[](auto& p) { p.workspace = nullptr; }, "workspace is null"},
      {[](auto& p) { p.kv_cache = reinterpret_cast<uint16_t*>(g_fake + 2); }, "is not 16-byte aligned"},
      {[](auto& p) { p.out = reinterpret_cast<uint16_t*>(g_fake + 8); }, "is not 16-byte aligned"},
      {[](auto& p) { p.workspace = g_fake + 16; }, "is not 256-byte aligned"},
      {[](auto& p) { p.workspace_bytes -= 1; }, " bytes needed for batch 4, 16 heads, max_q_per_seq 2 and 132 SMs"},
  };
  for (const Bad& bad : cases) {
    SCOPED_TRACE(bad.expect);
    MlaDecodeParams p = fake_params();
    bad.mutate(p);
    // The whole call and each stage reject it before touching CUDA.
    for (auto call : {cuda::mla_decode, cuda::mla_decode_schedule, cuda::mla_decode_attend, cuda::mla_decode_combine}) {
      try {
        call(p, nullptr);
        ADD_FAILURE() << "accepted";
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(bad.expect), std::string::npos) << e.what();
      }
    }
  }
}

TEST(MlaDecodeApi, WorkspaceAndPartsFollowTheConfig) {
  EXPECT_EQ(cuda::mla_decode_num_parts(16, 1, 132), 132);  // 16 rows: one M tile, one part per SM
  EXPECT_EQ(cuda::mla_decode_num_parts(128, 1, 132), 33);  // 128 rows: 4 M tiles share each part
  EXPECT_EQ(cuda::mla_decode_num_parts(128, 4, 132), 8);   // 512 rows: 16 M tiles
  EXPECT_EQ(cuda::mla_decode_num_parts(128, 4, 4), 1);
  const size_t small = cuda::mla_decode_workspace_bytes(8, 16, 1, 132);
  EXPECT_GT(cuda::mla_decode_workspace_bytes(64, 16, 1, 132), small);
  EXPECT_GT(cuda::mla_decode_workspace_bytes(8, 16, 2, 132), small);
  EXPECT_THROW(cuda::mla_decode_workspace_bytes(0, 16, 1, 132), Error);
  EXPECT_THROW(cuda::mla_decode_num_parts(16, 1, 0), Error);
}

// ---- GPU cases ---------------------------------------------------------------------------------------------
struct Case {
  std::vector<int> seq_lens, q_lens;  // per sequence: cached tokens (new ones included) and query tokens
  int heads = 16, block_size = 64, num_sms = 0;  // num_sms 0: the device's
  uint64_t seed = 1;
};

uint16_t random_bf16(std::mt19937_64& rng) {
  return float_to_bf16(std::uniform_real_distribution<float>(-1.f, 1.f)(rng));
}

// Host inputs: every used cache row and q row fresh random; every unused slot NaN; blocks handed out from a
// shuffled pool with spare blocks; unused block-table entries hold an id far outside the pool.
struct Inputs {
  std::vector<uint16_t> q, pool;
  std::vector<int32_t> tables, seq_lens, cu_q;
  int num_blocks = 0, max_blocks = 1, num_tokens = 0, max_q = 1;
};

Inputs make_inputs(const Case& c) {
  std::mt19937_64 rng(c.seed);
  Inputs in;
  const int batch = int(c.seq_lens.size()), bs = c.block_size;
  for (int b = 0; b < batch; ++b) {
    in.max_blocks = std::max(in.max_blocks, (c.seq_lens[b] + bs - 1) / bs);
    in.max_q = std::max(in.max_q, c.q_lens[b]);
  }
  int used = 0;
  for (int len : c.seq_lens) used += (len + bs - 1) / bs;
  in.num_blocks = used + 3;
  std::vector<int32_t> ids(in.num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  in.pool.assign(size_t(in.num_blocks) * bs * kD, uint16_t(0x7fc0));  // bf16 NaN
  in.tables.assign(size_t(batch) * in.max_blocks, 2147480000);
  in.cu_q.push_back(0);
  int next = 0;
  for (int b = 0; b < batch; ++b) {
    const int len = c.seq_lens[b];
    for (int j = 0; j < (len + bs - 1) / bs; ++j) in.tables[size_t(b) * in.max_blocks + j] = ids[next++];
    for (int t = 0; t < len; ++t) {
      const size_t slot = size_t(in.tables[size_t(b) * in.max_blocks + t / bs]) * bs + t % bs;
      for (int d = 0; d < kD; ++d) in.pool[slot * kD + d] = random_bf16(rng);
    }
    in.seq_lens.push_back(len);
    in.cu_q.push_back(in.cu_q.back() + c.q_lens[b]);
  }
  in.num_tokens = in.cu_q.back();
  in.q.resize(size_t(in.num_tokens) * c.heads * kD);
  for (auto& v : in.q) v = random_bf16(rng);
  return in;
}

template <typename T>
Tensor upload(const std::vector<T>& host, DType dtype) {
  Tensor t = Tensor::empty({int64_t(host.size())}, dtype, Device::CUDA);
  copy_bytes(t.raw(), Device::CUDA, host.data(), Device::CPU, host.size() * sizeof(T));
  return t;
}

// Device copies of one case's inputs, the outputs (poisoned with NaN) and the workspace.
struct DeviceRun {
  Tensor q, pool, tables, seq_lens, cu_q, out, lse, workspace;
  MlaDecodeParams p;
  DeviceRun(const Inputs& in, const Case& c) {
    q = upload(in.q, DType::BF16), pool = upload(in.pool, DType::BF16), tables = upload(in.tables, DType::I32);
    seq_lens = upload(in.seq_lens, DType::I32), cu_q = upload(in.cu_q, DType::I32);
    out = Tensor::empty({in.num_tokens, c.heads, kDv}, DType::BF16, Device::CUDA);
    lse = Tensor::empty({in.num_tokens, c.heads}, DType::F32, Device::CUDA);
    p.q = q.data<uint16_t>(), p.kv_cache = pool.data<uint16_t>(), p.block_tables = tables.data<int32_t>();
    p.seq_lens = seq_lens.data<int32_t>(), p.cu_seqlens_q = cu_q.data<int32_t>();
    p.out = out.data<uint16_t>(), p.lse = lse.data<float>();
    p.num_tokens = in.num_tokens, p.batch = int(in.seq_lens.size()), p.num_heads = c.heads;
    p.kv_lora_rank = 512, p.rope_dim = 64, p.num_blocks = in.num_blocks, p.block_size = c.block_size;
    p.max_blocks_per_seq = in.max_blocks, p.max_q_per_seq = in.max_q, p.softmax_scale = kScale;
    p.num_sms = c.num_sms > 0 ? c.num_sms : cuda::current_device_sm_count();
    p.workspace_bytes = cuda::mla_decode_workspace_bytes(p.batch, p.num_heads, p.max_q_per_seq, p.num_sms);
    workspace = Tensor::empty({int64_t(p.workspace_bytes / 4 + 1)}, DType::F32, Device::CUDA);
    p.workspace = workspace.raw();
  }
  void poison() {
    ASSERT_EQ(cudaMemset(out.raw(), 0xff, out.nbytes()), cudaSuccess);
    ASSERT_EQ(cudaMemset(lse.raw(), 0xff, lse.nbytes()), cudaSuccess);
  }
  static std::vector<float> flat(const Tensor& t) {
    Tensor h = t.to(Device::CPU).to_dtype(DType::F32);
    return std::vector<float>(h.data<float>(), h.data<float>() + h.numel());
  }
};

// Compares the GPU results of sequences `check` with the CPU reference; returns how many elements failed.
int compare_with_reference(const Inputs& in, const Case& c, const DeviceRun& run, const std::vector<int>& check) {
  const std::vector<float> out = DeviceRun::flat(run.out), lse = DeviceRun::flat(run.lse);
  Tensor pool = Tensor::empty({in.num_blocks, c.block_size, kD}, DType::F32);
  convert_to_f32(in.pool.data(), DType::BF16, pool.data<float>(), in.pool.size());
  double err2 = 0, ref2 = 0;
  int failures = 0;
  for (int b : check) {
    const int q0 = in.cu_q[b], n = in.cu_q[b + 1] - q0, len = in.seq_lens[b];
    std::vector<int32_t> table(in.tables.begin() + size_t(b) * in.max_blocks,
                               in.tables.begin() + size_t(b) * in.max_blocks + (len + c.block_size - 1) / c.block_size);
    Tensor ref, ref_lse;
    cuda::mla_decode_reference_one(in.q.data() + size_t(q0) * c.heads * kD, n, c.heads, len, pool, table, kScale,
                                   ref, ref_lse);
    for (int64_t r = 0; r < int64_t(n) * c.heads; ++r) {
      const float* want = ref.data<float>() + r * kDv;
      const float* got = out.data() + (int64_t(q0) * c.heads + r) * kDv;
      for (int d = 0; d < kDv; ++d) {
        const double e = double(got[d]) - want[d];
        err2 += e * e, ref2 += double(want[d]) * want[d];
        if (!(std::fabs(e) <= 8e-3 * std::fabs(want[d]) + 1e-4) && failures++ < 5)
          ADD_FAILURE() << "seq " << b << " row " << r << " col " << d << ": got " << got[d] << " want " << want[d];
      }
      const float gl = lse[size_t(q0) * c.heads + r], wl = ref_lse.data<float>()[r];
      const bool lse_ok = std::isinf(wl) ? gl == wl : std::fabs(gl - wl) <= 2e-4f + 2e-5f * std::fabs(wl);
      if (!lse_ok && failures++ < 5) ADD_FAILURE() << "seq " << b << " row " << r << ": lse " << gl << " want " << wl;
    }
  }
  if (ref2 > 0) {
    EXPECT_LT(std::sqrt(err2 / ref2), 5e-3) << "relative L2 error of out";
  }
  return failures;
}

void run_and_check(const Case& c) {
  if (!gpu_available()) GTEST_SKIP() << "no usable GPU: " << gpu_info().reason;
  const Inputs in = make_inputs(c);
  DeviceRun run(in, c);
  run.poison();
  cuda::mla_decode(run.p, nullptr);
  const MlaDecodeStatus status = cuda::mla_decode_status(run.p, nullptr);
  ASSERT_TRUE(status.ok()) << status.message();
  std::vector<int> all(in.seq_lens.size());
  std::iota(all.begin(), all.end(), 0);
  EXPECT_EQ(compare_with_reference(in, c, run, all), 0);
}

const std::vector<int> kLens = {0, 1, 33, 257, 1000, 64, 5};
const std::vector<int> kQLens = {1, 2, 3, 4, 1, 2, 4};  // includes L < n (seq 1) and L = 0 (seq 0)

class MlaDecodeBlockSize : public ::testing::TestWithParam<int> {};
TEST_P(MlaDecodeBlockSize, MatchesReference) { run_and_check({kLens, kQLens, 16, GetParam(), 0, 11}); }
INSTANTIATE_TEST_SUITE_P(Gpu, MlaDecodeBlockSize, ::testing::Values(1, 16, 64, 256));

class MlaDecodeHeads : public ::testing::TestWithParam<int> {};
TEST_P(MlaDecodeHeads, MatchesReference) {
  run_and_check({{0, 1, 100, 700, 31}, {1, 4, 2, 3, 1}, GetParam(), 64, 0, 12});
}
INSTANTIATE_TEST_SUITE_P(Gpu, MlaDecodeHeads, ::testing::Values(1, 16, 128));

class MlaDecodeQueryTokens : public ::testing::TestWithParam<int> {};
TEST_P(MlaDecodeQueryTokens, MatchesReference) {
  const int n = GetParam();
  run_and_check({{513, 2048, 90, n}, {n, n, n, n}, 16, 64, 0, 13});
}
INSTANTIATE_TEST_SUITE_P(Gpu, MlaDecodeQueryTokens, ::testing::Values(1, 2, 3, 4));

// 1 part (nothing split), a few parts (long sequences cut into several pieces), 1024 parts (one tile each).
class MlaDecodeSplits : public ::testing::TestWithParam<int> {};
TEST_P(MlaDecodeSplits, MatchesReference) {
  run_and_check({{4000, 10, 1, 0, 2500, 77}, {2, 1, 1, 3, 4, 2}, 16, 16, GetParam(), 14});
}
INSTANTIATE_TEST_SUITE_P(Gpu, MlaDecodeSplits, ::testing::Values(1, 5, 1024));

TEST(MlaDecodeGpu, EmptySequencesGiveZerosAndMinusInfinity) { run_and_check({{0, 0, 0}, {1, 2, 4}, 8, 64, 0, 15}); }

TEST(MlaDecodeGpu, ScheduleIsReusedAcrossLayersAndRunsAreIdentical) {
  if (!gpu_available()) GTEST_SKIP() << "no usable GPU: " << gpu_info().reason;
  const Case c{{300, 5000, 2, 64}, {2, 1, 3, 1}, 32, 64, 0, 16};
  Inputs in = make_inputs(c);
  DeviceRun run(in, c);
  cuda::mla_decode_schedule(run.p, nullptr);
  std::vector<int> all = {0, 1, 2, 3};
  for (int layer = 0; layer < 2; ++layer) {  // same schedule, new q (another layer)
    std::mt19937_64 rng(100 + layer);
    for (auto& v : in.q) v = random_bf16(rng);
    copy_bytes(run.q.raw(), Device::CUDA, in.q.data(), Device::CPU, in.q.size() * 2);
    run.poison();
    cuda::mla_decode_attend(run.p, nullptr);
    cuda::mla_decode_combine(run.p, nullptr);
    ASSERT_TRUE(cuda::mla_decode_status(run.p, nullptr).ok());
    EXPECT_EQ(compare_with_reference(in, c, run, all), 0) << "layer " << layer;
  }
  // A second full call on the same inputs must give the same bits (a moving result is a race).
  const std::vector<float> once = DeviceRun::flat(run.out);
  cuda::mla_decode(run.p, nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<float> twice = DeviceRun::flat(run.out);
  EXPECT_EQ(std::memcmp(once.data(), twice.data(), once.size() * 4), 0);
}

TEST(MlaDecodeGpu, BadDeviceMetadataIsReportedAndPoisonsOnlyThatSequence) {
  if (!gpu_available()) GTEST_SKIP() << "no usable GPU: " << gpu_info().reason;
  const Case c{{200, 100, 50}, {1, 2, 1}, 16, 16, 0, 17};
  Inputs in = make_inputs(c);
  in.tables[size_t(1) * in.max_blocks + 2] = in.num_blocks + 5;  // sequence 1 needs its third block
  DeviceRun run(in, c);
  run.poison();
  cuda::mla_decode(run.p, nullptr);
  MlaDecodeStatus s = cuda::mla_decode_status(run.p, nullptr);
  EXPECT_EQ(s.code, MlaDecodeStatus::kBadBlockId) << s.message();
  EXPECT_EQ(s.sequence, 1);
  EXPECT_EQ(s.value, in.num_blocks + 5);
  EXPECT_EQ(compare_with_reference(in, c, run, {0, 2}), 0);
  const std::vector<float> lse1 = DeviceRun::flat(run.lse);
  for (int r = 0; r < 2 * c.heads; ++r) EXPECT_TRUE(std::isnan(lse1[size_t(in.cu_q[1]) * c.heads + r]));

  in.tables[size_t(1) * in.max_blocks + 2] = 0;  // back in range (what it holds does not matter below)

  in.seq_lens[2] = in.max_blocks * c.block_size + 1;  // longer than its block table
  DeviceRun run2(in, c);
  run2.poison();
  cuda::mla_decode(run2.p, nullptr);
  s = cuda::mla_decode_status(run2.p, nullptr);
  EXPECT_EQ(s.code, MlaDecodeStatus::kBadSeqLen) << s.message();
  EXPECT_EQ(s.sequence, 2);
  EXPECT_NE(s.message().find("seq_len"), std::string::npos);
  const std::vector<float> lse = DeviceRun::flat(run2.lse);
  for (int h = 0; h < c.heads; ++h) EXPECT_TRUE(std::isnan(lse[size_t(in.cu_q[2]) * c.heads + h]));
}

}  // namespace
