// CudaGraph (see cuda_graph.h): stream capture in relaxed mode, instantiation, replay. A failed capture ends the
// capture before it throws, so the stream is not left capturing.
#include "runtime/cuda_graph.h"

#include "runtime/error.h"

#ifdef MLARUN_WITH_CUDA
#include <cuda_runtime_api.h>

#include "runtime/cuda_check.h"
#endif

namespace mlarun {

CudaGraph::~CudaGraph() { reset(); }

void CudaGraph::reset() {
#ifdef MLARUN_WITH_CUDA
  if (exec_) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
  if (graph_) cudaGraphDestroy(static_cast<cudaGraph_t>(graph_));
#endif
  exec_ = graph_ = nullptr;
}

void CudaGraph::capture(StreamHandle stream, const std::function<void()>& body, const std::string& what) {
  reset();
#ifdef MLARUN_WITH_CUDA
  MLARUN_CHECK(gpu_available(), "cannot capture ", what, " into a CUDA graph: ", gpu_info().reason);
  MLARUN_CHECK(stream != nullptr, "cannot capture ", what, " on the legacy default stream");
  MLARUN_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed));
  cudaGraph_t graph = nullptr;
  try {
    StreamGuard on(stream);
    body();
  } catch (...) {
    cudaStreamEndCapture(stream, &graph);  // ends the capture whatever it holds; the graph (if any) is dropped
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    throw;
  }
  const cudaError_t ended = cudaStreamEndCapture(stream, &graph);
  if (ended != cudaSuccess || !graph) {
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    fail("capturing ", what, " into a CUDA graph failed: ", cudaGetErrorName(ended), " (", cudaGetErrorString(ended),
         "): the step did something a graph cannot hold");
  }
  graph_ = graph;
  cudaGraphExec_t exec = nullptr;
  const cudaError_t made = cudaGraphInstantiate(&exec, graph, 0);
  if (made != cudaSuccess) {
    cudaGetLastError();
    reset();
    fail("instantiating the CUDA graph of ", what, " failed: ", cudaGetErrorName(made));
  }
  exec_ = exec;
#else
  (void)stream;
  (void)body;
  fail("cannot capture ", what, " into a CUDA graph: built without CUDA");
#endif
}

void CudaGraph::replay(StreamHandle stream) const {
  MLARUN_CHECK(captured(), "CudaGraph::replay: nothing captured");
#ifdef MLARUN_WITH_CUDA
  MLARUN_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), stream));
#else
  (void)stream;
#endif
}

}  // namespace mlarun
