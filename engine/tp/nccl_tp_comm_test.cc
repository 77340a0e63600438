// NcclTpComm on 2 GPUs (one thread per rank, each on its own device):
// all-reduce and all-gather give every rank the expected values, and a rank
// that stops calling makes the other's collective fail ABORTED within the
// timeout and the communicator broken. Skips with fewer than 2 GPUs.
#include "engine/tp/nccl_tp_comm.h"

#include <cuda_runtime.h>

#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"
#include "weight_sync/tcp_store.h"

namespace colo {
namespace engine {
namespace {

int DeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

TEST(NcclTpCommTest, AllReduceAndAllGatherOnTwoGpus) {
  if (DeviceCount() < 2) GTEST_SKIP() << "needs 2 GPUs, found " << DeviceCount();
  ASSERT_OK_AND_ASSIGN(auto server,
                       weight_sync::TcpStoreServer::Start({.bind_address = "127.0.0.1",
                                                           .port = 0,
                                                           .group_name = "colo-tp",
                                                           .world_size = 2}));
  const int port = server->port();
  constexpr int64_t kN = 1000;
  std::vector<std::unique_ptr<weight_sync::TcpStoreServer>> servers(2);
  servers[0] = std::move(server);
  std::vector<absl::Status> status(2);
  std::vector<std::vector<float>> reduced(2, std::vector<float>(kN)),
      gathered(2, std::vector<float>(2 * kN));
  std::vector<std::thread> threads;
  for (int rank = 0; rank < 2; ++rank) {
    threads.emplace_back([&, rank, srv = std::move(servers[rank])]() mutable {
      auto body = [&]() -> absl::Status {
        if (cudaSetDevice(rank) != cudaSuccess) return absl::InternalError("cudaSetDevice");
        NcclTpComm::Options o;
        o.master_port = port;
        o.rank = rank;
        o.size = 2;
        o.cuda_device = rank;
        o.timeout = absl::Seconds(5);
        absl::StatusOr<std::unique_ptr<NcclTpComm>> comm = NcclTpComm::Create(o, std::move(srv));
        if (!comm.ok()) return comm.status();
        std::vector<float> host(kN);
        for (int64_t i = 0; i < kN; ++i) host[i] = static_cast<float>(rank * 1000 + i);
        float *d = nullptr, *g = nullptr;
        cudaMalloc(&d, kN * sizeof(float));
        cudaMalloc(&g, 2 * kN * sizeof(float));
        cudaMemcpy(d, host.data(), kN * sizeof(float), cudaMemcpyHostToDevice);
        absl::Status s = (*comm)->AllGather(d, kN, g);
        if (s.ok()) s = (*comm)->AllReduceSum(d, kN);
        cudaMemcpy(reduced[rank].data(), d, kN * sizeof(float), cudaMemcpyDeviceToHost);
        cudaMemcpy(gathered[rank].data(), g, 2 * kN * sizeof(float), cudaMemcpyDeviceToHost);
        // Rank 1 stops here; rank 0's next collective must time out.
        if (s.ok() && rank == 0) {
          absl::Status lonely = (*comm)->AllReduceSum(d, kN);
          if (!absl::IsAborted(lonely)) return absl::InternalError(lonely.ToString());
          if (!absl::IsFailedPrecondition((*comm)->AllReduceSum(d, kN))) {
            return absl::InternalError("not broken after a failed collective");
          }
        }
        cudaFree(d);
        cudaFree(g);
        return s;
      };
      status[rank] = body();
    });
  }
  for (auto& t : threads) t.join();
  for (int rank = 0; rank < 2; ++rank) {
    ASSERT_OK(status[rank]) << "rank " << rank;
    for (int64_t i = 0; i < kN; ++i) {
      ASSERT_EQ(reduced[rank][i], static_cast<float>(1000 + 2 * i));
      ASSERT_EQ(gathered[rank][i], static_cast<float>(i));
      ASSERT_EQ(gathered[rank][kN + i], static_cast<float>(1000 + i));
    }
  }
}

}  // namespace
}  // namespace engine
}  // namespace colo
