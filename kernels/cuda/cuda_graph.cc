#include "kernels/cuda/cuda_graph.h"

#include <utility>

#include "kernels/cuda/cuda_status.h"

namespace colo::kernels::cuda {

absl::StatusOr<CudaGraph> CudaGraph::Capture(
    cudaStream_t stream, const std::function<absl::Status()>& body) {
  if (stream == nullptr) {
    return absl::InvalidArgumentError(
        "CudaGraph::Capture: the legacy default stream cannot be captured; "
        "pass a CudaStream");
  }
  if (absl::Status s = CudaStatus(
          cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal),
          "cudaStreamBeginCapture");
      !s.ok()) {
    return s;
  }
  const absl::Status body_status = body();
  cudaGraph_t graph = nullptr;
  const absl::Status end_status =
      CudaStatus(cudaStreamEndCapture(stream, &graph), "cudaStreamEndCapture");
  if (!body_status.ok() || !end_status.ok()) {
    if (graph != nullptr) cudaGraphDestroy(graph);
    // A failed capture leaves a sticky "last error"; clear it.
    cudaGetLastError();
    return body_status.ok() ? end_status : body_status;
  }
  cudaGraphExec_t exec = nullptr;
  if (absl::Status s = CudaStatus(cudaGraphInstantiate(&exec, graph, 0),
                                  "cudaGraphInstantiate");
      !s.ok()) {
    cudaGraphDestroy(graph);
    return s;
  }
  return CudaGraph(graph, exec);
}

void CudaGraph::Reset() {
  if (exec_ != nullptr) cudaGraphExecDestroy(exec_);
  if (graph_ != nullptr) cudaGraphDestroy(graph_);
  exec_ = nullptr;
  graph_ = nullptr;
}

CudaGraph::~CudaGraph() { Reset(); }

CudaGraph::CudaGraph(CudaGraph&& other) noexcept
    : graph_(std::exchange(other.graph_, nullptr)),
      exec_(std::exchange(other.exec_, nullptr)) {}

CudaGraph& CudaGraph::operator=(CudaGraph&& other) noexcept {
  if (this != &other) {
    Reset();
    graph_ = std::exchange(other.graph_, nullptr);
    exec_ = std::exchange(other.exec_, nullptr);
  }
  return *this;
}

absl::StatusOr<size_t> CudaGraph::NumNodes() const {
  if (graph_ == nullptr) return absl::FailedPreconditionError("empty CudaGraph");
  size_t n = 0;
  if (absl::Status s = CudaStatus(cudaGraphGetNodes(graph_, nullptr, &n),
                                  "cudaGraphGetNodes");
      !s.ok()) {
    return s;
  }
  return n;
}

absl::Status CudaGraph::Replay(cudaStream_t stream) const {
  if (exec_ == nullptr) return absl::FailedPreconditionError("empty CudaGraph");
  return CudaStatus(cudaGraphLaunch(exec_, stream), "cudaGraphLaunch");
}

}  // namespace colo::kernels::cuda
