// Fixture for the multi-process weight-sync tests: checkpoints A and B (one
// tiny architecture, two seeds), real colo-engine processes (via
// tests/engine/engine_fixture.h), child processes that are not gRPC servers
// (colo-weight-sender, the test rank-0 sender), an in-process rank 0 of a
// Gloo group, and one-line wrappers of the engine's weight-update RPCs.
#ifndef COLO_TESTS_WEIGHT_SYNC_WEIGHT_SYNC_FIXTURE_H_
#define COLO_TESTS_WEIGHT_SYNC_WEIGHT_SYNC_FIXTURE_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "colo/v1/engine.grpc.pb.h"
#include "engine/model/safetensors.h"
#include "tests/engine/engine_fixture.h"
#include "tests/util/child_process.h"
#include "weight_sync/broadcast_sender.h"
#include "weight_sync/transport.h"

namespace colo::test_util {

// Weight versions the engines report.
inline constexpr char kVersionA[] = "ckpt-A";
inline constexpr char kVersionB[] = "ckpt-B";

struct Checkpoints {
  std::string a;  // seed 1
  std::string b;  // seed 2, same architecture
};
// Writes (once per test process) the two checkpoints under TEST_TMPDIR.
absl::StatusOr<Checkpoints> MakeCheckpoints();
// The architecture of A and B with another seed / hidden size.
engine::TinyModelOptions CheckpointOptions(uint64_t seed);

// Starts colo-engine on `model_dir` reporting `version` until its first
// update (single compute thread: the VM is shared by several engines).
absl::StatusOr<std::unique_ptr<TestEngine>> StartEngine(const std::string& model_dir,
                                                        const std::string& version);

// Greedy outputs of the fixed prompts and the weight_version on each last
// Generate message. Fails if a Generate call fails.
struct Outputs {
  std::vector<std::vector<int32_t>> tokens;
  std::vector<std::string> versions;
};
absl::StatusOr<Outputs> GreedyOutputs(TestEngine& engine);

// GetWeightChecksums of every tensor: name -> crc32c (and the version).
struct Checksums {
  std::map<std::string, uint32_t> crc;
  std::string weight_version;
};
absl::StatusOr<Checksums> WeightChecksums(TestEngine& engine);

// The engine's weight-update RPCs with a deadline.
absl::StatusOr<v1::InitWeightsUpdateGroupResponse> InitGroup(
    TestEngine& engine, const v1::InitWeightsUpdateGroupRequest& request,
    absl::Duration timeout = absl::Seconds(60));
absl::Status DestroyGroup(TestEngine& engine, const std::string& group_name);
absl::StatusOr<v1::ListWeightsUpdateGroupsResponse> ListGroups(TestEngine& engine);
// Polls ListWeightsUpdateGroups until `group_name` is gone (an engine that
// destroyed a dead group itself once its update failed); DEADLINE_EXCEEDED
// naming the group's state otherwise.
absl::Status WaitGroupGone(TestEngine& engine, const std::string& group_name,
                           absl::Duration timeout);
absl::StatusOr<v1::UpdateWeightsResponse> UpdateFromDistributed(
    TestEngine& engine, const v1::UpdateWeightsFromDistributedRequest& request,
    absl::Duration timeout = absl::Seconds(60));
absl::StatusOr<v1::UpdateWeightsResponse> UpdateFromDisk(TestEngine& engine,
                                                         const std::string& model_path,
                                                         const std::string& version);
// Streams `chunks` (the caller adds the commit) with UpdateWeightsFromTensor.
absl::StatusOr<v1::UpdateWeightsResponse> UpdateFromTensor(
    TestEngine& engine, const std::vector<v1::WeightChunk>& chunks);

// Every tensor of `checkpoint` cut into pieces of `chunk_bytes` bytes (the
// last piece of a tensor may be shorter), followed by a commit.
std::vector<v1::WeightChunk> CheckpointChunks(const engine::SafetensorsCheckpoint& checkpoint,
                                              size_t chunk_bytes, const std::string& version);

// The UpdateWeightsFromDistributed request colo-weight-sender builds.
v1::UpdateWeightsFromDistributedRequest DistributedRequest(
    const std::vector<weight_sync::SendTensor>& tensors, const std::string& group_name,
    const std::string& version, int64_t bucket_bytes);

// The InitWeightsUpdateGroup request of engine rank `rank` (gloo, 127.0.0.1).
v1::InitWeightsUpdateGroupRequest GroupRequest(const std::string& group_name, int port, int rank,
                                               int world_size, absl::Duration init_timeout,
                                               absl::Duration transfer_timeout);

// Forms a Gloo group hosted by this process (rank 0) with `engines` as ranks
// 1..N (InitWeightsUpdateGroup on each, concurrently). Fails naming the
// engine whose init failed.
absl::StatusOr<std::unique_ptr<weight_sync::Transport>> FormGroup(
    const std::vector<TestEngine*>& engines, const std::string& group_name,
    absl::Duration init_timeout, absl::Duration transfer_timeout);

// Tries each update RPC once with checkpoint `dir` (= `checkpoint`):
// {UpdateWeightsFromDisk, UpdateWeightsFromTensor, UpdateWeightsFromDistributed
// on a group that does not exist}; returns their statuses in that order.
std::vector<absl::Status> TryAllUpdates(TestEngine& engine, const std::string& dir,
                                        const engine::SafetensorsCheckpoint& checkpoint,
                                        const std::string& version);
inline constexpr const char* kUpdateRpcNames[] = {
    "UpdateWeightsFromDisk", "UpdateWeightsFromTensor", "UpdateWeightsFromDistributed"};

}  // namespace colo::test_util

#endif  // COLO_TESTS_WEIGHT_SYNC_WEIGHT_SYNC_FIXTURE_H_
