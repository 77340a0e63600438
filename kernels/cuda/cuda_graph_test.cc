#include "kernels/cuda/cuda_graph.h"

#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/cuda_stream.h"
#include "kernels/cuda/device_array.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/test_util.h"
#include "tests/util/status_matchers.h"

namespace colo::kernels::cuda {
namespace {

TEST(CudaGraphTest, ReplayRunsTheCapturedWorkEachTime) {
  COLO_SKIP_WITHOUT_GPU();
  ASSERT_OK_AND_ASSIGN(CudaStream stream, CudaStream::Create());
  const int64_t n = 1000;
  ASSERT_OK_AND_ASSIGN(auto acc,
                       DeviceArray<float>::FromHost(std::vector<float>(n, 0.0f), stream.get()));
  ASSERT_OK_AND_ASSIGN(auto one,
                       DeviceArray<float>::FromHost(std::vector<float>(n, 1.0f), stream.get()));
  ASSERT_OK_AND_ASSIGN(CudaGraph graph, CudaGraph::Capture(stream.get(), [&]() -> absl::Status {
                         return AddInPlace(acc.data(), one.data(), n, DType::kFloat32,
                                           stream.get());
                       }));
  ASSERT_OK_AND_ASSIGN(size_t nodes, graph.NumNodes());
  EXPECT_EQ(nodes, 1u);
  // Capture queues nothing: acc is still 0.
  ASSERT_OK_AND_ASSIGN(std::vector<float> before, acc.ToHost(stream.get()));
  EXPECT_EQ(before, std::vector<float>(n, 0.0f));
  for (int i = 0; i < 3; ++i) ASSERT_OK(graph.Replay(stream.get()));
  ASSERT_OK_AND_ASSIGN(std::vector<float> after, acc.ToHost(stream.get()));
  EXPECT_EQ(after, std::vector<float>(n, 3.0f));
}

TEST(CudaGraphTest, BodyErrorEndsCaptureAndIsReturned) {
  COLO_SKIP_WITHOUT_GPU();
  ASSERT_OK_AND_ASSIGN(CudaStream stream, CudaStream::Create());
  EXPECT_THAT(
      CudaGraph::Capture(stream.get(), [] { return absl::InvalidArgumentError("bad body"); }),
      StatusIs(absl::StatusCode::kInvalidArgument));
  // The stream is no longer capturing.
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusActive;
  ASSERT_EQ(cudaStreamIsCapturing(stream.get(), &capture), cudaSuccess);
  EXPECT_EQ(capture, cudaStreamCaptureStatusNone);
}

TEST(CudaGraphTest, DefaultStreamAndEmptyGraphAreRejected) {
  EXPECT_THAT(CudaGraph::Capture(nullptr, [] { return absl::OkStatus(); }),
              StatusIs(absl::StatusCode::kInvalidArgument));
  CudaGraph empty;
  EXPECT_THAT(empty.Replay(nullptr), StatusIs(absl::StatusCode::kFailedPrecondition));
}

}  // namespace
}  // namespace colo::kernels::cuda
