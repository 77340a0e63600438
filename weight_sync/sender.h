// WeightSender: the trainer side of a distributed weight update over gRPC.
//
//   Connect(): hosts the rendezvous as rank 0 at master_address:master_port
//     (0 = a free port), calls InitWeightsUpdateGroup on every engine
//     concurrently (engine i gets rank_offset 1 + i, world_size 1 + N; with
//     engine_ranks, the ranks before it and their sum; the RPC blocks until
//     the group forms) while forming rank 0's transport.
//   Update(): calls UpdateWeightsFromDistributed on every engine concurrently
//     while broadcasting the tensors' buckets (SendUpdate), then takes part in
//     the commit vote. Either every engine commits or none does.
//   DestroyGroup(): DestroyWeightsUpdateGroup on every engine, closes rank 0.
//
// Errors name the engine. An engine's INVALID_ARGUMENT (bad names, shapes,
// dtypes) is returned as such; interrupted updates are ABORTED. After an
// ABORTED update with a broken group, DestroyGroup and Connect again.
// Not thread-safe.
#ifndef COLO_WEIGHT_SYNC_SENDER_H_
#define COLO_WEIGHT_SYNC_SENDER_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "colo/v1/engine.grpc.pb.h"
#include "engine/model/safetensors.h"
#include "weight_sync/broadcast_sender.h"
#include "weight_sync/transport.h"

namespace colo {
namespace weight_sync {

struct WeightSenderOptions {
  std::vector<std::string> engines;  // host:port of each engine
  // Ranks each engine occupies in the group (a tensor-parallel engine's
  // tp_size); empty = 1 each. Engine i gets rank_offset 1 + the ranks of
  // the engines before it; world_size is 1 + their sum.
  std::vector<int> engine_ranks;
  std::string backend = "gloo";
  std::string master_address = "127.0.0.1";  // must be reachable by engines
  int master_port = 0;
  std::string group_name = "weight_update_group";
  size_t bucket_bytes = 0;  // 0 = kDefaultBucketBytes
  absl::Duration init_timeout = absl::Seconds(60);
  absl::Duration transfer_timeout = absl::Seconds(120);
  // Added to the RPC deadlines on top of the collective timeouts.
  absl::Duration rpc_slack = absl::Seconds(30);
  // TEST ONLY: see SendOptions::after_bucket_for_testing.
  std::function<void(int64_t buckets_sent)> after_bucket_for_testing;
};

struct EngineUpdateResult {
  std::string engine;
  v1::UpdateWeightsResponse response;
};

class WeightSender {
 public:
  static absl::StatusOr<std::unique_ptr<WeightSender>> Connect(
      const WeightSenderOptions& options);
  ~WeightSender();

  int master_port() const { return transport_->master_port(); }

  absl::StatusOr<SendReport> Update(const std::vector<SendTensor>& tensors,
                                    const std::string& weight_version,
                                    bool flush_cache,
                                    std::vector<EngineUpdateResult>* results);
  absl::Status DestroyGroup();

 private:
  WeightSender(const WeightSenderOptions& options,
               std::vector<std::unique_ptr<v1::RolloutEngine::Stub>> stubs,
               std::unique_ptr<Transport> transport)
      : options_(options), stubs_(std::move(stubs)), transport_(std::move(transport)) {}

  const WeightSenderOptions options_;
  std::vector<std::unique_ptr<v1::RolloutEngine::Stub>> stubs_;
  std::unique_ptr<Transport> transport_;
};

// Every tensor of a checkpoint as SendTensors (name order), pointing into
// the checkpoint's mapping. INVALID_ARGUMENT naming tensors whose dtype is
// not float32/float16/bfloat16.
absl::StatusOr<std::vector<SendTensor>> TensorsFromCheckpoint(
    const engine::SafetensorsCheckpoint& checkpoint);

}  // namespace weight_sync
}  // namespace colo

#endif  // COLO_WEIGHT_SYNC_SENDER_H_
