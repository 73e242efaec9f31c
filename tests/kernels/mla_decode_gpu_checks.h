// What the MLA decode GPU tests share (tests/kernels/test_gpu_mla_decode*.cpp): params that pass every check
// without pointing at real memory, one case run end to end and compared with the CPU reference
// (kernels/cuda/mla_decode/cases.h), and the batch of mixed lengths most cases use.
#pragma once

#include <gtest/gtest.h>

#include <numeric>
#include <string>
#include <vector>

#include "kernels/cuda/mla_decode/cases.h"
#include "kernels/cuda/mla_decode/mla_decode.h"
#include "runtime/device.h"

namespace mlarun::ops::cuda::mla_test {

namespace mla = mlarun::ops::cuda::mla;
using mla::Case;
using mla::DeviceRun;
using mla::Inputs;

alignas(256) inline unsigned char g_fake[512];  // never dereferenced: only its address is checked

inline MlaDecodeParams fake_params() {
  MlaDecodeParams p;
  p.q = p.out = reinterpret_cast<uint16_t*>(g_fake);
  p.kv_cache = g_fake;
  p.block_tables = p.seq_lens = p.cu_seqlens_q = reinterpret_cast<int32_t*>(g_fake);
  p.lse = reinterpret_cast<float*>(g_fake);
  p.workspace = g_fake;
  p.num_tokens = 6, p.batch = 4, p.num_heads = 16, p.kv_lora_rank = 512, p.rope_dim = 64;
  p.num_blocks = 100, p.block_size = 64, p.max_blocks_per_seq = 10, p.max_q_per_seq = 2, p.num_sms = 132;
  p.softmax_scale = mla::kCaseScale;
  p.workspace_bytes = cuda::mla_decode_workspace_bytes(p.batch, p.num_heads, p.max_q_per_seq, p.num_sms);
  return p;
}

// Compares the GPU results of sequences `check` with the CPU reference; every bad element fails the test.
inline void expect_matches_reference(const Inputs& in, const Case& c, const DeviceRun& run,
                                     const std::vector<int>& check) {
  const mla::Comparison r = mla::compare_with_reference(in, c, run, check);
  std::string first;
  for (const std::string& line : r.first_bad) first += "\n  " + line;
  EXPECT_EQ(r.bad, 0) << "elements outside the tolerance, the first:" << first;
  EXPECT_LT(r.rel_l2, mla::kMaxRelL2) << "relative L2 error of out";
}

inline void run_and_check(const Case& c) {
  if (!gpu_available()) GTEST_SKIP() << "no usable GPU: " << gpu_info().reason;
  const Inputs in = mla::make_inputs(c);
  DeviceRun run(in, c);
  const MlaDecodeStatus status = run.run_whole_call();
  ASSERT_TRUE(status.ok()) << status.message();
  std::vector<int> all(in.seq_lens.size());
  std::iota(all.begin(), all.end(), 0);
  expect_matches_reference(in, c, run, all);
}

inline const std::vector<int> kLens = {0, 1, 33, 257, 1000, 64, 5};
inline const std::vector<int> kQLens = {1, 2, 3, 4, 1, 2, 4};  // includes L < n (seq 1) and L = 0 (seq 0)

}  // namespace mlarun::ops::cuda::mla_test
