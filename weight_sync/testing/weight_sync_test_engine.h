// WeightSyncTestEngine: a RolloutEngine gRPC service for tests that serves
// only the weight-update RPCs, over a real ModelWeights with the real
// engine_update.h code path (group registry, receiver, sink, commit). It
// stands in for the engine until the engine runtime implements these RPCs.
// Other RPCs are UNIMPLEMENTED. Thread-safe: commits are serialized by a
// mutex (standing in for the scheduler thread). Test-only.
#ifndef COLO_WEIGHT_SYNC_TESTING_WEIGHT_SYNC_TEST_ENGINE_H_
#define COLO_WEIGHT_SYNC_TESTING_WEIGHT_SYNC_TEST_ENGINE_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "colo/v1/engine.grpc.pb.h"
#include "engine/device/cpu_backend.h"
#include "engine/memory/caching_allocator.h"
#include "engine/memory/tagged_pool.h"
#include "engine/model/model_weights.h"
#include "weight_sync/engine_update.h"
#include "weight_sync/group_registry.h"

namespace colo {
namespace weight_sync {

class WeightSyncTestEngine final : public v1::RolloutEngine::Service {
 public:
  // Loads the HF-layout model in `model_dir` (config.json + safetensors).
  static absl::StatusOr<std::unique_ptr<WeightSyncTestEngine>> Create(
      const std::string& model_dir);

  const engine::ModelWeights& weights() const { return *weights_; }
  std::string weight_version() const ABSL_LOCKS_EXCLUDED(mu_);
  int commits() const ABSL_LOCKS_EXCLUDED(mu_);

  grpc::Status InitWeightsUpdateGroup(grpc::ServerContext*,
                                      const v1::InitWeightsUpdateGroupRequest* req,
                                      v1::InitWeightsUpdateGroupResponse* resp) override;
  grpc::Status DestroyWeightsUpdateGroup(
      grpc::ServerContext*, const v1::DestroyWeightsUpdateGroupRequest* req,
      v1::DestroyWeightsUpdateGroupResponse* resp) override;
  grpc::Status UpdateWeightsFromDistributed(
      grpc::ServerContext*, const v1::UpdateWeightsFromDistributedRequest* req,
      v1::UpdateWeightsResponse* resp) override;
  grpc::Status UpdateWeightsFromTensor(grpc::ServerContext*,
                                       grpc::ServerReader<v1::WeightChunk>* reader,
                                       v1::UpdateWeightsResponse* resp) override;
  grpc::Status UpdateWeightsFromDisk(grpc::ServerContext*,
                                     const v1::UpdateWeightsFromDiskRequest* req,
                                     v1::UpdateWeightsResponse* resp) override;
  grpc::Status GetWeightChecksums(grpc::ServerContext*,
                                  const v1::GetWeightChecksumsRequest* req,
                                  v1::GetWeightChecksumsResponse* resp) override;

 private:
  WeightSyncTestEngine() = default;
  // The env whose run_commit sets `version` with the commit, under mu_.
  EngineUpdateEnv Env(const std::string& version);

  std::unique_ptr<engine::CpuBackend> backend_;
  std::unique_ptr<engine::TaggedPool> pool_;
  std::unique_ptr<engine::CachingAllocator> allocator_;
  std::unique_ptr<engine::ModelWeights> weights_;
  GroupRegistry registry_;
  mutable absl::Mutex mu_;  // the "scheduler thread"
  std::string weight_version_ ABSL_GUARDED_BY(mu_);
  int commits_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace weight_sync
}  // namespace colo

#endif  // COLO_WEIGHT_SYNC_TESTING_WEIGHT_SYNC_TEST_ENGINE_H_
