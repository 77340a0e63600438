// NcclTransport on one GPU (CUDA-only target). Without a usable device the
// transport must refuse cleanly (FAILED_PRECONDITION, no crash, no hang) and
// the GPU cases skip with the reason.
#include "weight_sync/nccl_transport.h"

#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/gpu_required.h"
#include "tests/util/status_matchers.h"
#include "weight_sync/tcp_store.h"
#include "weight_sync/transport.h"

namespace colo {
namespace weight_sync {
namespace {

using ::testing::HasSubstr;

// Empty when a device is usable, else why not.
std::string NoDeviceReason() {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return std::string("cudaGetDeviceCount: ") + cudaGetErrorString(e);
  }
  if (count == 0) return "0 CUDA devices";
  return "";
}

TransportOptions Options(int rank, int world, int port = 0) {
  TransportOptions o;
  o.backend = "nccl";
  o.group_name = "nccl_test";
  o.rank = rank;
  o.world_size = world;
  o.master_port = port;
  o.init_timeout = absl::Seconds(60);
  o.transfer_timeout = absl::Seconds(30);
  return o;
}

TEST(NcclTransportTest, FactoryBuildsNcclOrRefusesWithoutDevice) {
  absl::StatusOr<std::unique_ptr<Transport>> t = CreateTransport(Options(0, 1));
  const std::string why = NoDeviceReason();
  if (!why.empty()) {
    EXPECT_THAT(t.status(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                     HasSubstr("no usable CUDA device")));
    // Checked the clean refusal only; the NCCL collectives need a GPU.
    COLO_SKIP_OR_FAIL_WITHOUT_GPU(absl::UnavailableError(why));
  }
  ASSERT_OK(t.status());
  EXPECT_EQ((*t)->backend(), "nccl");
  EXPECT_EQ((*t)->memory_space(), MemorySpace::kDevice);
}

// World size 1: the communicator forms, collectives complete and return
// the right values, and Close is idempotent.
TEST(NcclTransportTest, SingleRankCollectives) {
  if (const std::string why = NoDeviceReason(); !why.empty()) {
    COLO_SKIP_OR_FAIL_WITHOUT_GPU(absl::UnavailableError(why));
  }
  ASSERT_OK_AND_ASSIGN(auto t, NcclTransport::Create(Options(0, 1)));
  EXPECT_EQ(t->rank(), 0);
  EXPECT_GT(t->master_port(), 0);
  std::vector<uint8_t> host(1 << 20);
  for (size_t i = 0; i < host.size(); ++i) host[i] = static_cast<uint8_t>(i * 7);
  void* dev = nullptr;
  ASSERT_EQ(cudaMalloc(&dev, host.size()), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(dev, host.data(), host.size(), cudaMemcpyHostToDevice), cudaSuccess);
  EXPECT_OK(t->Broadcast(dev, host.size(), 0));
  std::vector<uint8_t> back(host.size());
  ASSERT_EQ(cudaMemcpy(back.data(), dev, back.size(), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(back, host);
  ASSERT_OK_AND_ASSIGN(int32_t m, t->AllReduceMin(42));
  EXPECT_EQ(m, 42);
  EXPECT_OK(t->Barrier());
  EXPECT_THAT(t->Broadcast(dev, 16, 1), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_FALSE(t->broken());
  t->Close();
  t->Close();
  EXPECT_THAT(t->Barrier(), StatusIs(absl::StatusCode::kFailedPrecondition));
  cudaFree(dev);
}

// Two ranks on threads need two devices (NCCL rejects two ranks of one
// communicator on the same GPU). The update protocol runs end to end.
TEST(NcclTransportTest, TwoRanksBroadcastAndVote) {
  if (const std::string why = NoDeviceReason(); !why.empty()) {
    COLO_SKIP_OR_FAIL_WITHOUT_GPU(absl::UnavailableError(why));
  }
  int count = 0;
  cudaGetDeviceCount(&count);
  if (count < 2) GTEST_SKIP() << "needs 2 GPUs (NCCL needs one device per rank), found " << count;
  TcpStoreServer::Options so;
  so.group_name = "nccl_test";
  so.world_size = 2;
  ASSERT_OK_AND_ASSIGN(auto server, TcpStoreServer::Start(so));
  const int port = server->port();
  absl::StatusOr<std::unique_ptr<NcclTransport>> t1;
  std::thread peer([&] {
    TransportOptions o = Options(1, 2, port);
    o.cuda_device = 1;
    t1 = NcclTransport::Create(o);
  });
  absl::StatusOr<std::unique_ptr<NcclTransport>> t0 =
      NcclTransport::Create(Options(0, 2, port), std::move(server));
  peer.join();
  ASSERT_OK(t0.status());
  ASSERT_OK(t1.status());
  const size_t n = 3 << 20;
  void* d0 = nullptr;
  void* d1 = nullptr;
  cudaSetDevice(0);
  ASSERT_EQ(cudaMalloc(&d0, n), cudaSuccess);
  ASSERT_EQ(cudaMemset(d0, 0x5a, n), cudaSuccess);
  cudaSetDevice(1);
  ASSERT_EQ(cudaMalloc(&d1, n), cudaSuccess);
  ASSERT_EQ(cudaMemset(d1, 0, n), cudaSuccess);
  absl::Status s1;
  absl::StatusOr<int32_t> v1;
  std::thread r1([&] {
    s1 = (*t1)->Broadcast(d1, n, 0);
    v1 = (*t1)->AllReduceMin(3);
  });
  EXPECT_OK((*t0)->Broadcast(d0, n, 0));
  absl::StatusOr<int32_t> v0 = (*t0)->AllReduceMin(7);
  r1.join();
  EXPECT_OK(s1);
  ASSERT_OK(v0.status());
  ASSERT_OK(v1.status());
  EXPECT_EQ(*v0, 3);
  EXPECT_EQ(*v1, 3);
  std::vector<uint8_t> back(n);
  cudaSetDevice(1);
  ASSERT_EQ(cudaMemcpy(back.data(), d1, n, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(back, std::vector<uint8_t>(n, 0x5a));
  cudaFree(d1);
  cudaSetDevice(0);
  cudaFree(d0);
}

}  // namespace
}  // namespace weight_sync
}  // namespace colo
