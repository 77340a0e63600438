// CudaGraph: a captured and instantiated CUDA graph (move-only; destroys the
// graph and its executable on destruction).
//
// Capture(stream, body) begins stream capture (thread-local mode) on
// `stream`, runs body() -- which queues kernels on that stream -- ends the
// capture and instantiates the graph. The capture is always ended, even when
// body fails (the stream is usable afterwards); body's error is returned.
// Replay(stream) launches the graph on `stream` (asynchronous).
//
// A graph records raw device pointers: the buffers it touches must stay at
// the same addresses and be mapped whenever it replays. Buffers of the
// TaggedPool keep their addresses across Release/Resume, so a graph captured
// on them may replay after Resume (never while the tags are released).
//
// Errors: INVALID_ARGUMENT for the legacy default stream (nullptr), which
// cannot be captured; CUDA errors naming the call. Thread-compatible.
#ifndef COLO_KERNELS_CUDA_CUDA_GRAPH_H_
#define COLO_KERNELS_CUDA_CUDA_GRAPH_H_

#include <cuda_runtime.h>

#include <functional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace colo::kernels::cuda {

class CudaGraph {
 public:
  static absl::StatusOr<CudaGraph> Capture(
      cudaStream_t stream, const std::function<absl::Status()>& body);

  CudaGraph() = default;
  ~CudaGraph();
  CudaGraph(CudaGraph&& other) noexcept;
  CudaGraph& operator=(CudaGraph&& other) noexcept;
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  bool valid() const { return exec_ != nullptr; }
  // Number of nodes in the captured graph.
  absl::StatusOr<size_t> NumNodes() const;
  absl::Status Replay(cudaStream_t stream) const;

 private:
  CudaGraph(cudaGraph_t graph, cudaGraphExec_t exec) : graph_(graph), exec_(exec) {}
  void Reset();

  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
};

}  // namespace colo::kernels::cuda

#endif  // COLO_KERNELS_CUDA_CUDA_GRAPH_H_
