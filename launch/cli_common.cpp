// Shared model options and session set-up (see cli_common.h).
#include "launch/cli_common.h"

#include <chrono>
#include <cstdio>
#include <iostream>

#include "launch/distributed.h"
#include "runtime/device.h"
#include "runtime/error.h"

namespace mlarun::cli {

void add_model_options(CLI::App& cmd, ModelOptions& o) {
  cmd.add_option("--model", o.model_dir, "Hugging Face checkpoint directory (config.json + safetensors)")->required();
  cmd.add_option("--device", o.device, "auto, cpu or cuda (auto: cuda when a GPU exists; cuda runs in bf16)");
  cmd.add_option("--tp,--tensor-parallel-size", o.runtime.tp, "Tensor-parallel ranks (run under mpirun -np N)");
  cmd.add_option("--comm", o.comm, "Communicator: auto, nccl, mpi or single");
  cmd.add_option("--block-size", o.runtime.block_size, "Tokens per cache block, 1 to 256");
  cmd.add_option("--num-blocks", o.runtime.num_blocks, "Cache blocks per layer (default: sized from memory)");
  o.max_seq_len_option = cmd.add_option("--max-seq-len,--max-model-len", o.runtime.max_seq_len,
                                        "Longest prompt + generation (default: min(4096, the model's))");
  cmd.add_option("--max-batch-size,--max-num-seqs", o.runtime.max_batch_size, "Sequences per step");
  cmd.add_option("--max-num-batched-tokens", o.runtime.max_num_batched_tokens, "Tokens per step (prefill chunks)");
  cmd.add_option("--gpu-memory-utilization", o.runtime.gpu_memory_utilization, "Fraction of GPU memory to use");
  cmd.add_flag("--no-prefix-caching", o.no_prefix_caching, "Do not share cached prompt prefixes between requests");
}

std::vector<int32_t> parse_id_list(const std::string& text, const std::string& option) {
  std::vector<int32_t> ids;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    std::string item = text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || errno != 0 || v < 0 || v > INT32_MAX)
      fail("option ", option, ": '", item, "' is not a token id (expected comma-separated non-negative integers)");
    ids.push_back(int32_t(v));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return ids;
}

Device resolve_device(const std::string& device) {
  if (device != "auto" && device != "cpu" && device != "cuda")
    fail("option --device: value '", device, "': expected auto, cpu or cuda");
  if (device == "cpu") return Device::CPU;
  if (device == "auto") return gpu_available() ? Device::CUDA : Device::CPU;
  MLARUN_CHECK(gpu_available(), "option --device: value cuda: no usable GPU (", gpu_info().reason,
               "); use --device cpu");
  return Device::CUDA;
}

Session open_session(ModelOptions& o, bool prefix_caching) {
  o.runtime.device = resolve_device(o.device);
  Session s;
  s.comm = make_session_communicator(o.comm, o.runtime.tp);
  ModelConfig config = load_model_config_from_dir(o.model_dir);
  if (o.max_seq_len_option->count() == 0) o.runtime.max_seq_len = std::min<int64_t>(4096, config.max_seq_len);
  const auto load_start = std::chrono::steady_clock::now();
  LoadProgress progress;
  if (s.is_driver())
    progress = [load_start, last = load_start](int64_t done, int64_t total) mutable {
      // One line, rewritten at most twice a second, and the final count.
      auto now = std::chrono::steady_clock::now();
      if (done < total && now - last < std::chrono::milliseconds(500)) return;
      last = now;
      std::fprintf(stderr, "\rmlarun: loading weights: layer %lld/%lld (%.1f s)%s", (long long)done, (long long)total,
                   std::chrono::duration<double>(now - load_start).count(), done == total ? "\n" : "");
    };
  s.runner = std::make_unique<DeepseekRunner>(o.model_dir, o.runtime, *s.comm, progress);
  const CacheCapacity& cap = s.runner->capacity();
  s.scheduler.max_num_seqs = o.runtime.max_batch_size;
  s.scheduler.max_num_batched_tokens = o.runtime.max_num_batched_tokens;
  s.scheduler.max_model_len = o.runtime.max_seq_len;
  s.scheduler.block_size = cap.block_size;
  s.scheduler.num_blocks = cap.num_blocks;
  s.scheduler.enable_prefix_caching = prefix_caching && !o.no_prefix_caching;
  s.scheduler.eos_token_id = int32_t(config.eos_token_id);
  if (s.is_driver()) {
    const std::string where = o.runtime.device == Device::CUDA ? "cuda (" + gpu_name() + ", bf16)" : "cpu (f32)";
    std::fprintf(stderr, "mlarun: %s on %s, tp %d (%s); latent cache: %lld blocks x %lld tokens = %lld tokens (%.1f MiB)\n",
                 o.model_dir.c_str(), where.c_str(), s.comm->world_size(), s.comm->backend(), (long long)cap.num_blocks,
                 (long long)cap.block_size, (long long)cap.tokens(),
                 double(cap.num_blocks * cap.bytes_per_block) / (1 << 20));
    std::fprintf(stderr, "mlarun: maximum concurrency for %lld tokens per request: %.2fx\n",
                 (long long)o.runtime.max_seq_len, cap.max_concurrency(o.runtime.max_seq_len));
  }
  return s;
}

}  // namespace mlarun::cli
