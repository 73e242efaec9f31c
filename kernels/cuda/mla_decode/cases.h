// One MLA decode case as its GPU test (tests/kernels/test_gpu_mla_decode.cpp) and its workbench
// (kernels/bench/bench_mla_decode.cu) both build and check it, so the two cannot drift apart. Inputs are hostile
// on purpose: fresh random q and cache rows (never zeros), NaN in every unused cache slot, blocks handed out from
// a shuffled pool with spare blocks, an id far outside the pool in unused block-table entries, outputs poisoned
// before a run. The comparison is per sequence against reference.h (ops::mla_paged_attention in f32 on the same
// bf16 values), over that sequence's blocks only, so a cache of gigabytes is never converted whole. A quantized
// case (Case::format fp8/int8) quantizes each row with the CPU's bit-exact quantizer (kernels/kv_quant.h) and the
// reference reads the same rows dequantized by the CPU.
// Plain C++: the test is a .cpp file.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cuda/mla_decode/config.h"
#include "kernels/cuda/mla_decode/mla_decode.h"
#include "kernels/cuda/mla_decode/reference.h"
#include "kernels/kv_quant.h"
#include "runtime/cuda_check.h"
#include "runtime/device.h"
#include "runtime/dtype.h"
#include "runtime/tensor.h"

namespace mlarun::ops::cuda::mla {

constexpr float kCaseScale = 0.0721687836f;  // 1/sqrt(192), DeepSeek's pre-absorption scale
// Tolerances of the comparison: per element |out - ref| <= kOutRel * |ref| + kOutAbs, |lse - ref| <= kLseAbs +
// kLseRel * |ref| (an -inf reference must be matched exactly), and the relative L2 error of out below kMaxRelL2.
constexpr double kOutRel = 8e-3, kOutAbs = 1e-4, kLseAbs = 2e-4, kLseRel = 2e-5, kMaxRelL2 = 5e-3;
// The tensor-core kernels round P (quantized rows: p times the token's scale) to bf16 for P.V: each is off by at
// most 2^-9 of itself, so an output element (a p-weighted mean of values in [-1, 1]) by at most 2^-9; twice that
// is added to its absolute tolerance.
constexpr double kOutAbsBf16P = 2.0 / 512;

struct Case {
  std::vector<int> seq_lens, q_lens;  // per sequence: cached tokens (new ones included) and query tokens
  int heads = 16, block_size = 64, num_sms = 0;  // num_sms 0: the device's
  uint64_t seed = 1;
  MlaKvFormat format = MlaKvFormat::Bf16;
  AttendKernel attend = AttendKernel::Simt;  // MlaDecodeParams::attend
  int l2_prefetch_tiles = 0;                 // MlaDecodeParams::l2_prefetch_tiles
  bool codes_in_registers = false;           // MlaDecodeParams::codes_in_registers
  // Magnitudes far from 1 when m > 0: sequence b's cached rows times 2^(m (b % 3 - 1)) and its q rows times the
  // inverse (scores stay as they were), each 32-token tile's rows also times 2^(4 ((t / 32) % 3 - 1)).
  int magnitude_exp = 0;
};

// 16-bit words of one cached row in the case's format (a quantized row's 656 bytes are 328 words).
inline int row_words(MlaKvFormat f) { return f == MlaKvFormat::Bf16 ? kHeadDimQK : kQuantRowBytes / 2; }
// The CPU's format for a quantized case's pool (what kv_cache_format reads from a byte pool under bf16 q).
inline KvCacheFormat cpu_format(MlaKvFormat f) {
  return kv_cache_format(f == MlaKvFormat::Fp8 ? DType::F8_E4M3 : DType::I8, DType::BF16, kKvLoraRank, kRopeDim);
}

struct SplitMix {  // fast enough to fill a 1 GB cache in about a second
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  uint16_t bf16() { return float_to_bf16(float(next() >> 40) * (2.0f / 16777216.0f) - 1.0f); }  // U(-1, 1)
};

// Host inputs of one case: bf16 q [num_tokens, heads, 576] and pool [num_blocks, block_size, row_words], int32
// tables.
struct Inputs {
  std::vector<uint16_t> q, pool;
  std::vector<int32_t> tables, seq_lens, cu_q;
  int num_blocks = 0, max_blocks = 1, num_tokens = 0, max_q = 1;
};

inline Inputs make_inputs(const Case& c) {
  constexpr int kD = kHeadDimQK;
  SplitMix rng{c.seed};
  Inputs in;
  const int batch = int(c.seq_lens.size()), bs = c.block_size;
  int used = 0;
  for (int b = 0; b < batch; ++b) {
    in.max_blocks = std::max(in.max_blocks, (c.seq_lens[b] + bs - 1) / bs);
    in.max_q = std::max(in.max_q, c.q_lens[b]);
    used += (c.seq_lens[b] + bs - 1) / bs;
  }
  in.num_blocks = used + used / 50 + 3;  // spare blocks stay NaN
  std::vector<int32_t> ids(size_t(in.num_blocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), std::mt19937_64(c.seed));
  const int words = row_words(c.format);
  const bool quantized = c.format != MlaKvFormat::Bf16;
  // Unused slots read NaN: bf16 NaN, or all-ones bytes (NaN scales) in a quantized row.
  in.pool.assign(size_t(in.num_blocks) * bs * words, quantized ? uint16_t(0xffff) : uint16_t(0x7fc0));
  std::vector<float> values(kD);
  in.tables.assign(size_t(batch) * in.max_blocks, 2147480000);
  in.cu_q.push_back(0);
  int next = 0;
  for (int b = 0; b < batch; ++b) {
    int32_t* table = in.tables.data() + size_t(b) * in.max_blocks;
    for (int j = 0; j < (c.seq_lens[b] + bs - 1) / bs; ++j) table[j] = ids[size_t(next++)];
    const int seq_exp = c.magnitude_exp * (b % 3 - 1);
    for (int t = 0; t < c.seq_lens[b]; ++t) {
      uint16_t* row = in.pool.data() + (size_t(table[t / bs]) * bs + t % bs) * words;
      const float f = std::ldexp(1.0f, c.magnitude_exp > 0 ? seq_exp + 4 * ((t / 32) % 3 - 1) : 0);  // exact
      if (!quantized) {
        for (int d = 0; d < kD; ++d) row[d] = float_to_bf16(bf16_to_float(rng.bf16()) * f);
        continue;
      }
      for (int d = 0; d < kD; ++d) values[size_t(d)] = bf16_to_float(rng.bf16()) * f;
      kvq::quantize_row(values.data(), cpu_format(c.format), reinterpret_cast<uint8_t*>(row));
    }
    in.seq_lens.push_back(c.seq_lens[b]);
    in.cu_q.push_back(in.cu_q.back() + c.q_lens[b]);
  }
  in.num_tokens = in.cu_q.back();
  in.q.resize(size_t(in.num_tokens) * c.heads * kD);
  for (auto& v : in.q) v = rng.bf16();
  for (int b = 0; b < batch && c.magnitude_exp > 0; ++b) {
    const float f = std::ldexp(1.0f, -c.magnitude_exp * (b % 3 - 1));
    for (size_t i = size_t(in.cu_q[size_t(b)]) * c.heads * kD; i < size_t(in.cu_q[size_t(b) + 1]) * c.heads * kD; ++i)
      in.q[i] = float_to_bf16(bf16_to_float(in.q[i]) * f);
  }
  return in;
}

template <typename T>
Tensor upload(const std::vector<T>& host, DType dtype) {
  Tensor t = Tensor::empty({int64_t(host.size())}, dtype, Device::CUDA);
  copy_bytes(t.raw(), Device::CUDA, host.data(), Device::CPU, host.size() * sizeof(T));
  return t;
}

// Device copies of one case's inputs, its outputs and workspace, and the params that point at them.
struct DeviceRun {
  Tensor q, pool, tables, seq_lens, cu_q, out, lse, workspace;
  MlaDecodeParams p;
  DeviceRun(const Inputs& in, const Case& c) {
    q = upload(in.q, DType::BF16), pool = upload(in.pool, DType::BF16), tables = upload(in.tables, DType::I32);
    seq_lens = upload(in.seq_lens, DType::I32), cu_q = upload(in.cu_q, DType::I32);
    out = Tensor::empty({in.num_tokens, c.heads, kHeadDimV}, DType::BF16, Device::CUDA);
    lse = Tensor::empty({in.num_tokens, c.heads}, DType::F32, Device::CUDA);
    p.q = q.data<uint16_t>(), p.kv_cache = pool.raw(), p.block_tables = tables.data<int32_t>();
    p.kv_format = c.format;
    p.attend = c.attend;
    p.l2_prefetch_tiles = c.l2_prefetch_tiles;
    p.codes_in_registers = c.codes_in_registers;
    p.seq_lens = seq_lens.data<int32_t>(), p.cu_seqlens_q = cu_q.data<int32_t>();
    p.out = out.data<uint16_t>(), p.lse = lse.data<float>();
    p.num_tokens = in.num_tokens, p.batch = int(in.seq_lens.size()), p.num_heads = c.heads;
    p.kv_lora_rank = kKvLoraRank, p.rope_dim = kRopeDim, p.num_blocks = in.num_blocks, p.block_size = c.block_size;
    p.max_blocks_per_seq = in.max_blocks, p.max_q_per_seq = in.max_q, p.softmax_scale = kCaseScale;
    p.num_sms = c.num_sms > 0 ? c.num_sms : current_device_sm_count();
    p.workspace_bytes = mla_decode_workspace_bytes(p.batch, p.num_heads, p.max_q_per_seq, p.num_sms);
    workspace = Tensor::empty({int64_t(p.workspace_bytes / 4 + 1)}, DType::F32, Device::CUDA);
    p.workspace = workspace.raw();
  }
  // NaN in every output element, so an element the kernels never write fails the comparison.
  void poison() {
    MLARUN_CUDA_CHECK(cudaMemset(out.raw(), 0xff, out.nbytes()));
    MLARUN_CUDA_CHECK(cudaMemset(lse.raw(), 0xff, lse.nbytes()));
  }
  // Poisons, runs the whole call and returns the device-side status.
  MlaDecodeStatus run_whole_call() {
    poison();
    mla_decode(p, nullptr);
    return mla_decode_status(p, nullptr);
  }
  static std::vector<float> flat(const Tensor& t) {
    Tensor h = t.to(Device::CPU).to_dtype(DType::F32);
    return std::vector<float>(h.data<float>(), h.data<float>() + h.numel());
  }
};

struct Comparison {
  double rel_l2 = 0, max_abs = 0, max_lse = 0;
  int64_t bad = 0;                      // elements (out or lse) outside the tolerance
  std::vector<std::string> first_bad;   // the first few of them, described
  bool ok() const { return bad == 0 && rel_l2 < kMaxRelL2; }
};

// Compares the device results of sequences `seqs` with the CPU reference.
inline Comparison compare_with_reference(const Inputs& in, const Case& c, const DeviceRun& run,
                                         const std::vector<int>& seqs) {
  constexpr int kD = kHeadDimQK, kDv = kHeadDimV;
  const std::vector<float> out = DeviceRun::flat(run.out), lse = DeviceRun::flat(run.lse);
  Comparison r;
  auto note = [&](const std::string& what) {
    if (r.bad++ < 5) r.first_bad.push_back(what);
  };
  double err2 = 0, ref2 = 0;
  for (int b : seqs) {
    const int q0 = in.cu_q[size_t(b)], n = in.cu_q[size_t(b) + 1] - q0, len = in.seq_lens[size_t(b)];
    const int nblk = (len + c.block_size - 1) / c.block_size;
    // The sequence's blocks gathered into a compact f32 pool (its table becomes 0..nblk-1), quantized rows read
    // back by the CPU's dequantizer.
    const int words = row_words(c.format);
    Tensor pool = Tensor::empty({std::max(nblk, 1), c.block_size, kD}, DType::F32);
    for (int j = 0; j < nblk; ++j) {
      const uint16_t* block = in.pool.data() + size_t(in.tables[size_t(b) * in.max_blocks + j]) * c.block_size * words;
      float* dst = pool.data<float>() + size_t(j) * c.block_size * kD;
      if (c.format == MlaKvFormat::Bf16) {
        convert_to_f32(block, DType::BF16, dst, size_t(c.block_size) * kD);
        continue;
      }
      for (int t = 0; t < c.block_size; ++t)
        kvq::dequantize_row(reinterpret_cast<const uint8_t*>(block + size_t(t) * words), cpu_format(c.format),
                            dst + size_t(t) * kD);
    }
    // The absolute tolerances are for values in [-1, 1]: they scale with the sequence's largest latent value.
    double magnitude = 1;
    for (int t = 0; t < len; ++t) {
      const float* row = pool.data<float>() + size_t(t) * kD;  // blocks of the compact pool are consecutive
      for (int d = 0; d < kDv; ++d) magnitude = std::max(magnitude, double(std::fabs(row[d])));
    }
    std::vector<int32_t> table(static_cast<size_t>(nblk));
    std::iota(table.begin(), table.end(), 0);
    Tensor ref, ref_lse;
    mla_decode_reference_one(in.q.data() + size_t(q0) * c.heads * kD, n, c.heads, len, pool, table, kCaseScale, ref,
                             ref_lse);
    for (int64_t i = 0; i < ref.numel(); ++i) {
      const double want = ref.data<float>()[i], got = out[size_t(q0) * c.heads * kDv + size_t(i)];
      const double e = std::fabs(got - want);
      err2 += e * e, ref2 += want * want;
      r.max_abs = std::max(r.max_abs, std::isnan(e) ? INFINITY : e);
      const double abs_tol = (kOutAbs + (c.attend != AttendKernel::Simt ? kOutAbsBf16P : 0.0)) * magnitude;
      if (!(e <= kOutRel * std::fabs(want) + abs_tol)) {
        std::ostringstream os;
        os << "seq " << b << " row " << i / kDv << " col " << i % kDv << ": got " << got << " want " << want;
        note(os.str());
      }
    }
    for (int64_t i = 0; i < ref_lse.numel(); ++i) {
      const float want = ref_lse.data<float>()[i], got = lse[size_t(q0) * c.heads + size_t(i)];
      const double e = std::isinf(want) ? (got == want ? 0.0 : INFINITY) : std::fabs(double(got) - want);
      r.max_lse = std::max(r.max_lse, std::isnan(e) ? INFINITY : e);
      if (!(e <= kLseAbs + kLseRel * std::fabs(want))) {
        std::ostringstream os;
        os << "seq " << b << " row " << i << ": lse " << got << " want " << want;
        note(os.str());
      }
    }
  }
  r.rel_l2 = ref2 > 0 ? std::sqrt(err2 / ref2) : 0.0;
  return r;
}

}  // namespace mlarun::ops::cuda::mla
