// DecodeGraphs: decode steps replayed from CUDA graphs, one per batch-size bucket, as vLLM and SGLang run them.
// A decode step of a DeepSeek model is a few hundred small kernels per layer-stack; at small batches their launch
// overhead on the host exceeds their GPU time, and one graph launch replaces them all.
//
// A step qualifies when every sequence decodes one token on MLA's absorbed path with its logits in batch order,
// the sequences fit the largest bucket, and the model runs them without a host round trip (the MoE's capacity
// layout, model/mlp.h). It is padded to its bucket with sequences that write nothing (slot -1) and read one cached
// row of block 0; its index data goes into the bucket's fixed step buffer (StepTensors::build_fixed: same sizes,
// same addresses every step), then the bucket's graph replays everything up to the final norm, and the LM head
// runs eagerly on the real rows (so no bucket holds a [bucket, vocab] logits buffer). A bucket is captured on its
// first step: one eager warm-up on the graph stream, the capture, then the replay. A capture that fails (the step
// did something a graph cannot hold) leaves that bucket eager for good, with one note on stderr.
//
// The graph stream is a blocking stream, so it orders itself with the legacy default stream (every other step's
// work, the uploads, the sampler) both ways without events. What a graph allocates comes from the caching
// allocator on that stream, which no other stream's work reuses: the graphs' private pool (runtime/cuda_graph.h),
// retained through empty_cache and out-of-memory retries (DeviceAllocator::retain_cached) because the graphs keep
// writing into it.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model/deepseek_model.h"
#include "runtime/cuda_graph.h"
#include "runtime/device.h"
#include "runtime/forward_batch.h"
#include "runtime/step_tensors.h"

namespace mlarun {

struct DecodeGraphSettings {
  static constexpr int64_t kMaxBatch = 256;  // the largest bucket the runner asks for (vLLM's default too)
  int64_t max_batch = 0;     // the largest bucket; 0: no graphs
  int64_t block_size = 0;    // tokens per cache block (this rank's)
  int64_t num_blocks = 0;    // blocks in the cache
  int64_t table_blocks = 0;  // block-table columns of every graph's step: the longest sequence's blocks
};

// The batch sizes graphs are captured for: 1, 2, 4, 8, then every 8 up to max_batch, and max_batch itself.
std::vector<int64_t> decode_graph_buckets(int64_t max_batch);
// The smallest bucket of at least `sequences`; 0 when there is none.
int64_t decode_graph_bucket(const std::vector<int64_t>& buckets, int64_t sequences);
// Why `batch` cannot be replayed from a decode graph ("" when it can, as far as the batch's shape goes): it must
// be sequences of one new token each on the absorbed path, with logit rows 0 .. S-1 in order.
std::string decode_graph_unfit(const ForwardBatch& batch);
// `batch` grown to `sequences` sequences by padding ones: token 0 at position 0 writing no cache slot (-1),
// block table {0}, logits at their rows too. The real rows keep their indices.
ForwardBatch pad_decode_batch(const ForwardBatch& batch, int64_t sequences);

class DecodeGraphs {
 public:
  // `model` (MLA layers: a baseline attention's shapes may follow the context lengths), `cache` and `comm`
  // outlive this object.
  DecodeGraphs(const DeepseekModel& model, std::vector<Tensor>& cache, const Communicator& comm,
               DecodeGraphSettings settings);
  // Waits for the last replay, drops the graphs, then gives their stream's cached blocks back to the driver.
  ~DecodeGraphs();
  DecodeGraphs(const DecodeGraphs&) = delete;
  DecodeGraphs& operator=(const DecodeGraphs&) = delete;
  // The f32 logits [S, vocab] of a decode step replayed from its bucket's graph; an undefined tensor when the
  // step runs eagerly instead (it does not qualify, or its bucket could not be captured).
  Tensor run(const ForwardBatch& batch, HostStaging& staging);
  // Why run() would take `batch` eagerly ("" when it replays or captures a graph).
  std::string unfit(const ForwardBatch& batch) const;
  // One line for the start-up log: "off (reason)", or the buckets a decode step may replay from.
  std::string describe() const;

  const std::vector<int64_t>& buckets() const { return buckets_; }
  int64_t captures() const { return captures_; }  // graphs captured so far
  int64_t replays() const { return replays_; }    // steps replayed from a graph so far

 private:
  struct Graph {
    CudaGraph graph;
    FixedStepBuffer step_buffer;  // the step's packed index data, at the same address every step
    StepTensors step;    // views into step_buffer
    Tensor hidden;       // [bucket, dim]: the final-normed rows the graph writes
    bool failed = false;
  };
  bool capture(Graph& g, const ForwardBatch& padded, int64_t bucket);
  bool moe_capturable(int64_t bucket) const;  // its MoE layers (if any) run without a host copy at this size

  const DeepseekModel& model_;
  std::vector<Tensor>& cache_;
  DecodeGraphSettings settings_;
  std::vector<int64_t> buckets_;
  std::string off_reason_;  // why no step may use a graph ("" when they may)
  std::map<int64_t, std::unique_ptr<Graph>> graphs_;
  std::unique_ptr<CudaStream> stream_;
  int64_t captures_ = 0, replays_ = 0;
};

}  // namespace mlarun
