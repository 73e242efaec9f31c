// The one thing the engine needs from a model: run a step's ForwardBatch and return the logits it asks for.
// Declared here so the engine (runtime/) never includes model/; model/ implements it.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/forward_batch.h"
#include "runtime/tensor.h"

namespace mlarun {

class ModelRunner {
 public:
  virtual ~ModelRunner() = default;
  // Logits f32 [batch.logit_rows.size(), vocab] on the model's device (the GPU for a CUDA model: they stay
  // there; the engine samples them with ops::sample_rows and copies to the host only the rows a request keeps),
  // identical on every rank.
  virtual Tensor execute(const ForwardBatch& batch) = 0;
  virtual int64_t vocab_size() const = 0;
  virtual int64_t block_size() const = 0;
  virtual int64_t num_blocks() const = 0;
  // Makes every rank hold rank 0's sampled tokens (tensor parallelism samples once); no-op on one rank.
  virtual void sync_sampled(std::vector<int32_t>& tokens) { (void)tokens; }
  virtual bool is_driver() const { return true; }  // rank 0: the one that prints and writes files
  // How the model's attention picks MLA's path for each sequence (runtime/mla_path_rule.h); the engine puts it in
  // every ForwardBatch. The default: absorbed for decode only.
  virtual MlaPathRule mla_path_rule() const { return {}; }
  // Steps replayed from CUDA graphs so far (engine/decode_graphs.h); 0 for a runner without them.
  virtual int64_t cuda_graph_replays() const { return 0; }
};

}  // namespace mlarun
