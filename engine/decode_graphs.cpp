// DecodeGraphs (see decode_graphs.h): the buckets, the padding, and each bucket's warm-up, capture and replay.
#include "engine/decode_graphs.h"

#include <algorithm>
#include <cstdio>

#include "runtime/device_allocator.h"
#include "runtime/error.h"
#include "runtime/step_profiler.h"

namespace mlarun {

std::vector<int64_t> decode_graph_buckets(int64_t max_batch) {
  std::vector<int64_t> buckets;
  for (int64_t b : {1, 2, 4})
    if (b < max_batch) buckets.push_back(b);
  for (int64_t b = 8; b < max_batch; b += 8) buckets.push_back(b);
  if (max_batch >= 1) buckets.push_back(max_batch);
  return buckets;
}

int64_t decode_graph_bucket(const std::vector<int64_t>& buckets, int64_t sequences) {
  const auto it = std::lower_bound(buckets.begin(), buckets.end(), sequences);
  return it == buckets.end() ? 0 : *it;
}

std::string decode_graph_unfit(const ForwardBatch& batch) {
  if (batch.sequences.empty()) return "an empty step";
  if (batch.mla_path == MlaPath::Naive) return "the naive MLA path asked for";
  const int64_t S = int64_t(batch.sequences.size());
  for (int64_t j = 0; j < S; ++j) {
    const BatchSequence& s = batch.sequences[size_t(j)];
    if (s.num_tokens != 1 || s.token_start != j) return "a sequence with other than one new token";
  }
  if (int64_t(batch.logit_rows.size()) != S) return "logits for other than one row per sequence";
  for (int64_t j = 0; j < S; ++j)
    if (batch.logit_rows[size_t(j)] != j) return "logit rows out of batch order";
  return "";
}

ForwardBatch pad_decode_batch(const ForwardBatch& batch, int64_t sequences) {
  MLARUN_CHECK(decode_graph_unfit(batch).empty(), "pad_decode_batch: not a decode step: ", decode_graph_unfit(batch));
  MLARUN_CHECK(sequences >= int64_t(batch.sequences.size()), "pad_decode_batch: ", batch.sequences.size(),
               " sequences do not fit ", sequences);
  ForwardBatch padded = batch;
  for (int64_t j = int64_t(batch.sequences.size()); j < sequences; ++j) {
    padded.token_ids.push_back(0);
    padded.positions.push_back(0);
    padded.slot_mapping.push_back(-1);  // writes nothing; attends over row 0 of block 0, whatever it holds
    padded.sequences.push_back({j, 1, 0, {0}});
    padded.logit_rows.push_back(j);
  }
  return padded;
}

DecodeGraphs::DecodeGraphs(const DeepseekModel& model, std::vector<Tensor>& cache, const Communicator& comm,
                           DecodeGraphSettings settings)
    : model_(model), cache_(cache), settings_(settings), buckets_(decode_graph_buckets(settings.max_batch)) {
  if (settings.max_batch < 1) off_reason_ = "--enforce-eager";
  else if (model.placement().device != Device::CUDA) off_reason_ = "not on the GPU";
  else if (model.context_parallel().on()) off_reason_ = "decode context parallelism";
  // One rank only until a multi-GPU machine has verified captured collectives across ranks: a capture that
  // failed on one rank alone would leave the ranks' collectives differently ordered.
  else if (comm.world_size() > 1) off_reason_ = "more than one rank";
  else if (!comm.can_capture_graphs()) off_reason_ = std::string("the ") + comm.backend() + " communicator";
  const bool sized = settings.block_size >= 1 && settings.num_blocks >= 1 && settings.table_blocks >= 1;
  MLARUN_CHECK(!off_reason_.empty() || sized,
               "decode graphs: a cache of ", settings.num_blocks, " blocks of ", settings.block_size, " tokens, ",
               settings.table_blocks, " block-table columns");
}

bool DecodeGraphs::moe_capturable(int64_t bucket) const {
  // The compact MoE layout copies its offsets to the host: not capturable.
  return model_.config().num_moe_layers() == 0 || model_.moe_layout(bucket) == MoeLayout::Capacity;
}

std::string DecodeGraphs::unfit(const ForwardBatch& batch) const {
  if (!off_reason_.empty()) return off_reason_;
  // A profiled step times its regions with events a replay would not record.
  if (StepProfiler::active()) return "a profiled step";
  if (std::string why = decode_graph_unfit(batch); !why.empty()) return why;
  const int64_t S = int64_t(batch.sequences.size()), bucket = decode_graph_bucket(buckets_, S);
  if (bucket == 0) return std::to_string(S) + " sequences, over the largest bucket";
  if (!moe_capturable(bucket))
    return "the compact MoE layout at " + std::to_string(bucket) + " tokens (--moe-capacity-max-tokens)";
  for (const BatchSequence& s : batch.sequences)
    if (s.start_pos + 1 > settings_.table_blocks * settings_.block_size) return "a context over the graphs' tables";
  const auto it = graphs_.find(bucket);
  if (it != graphs_.end() && it->second->failed) return "its bucket's capture failed";
  return "";
}

std::string DecodeGraphs::describe() const {
  if (!off_reason_.empty()) return "off (" + off_reason_ + ")";
  std::string usable;
  for (int64_t b : buckets_) {
    if (!moe_capturable(b)) break;
    usable += (usable.empty() ? "" : ", ") + std::to_string(b);
  }
  if (usable.empty()) return "off (every bucket's MoE in the compact layout: --moe-capacity-max-tokens)";
  return "batches of " + usable + " sequences, each bucket captured on its first decode step (--enforce-eager: off)";
}

DecodeGraphs::~DecodeGraphs() {
  if (!stream_) return;
  try {
    stream_->synchronize();
  } catch (const Error&) {
    // an earlier asynchronous failure: nothing to wait for any more
  }
  graphs_.clear();  // their tensors go back to the stream's cache
  DeviceAllocator::instance().release_retained(stream_->handle());
}

Tensor DecodeGraphs::run(const ForwardBatch& batch, HostStaging& staging) {
  if (!unfit(batch).empty()) return {};
  const int64_t S = int64_t(batch.sequences.size()), bucket = decode_graph_bucket(buckets_, S);
  std::unique_ptr<Graph>& slot = graphs_[bucket];
  if (!slot) slot = std::make_unique<Graph>();
  Graph& g = *slot;
  const ForwardBatch padded = pad_decode_batch(batch, bucket);
  g.step = StepTensors::build_fixed(padded, Device::CUDA, settings_.block_size, settings_.num_blocks,
                                    settings_.table_blocks, g.step_buffer, &staging);
  if (!g.graph.captured() && !capture(g, padded, bucket)) return {};
  g.graph.replay(stream_->handle());
  ++replays_;
  return model_.compute_logits(g.hidden.rows(0, S));  // the legacy stream waits for the blocking graph stream
}

bool DecodeGraphs::capture(Graph& g, const ForwardBatch& padded, int64_t bucket) {
  const std::string what = "the decode step of " + std::to_string(bucket) + " sequences";
  try {
    if (!stream_) {
      stream_ = std::make_unique<CudaStream>(/*blocking=*/true);
      DeviceAllocator::instance().retain_cached(stream_->handle());  // the graphs' pool: see the header
    }
    {
      // Warm-up: kernels loaded, cuBLAS set up and the graph stream's pool filled before anything is recorded.
      // It writes the real sequences' cache rows once; the replay writes the same rows again.
      StreamGuard on(stream_->handle());
      (void)model_.hidden_states(padded, g.step, cache_);
    }
    g.graph.capture(stream_->handle(), [&] { g.hidden = model_.hidden_states(padded, g.step, cache_); }, what);
    ++captures_;
    return true;
  } catch (const Error& e) {
    g.failed = true;
    g.hidden = Tensor();
    std::fprintf(stderr, "mlarun: %s runs without a CUDA graph from now on: %s\n", what.c_str(), e.what());
    return false;
  }
}

}  // namespace mlarun
