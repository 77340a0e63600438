#include "weight_sync/testing/weight_sync_test_engine.h"

#include <utility>

#include "engine/model/model_config.h"
#include "engine/model/safetensors.h"
#include "proto/status/grpc_status.h"

namespace colo {
namespace weight_sync {

absl::StatusOr<std::unique_ptr<WeightSyncTestEngine>> WeightSyncTestEngine::Create(
    const std::string& model_dir) {
  std::unique_ptr<WeightSyncTestEngine> e(new WeightSyncTestEngine());
  absl::StatusOr<std::unique_ptr<engine::CpuBackend>> backend =
      engine::CpuBackend::Create({});
  if (!backend.ok()) return backend.status();
  e->backend_ = std::move(backend).value();
  engine::TaggedPool::Options po;
  po.backend = e->backend_.get();
  absl::StatusOr<std::unique_ptr<engine::TaggedPool>> pool = engine::TaggedPool::Create(po);
  if (!pool.ok()) return pool.status();
  e->pool_ = std::move(pool).value();
  engine::CachingAllocator::Options ao;
  ao.backend = e->backend_.get();
  absl::StatusOr<std::unique_ptr<engine::CachingAllocator>> alloc =
      engine::CachingAllocator::Create(ao);
  if (!alloc.ok()) return alloc.status();
  e->allocator_ = std::move(alloc).value();
  absl::StatusOr<engine::ModelConfig> config =
      engine::LoadModelConfig(model_dir + "/config.json");
  if (!config.ok()) return config.status();
  absl::StatusOr<std::unique_ptr<engine::SafetensorsCheckpoint>> ckpt =
      engine::SafetensorsCheckpoint::Open(model_dir);
  if (!ckpt.ok()) return ckpt.status();
  absl::StatusOr<std::unique_ptr<engine::ModelWeights>> weights =
      engine::ModelWeights::Load(*config, **ckpt, e->pool_.get());
  if (!weights.ok()) return weights.status();
  e->weights_ = std::move(weights).value();
  return e;
}

std::string WeightSyncTestEngine::weight_version() const {
  absl::MutexLock lock(&mu_);
  return weight_version_;
}

int WeightSyncTestEngine::commits() const {
  absl::MutexLock lock(&mu_);
  return commits_;
}

EngineUpdateEnv WeightSyncTestEngine::Env(const std::string& version) {
  EngineUpdateEnv env;
  env.weights = weights_.get();
  env.allocator = allocator_.get();
  env.run_commit = [this, version](const std::function<absl::Status()>& commit) {
    absl::MutexLock lock(&mu_);
    absl::Status st = commit();
    if (st.ok()) {
      weight_version_ = version;
      ++commits_;
    }
    return st;
  };
  return env;
}

grpc::Status WeightSyncTestEngine::InitWeightsUpdateGroup(
    grpc::ServerContext*, const v1::InitWeightsUpdateGroupRequest* req,
    v1::InitWeightsUpdateGroupResponse* resp) {
  absl::StatusOr<v1::InitWeightsUpdateGroupResponse> r =
      InitGroup(&registry_, *req, GroupDefaults());
  if (r.ok()) *resp = *r;
  return ToGrpcStatus(r.status());
}

grpc::Status WeightSyncTestEngine::DestroyWeightsUpdateGroup(
    grpc::ServerContext*, const v1::DestroyWeightsUpdateGroupRequest* req,
    v1::DestroyWeightsUpdateGroupResponse*) {
  return ToGrpcStatus(DestroyGroup(&registry_, *req));
}

grpc::Status WeightSyncTestEngine::UpdateWeightsFromDistributed(
    grpc::ServerContext*, const v1::UpdateWeightsFromDistributedRequest* req,
    v1::UpdateWeightsResponse* resp) {
  absl::StatusOr<v1::UpdateWeightsResponse> r =
      UpdateFromDistributed(&registry_, *req, Env(req->weight_version()));
  if (r.ok()) *resp = *r;
  return ToGrpcStatus(r.status());
}

grpc::Status WeightSyncTestEngine::UpdateWeightsFromTensor(
    grpc::ServerContext*, grpc::ServerReader<v1::WeightChunk>* reader,
    v1::UpdateWeightsResponse* resp) {
  // The version arrives with the commit message, after the data: read it
  // through a shared slot that the commit runner consults.
  auto commit_msg = std::make_shared<v1::WeightCommit>();
  EngineUpdateEnv env = Env("");
  env.run_commit = [this, commit_msg](const std::function<absl::Status()>& commit) {
    absl::MutexLock lock(&mu_);
    absl::Status st = commit();
    if (st.ok()) {
      weight_version_ = commit_msg->weight_version();
      ++commits_;
    }
    return st;
  };
  absl::StatusOr<v1::UpdateWeightsResponse> r = UpdateFromChunks(
      [reader](v1::WeightChunk* c) { return reader->Read(c); }, env, commit_msg.get());
  if (r.ok()) *resp = *r;
  return ToGrpcStatus(r.status());
}

grpc::Status WeightSyncTestEngine::UpdateWeightsFromDisk(
    grpc::ServerContext*, const v1::UpdateWeightsFromDiskRequest* req,
    v1::UpdateWeightsResponse* resp) {
  absl::StatusOr<v1::UpdateWeightsResponse> r =
      UpdateFromDisk(*req, Env(req->weight_version()));
  if (r.ok()) *resp = *r;
  return ToGrpcStatus(r.status());
}

grpc::Status WeightSyncTestEngine::GetWeightChecksums(
    grpc::ServerContext*, const v1::GetWeightChecksumsRequest* req,
    v1::GetWeightChecksumsResponse* resp) {
  absl::MutexLock lock(&mu_);  // no commit while reading
  absl::StatusOr<v1::GetWeightChecksumsResponse> r = WeightChecksums(*req, *weights_);
  if (r.ok()) {
    *resp = *r;
    resp->set_weight_version(weight_version_);
  }
  return ToGrpcStatus(r.status());
}

}  // namespace weight_sync
}  // namespace colo
