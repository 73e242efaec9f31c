// RuntimeOptions: how a model is run (not what it is), in one struct built once per process and read by every
// layer that needs it: the device and tensor-parallel size, the paged cache (block size, block count, memory
// fraction, cache dtype), the scheduler's budgets (sequences and tokens per step, longest request), prefix
// caching and the end-of-sequence token. Field and option names follow vLLM's engine arguments. Validated like
// the model config, with errors naming the command-line option and the value.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/tensor.h"

namespace mlarun {

struct ModelConfig;

// --kv-cache-dtype. Auto: the model's activation dtype (f32 on the CPU, bf16 on a GPU); Bf16: bf16 values (on the
// CPU too); Fp8 / Int8: the quantized latent rows of docs/layouts.md §1.1 (kernels/kv_quant.h), read dequantized.
enum class KvCacheDtype { Auto, Bf16, Fp8, Int8 };
KvCacheDtype parse_kv_cache_dtype(const std::string& text);  // throws naming --kv-cache-dtype and the value
const char* kv_cache_dtype_name(KvCacheDtype t);

// Bytes of one quantized latent row (fp8 or int8): kv_lora_rank one-byte values, one f32 scale per tile of 128
// (the last tile may be shorter), then the rope dims in bf16. 656 for DeepSeek-V2/V3 (512, 64). `head` > 0: the
// values are heads of `head` values each tiled on its own (the baselines' K and V heads, rope 0): head +
// 4 * ceil(head / 128) bytes a head.
int64_t kv_quant_row_bytes(int64_t kv_lora_rank, int64_t rope_dim, int64_t head = 0);

// How one layer's cache pool stores a token: the pool tensor is [blocks, block_size, width] of `dtype`. For fp8
// and int8 it is a byte pool (dtype F8_E4M3 or I8, width = row bytes); otherwise width = kv_lora_rank + rope.
struct KvCacheStorage {
  DType dtype = DType::F32;
  int64_t width = 0;
  int64_t row_bytes() const { return width * int64_t(dtype_size(dtype)); }
};
// `model_dtype`: the activations' dtype on that device (f32 on the CPU, bf16 on a GPU), what Auto stores. `head`
// as for kv_quant_row_bytes (the values a layer's cache_format() names).
KvCacheStorage kv_cache_storage(KvCacheDtype t, DType model_dtype, int64_t kv_lora_rank, int64_t rope_dim,
                                int64_t head = 0);

struct RuntimeOptions {
  Device device = Device::CPU;             // --device: cpu (the f32 reference) or cuda (bf16 weights and cache)
  int64_t tp = 1;                          // --tensor-parallel-size (--tp): ranks
  // --decode-context-parallel-size (--dcp): ranks of one group sharing each sequence's latent cache by token
  // (docs/layouts.md §2.6); divides tp. 1: every rank holds the whole cache.
  int64_t decode_context_parallel_size = 1;
  int64_t block_size = 64;                 // --block-size: tokens per cache block of ONE rank, 1..256
  int64_t num_blocks = -1;                 // --num-gpu-blocks-override (--num-blocks): cache blocks; -1: from memory
  double gpu_memory_utilization = 0.9;     // --gpu-memory-utilization: fraction of GPU memory to use, (0, 1]
  KvCacheDtype kv_cache_dtype = KvCacheDtype::Auto;  // --kv-cache-dtype
  int64_t max_num_seqs = 256;              // --max-num-seqs (--max-batch-size): sequences per step
  int64_t max_num_batched_tokens = 8192;   // --max-num-batched-tokens: tokens per step, prefill chunks and decodes
  int64_t max_model_len = 4096;            // --max-model-len (--max-seq-len): prompt + completion tokens at most
  // --prefill-context-piece-tokens: MLA's naive prefill holds K/V for at most this many context tokens of a step
  // at once, attending longer contexts piece by piece (docs/model.md §2.4)
  int64_t prefill_context_piece_tokens = 8192;
  // --mla-absorbed-max-tokens: a prefill chunk of at most this many new tokens takes MLA's absorbed path when it
  // does less work there (runtime/mla_path_rule.h; docs/model.md §2.6); 1: decode only; -1 (auto): the device's
  // default, mla_absorbed_max_tokens_on_device()
  int64_t mla_absorbed_max_tokens = -1;
  // --moe-capacity-max-tokens: steps of at most this many tokens run the routed experts in the capacity layout
  // (model/mlp.h MoeLayout: sized by the step alone, no host copy, CUDA-graph capturable); 0: never; -1 (auto):
  // moe_capacity_max_tokens_on_device()
  int64_t moe_capacity_max_tokens = -1;
  bool enable_prefix_caching = true;       // --enable-prefix-caching / --no-enable-prefix-caching
  // --enforce-eager: every step runs op by op; otherwise decode steps on the GPU replay CUDA graphs, one per
  // batch-size bucket (engine/decode_graphs.h)
  bool enforce_eager = false;
  int32_t eos_token_id = -1;               // the model's end-of-sequence token (set from its config); -1: none

  static constexpr int64_t kMaxBlockSize = 256;

  // The one place the group's block is defined: the scheduler, the block manager and the engine's block tables
  // and slots count "virtual" blocks of block_size * decode_context_parallel_size tokens, of which each rank of a
  // DCP group stores every N-th token (block_size of them) in its own physical block of the same id.
  int64_t scheduler_block_size() const { return block_size * decode_context_parallel_size; }
  // --mla-absorbed-max-tokens as this device runs it: the value given, or for auto the longest chunk the device's
  // absorbed kernel serves well (CUDA: kMlaAbsorbedMaxTokensCuda; the CPU: kMlaAbsorbedMaxTokensCpu).
  int64_t mla_absorbed_max_tokens_on_device() const;
  // CUDA: an absorbed chunk reaches mla_decode cut into pseudo-sequences of at most 4 rows (StepPart::decode_view_*).
  // `bench prefill` on an H200 (config_16B, 1 layer, batch 8) measured that path faster than the naive one for every
  // chunk of 2..128 tokens after 1024 and 4096 cached (docs/model.md §2.6), the same bound as the CPU's; the cost
  // model stops it near 160 anyway.
  static constexpr int64_t kMlaAbsorbedMaxTokensCuda = 128;
  // The CPU: the f32 reference ops, where `bench prefill` measured the cost model's crossing (docs/model.md §2.6).
  static constexpr int64_t kMlaAbsorbedMaxTokensCpu = 128;
  // --moe-capacity-max-tokens as this device runs it: the value given, or for auto kMoeCapacityMaxTokensCuda /
  // kMoeCapacityMaxTokensCpu.
  int64_t moe_capacity_max_tokens_on_device() const;
  // The same for any `value` of the option on `device` (-1, the default: kMoeCapacityMaxTokensCuda / ...Cpu).
  static int64_t moe_capacity_max_tokens_for(Device device, int64_t value = -1) {
    if (value != -1) return value;
    return device == Device::CUDA ? kMoeCapacityMaxTokensCuda : kMoeCapacityMaxTokensCpu;
  }
  // CUDA: the capacity layout computes (local experts) x T rows where the compact one computes top_k x T, but its
  // batched products read each expert's weights once, as the compact ones do; at T rows per expert they stay
  // under H100's ridge (~295 bf16 FLOP per byte) up to about 128 tokens, so they cost the weight reads alone. On
  // an H200 (config_16B's MoE, 2 layers) the capacity layout's MoE took 0.36 ms against the compact one's 1.27 ms
  // at batch 8, and 0.82 against 2.38 ms at batch 64 (`bench decode --moe-capacity-max-tokens 0` against -1).
  static constexpr int64_t kMoeCapacityMaxTokensCuda = 128;
  // The CPU computes every row it is given (no weight-read bound to hide under): never.
  static constexpr int64_t kMoeCapacityMaxTokensCpu = 0;

  void validate() const;                          // throws naming the option
  void validate_for(const ModelConfig& m) const;  // also: the model splits over tp ranks (and DCP groups)
};

}  // namespace mlarun
