// Helpers for the tests of models built from random weights: a tiny DeepSeek config (MoE, YaRN, 8 heads) and a
// communicator that plays one rank of a tensor-parallel group without talking to the others (tests sum the
// ranks' partial outputs themselves).
#pragma once

#include <cmath>
#include <vector>

#include "bench/random_weights.h"
#include "parallel/communicator.h"
#include "runtime/error.h"
#include "runtime/model_config.h"
#include "runtime/tensor.h"
#include "test_util.h"  // max_abs_diff

namespace mlarun::testing {

inline ModelConfig tiny_random_config() {
  ModelConfig c;
  c.vocab_size = 64;
  c.dim = 32;
  c.inter_dim = 48;
  c.moe_inter_dim = 16;
  c.n_layers = 2;
  c.n_dense_layers = 1;
  c.n_heads = 8;
  c.n_routed_experts = 4;
  c.n_shared_experts = 1;
  c.n_activated_experts = 2;
  c.q_lora_rank = 0;
  c.kv_lora_rank = 16;
  c.qk_nope_head_dim = 8;
  c.qk_rope_head_dim = 4;
  c.v_head_dim = 8;
  c.max_seq_len = 256;
  c.original_seq_len = 64;
  c.rope_factor = 4;
  c.source = "tiny test config";
  c.format = "deepseek";
  c.validate();
  return c;
}

// Rank `rank` of `world`, with collectives that leave the local values alone.
class LoneRankCommunicator final : public Communicator {
 public:
  LoneRankCommunicator(int rank, int world) : rank_(rank), world_(world) {}
  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  const char* backend() const override { return "lone-rank test"; }
  void all_reduce_sum(Tensor&) override {}
  Tensor all_gather_last_dim(const Tensor& local) override { return local; }
  void broadcast(void*, size_t, int) override {}
  void barrier() override {}
  [[noreturn]] void abort_all(const std::string& message, int) override { fail(message); }

 private:
  int rank_, world_;
};

// rows x cols f32 of bench's deterministic normal values (stream `seed`).
inline Tensor random_rows(int64_t rows, int64_t cols, uint64_t seed) {
  Tensor t = Tensor::empty({rows, cols}, DType::F32);
  random_normal_values(seed, 0, t.data<float>(), t.numel());
  return t;
}

inline float max_abs(const Tensor& a) {
  float m = 0;
  for (int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::fabs(a.data<float>()[i]));
  return m;
}

}  // namespace mlarun::testing
