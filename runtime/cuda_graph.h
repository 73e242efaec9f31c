// CudaGraph: one CUDA graph captured from the work a callable queues on a stream, then replayed with one launch.
// A decode step is hundreds of small kernels whose launch overhead (a few microseconds each on the host) exceeds
// their GPU time at small batches; replaying the captured step costs one launch (vLLM and SGLang capture their
// decode steps the same way, one graph per batch-size bucket). What the body queues is recorded, not run: it
// must not wait for the stream or copy to the host (cudaStreamIsCapturing tells code that must behave
// differently, runtime/device.h stream_is_capturing), and every buffer it touches must stay where it was, since
// the replay reuses the addresses. Memory the body allocates comes from the caching allocator on the capture
// stream, whose blocks no work on another stream ever reuses: that stream's free list is the graphs' own pool.
#pragma once

#include <functional>
#include <string>

#include "runtime/device.h"

namespace mlarun {

class CudaGraph {
 public:
  CudaGraph() = default;
  ~CudaGraph();
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  // Captures what `body` queues on `stream` (relaxed mode: the allocator may still call cudaMalloc) and
  // instantiates it; throws mlarun::Error naming `what` and the CUDA error if the body did something a capture
  // cannot hold (a host wait, a copy to the host), leaving the graph empty and the stream usable.
  void capture(StreamHandle stream, const std::function<void()>& body, const std::string& what);
  // Queues one replay on `stream`.
  void replay(StreamHandle stream) const;
  bool captured() const { return exec_ != nullptr; }

 private:
  void reset();
  void* graph_ = nullptr;  // cudaGraph_t
  void* exec_ = nullptr;   // cudaGraphExec_t
};

}  // namespace mlarun
