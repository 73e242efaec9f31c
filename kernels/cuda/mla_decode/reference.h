// The CPU reference the MLA decode kernel is checked against (its test and its workbench share it): one
// sequence's n bf16 query rows over the first `len` cached tokens, through ops::mla_paged_attention in f32.
// When len < n the first n - len rows see no token: o = 0 and lse = -inf, the kernel's contract.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/cuda/mla_decode/config.h"
#include "kernels/ops.h"

namespace mlarun::ops::cuda {

inline void mla_decode_reference_one(const uint16_t* q_bf16, int n, int heads, int len, const Tensor& pool,
                                     const std::vector<int32_t>& table, float scale, Tensor& o, Tensor& lse) {
  constexpr int kD = mla::kHeadDimQK, kDv = mla::kHeadDimV;
  o = Tensor::zeros({n, heads, kDv}, DType::F32);
  lse = Tensor::from_f32({n, heads}, std::vector<float>(size_t(n) * heads, -INFINITY));
  const int k0 = std::max(0, n - len);
  if (k0 == n) return;
  Tensor q = Tensor::empty({n - k0, heads, kD}, DType::F32);
  convert_to_f32(q_bf16 + size_t(k0) * heads * kD, DType::BF16, q.data<float>(), size_t(n - k0) * heads * kD);
  Tensor part_lse;
  const Tensor part = ops::mla_paged_attention(q, pool, table, kDv, scale, len - n + k0, &part_lse);
  std::memcpy(o.data<float>() + size_t(k0) * heads * kDv, part.data<float>(), part.nbytes());
  std::memcpy(lse.data<float>() + size_t(k0) * heads, part_lse.data<float>(), part_lse.nbytes());
}

}  // namespace mlarun::ops::cuda
