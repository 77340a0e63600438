// Test fixture for engine integration tests: writes tiny models, starts real
// colo-engine processes on ephemeral ports, talks to them over gRPC, and
// computes the expected greedy tokens with the in-process offline generator
// (the same forward pass, no scheduler: an oracle for batching, pausing,
// retraction and sessions).
#ifndef COLO_TESTS_ENGINE_ENGINE_FIXTURE_H_
#define COLO_TESTS_ENGINE_ENGINE_FIXTURE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "colo/v1/engine.grpc.pb.h"
#include "engine/model/tiny_model.h"
#include "grpcpp/grpcpp.h"
#include "tests/util/server_process.h"

namespace colo::test_util {

// Writes a tiny model under TEST_TMPDIR/name (once per process and name).
absl::StatusOr<std::string> MakeTinyModel(const std::string& name,
                                          const engine::TinyModelOptions& options);

// Greedy tokens of each prompt from the offline generator (no scheduler).
absl::StatusOr<std::vector<std::vector<int32_t>>> OfflineGreedy(
    const std::string& model_dir, const std::vector<std::vector<int32_t>>& prompts,
    int max_new_tokens);

struct GenerateResult {
  grpc::Status status;
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  std::string finish_reason;
  int prompt_tokens = 0;
  int cached_tokens = 0;
  std::string weight_version;
  int messages = 0;
};

// A started colo-engine with a stub.
class TestEngine {
 public:
  static absl::StatusOr<std::unique_ptr<TestEngine>> Start(const std::string& model_dir,
                                                           std::vector<std::string> flags = {});
  colo::v1::RolloutEngine::Stub& stub() { return *stub_; }
  ServerProcess& process() { return *process_; }
  std::string address() const { return process_->address(); }

  // One Generate call collected to the end (deadline `timeout`).
  GenerateResult Generate(const colo::v1::GenerateRequest& request,
                          absl::Duration timeout = absl::Seconds(120));
  GenerateResult Greedy(const std::vector<int32_t>& ids, int max_new_tokens,
                        const std::string& session_id = "");

  absl::StatusOr<colo::v1::GetServerInfoResponse> Info();
  absl::StatusOr<colo::v1::GetMemoryInfoResponse> Memory();
  absl::StatusOr<colo::v1::PauseGenerationResponse> Pause(const std::string& mode);
  absl::StatusOr<colo::v1::ContinueGenerationResponse> Continue(bool empty_cache = true);
  absl::StatusOr<colo::v1::ReleaseTagsResponse> Release(const std::vector<std::string>& tags);
  absl::StatusOr<colo::v1::ResumeTagsResponse> Resume(const std::vector<std::string>& tags);
  absl::StatusOr<colo::v1::GetWeightChecksumsResponse> Checksums();
  absl::StatusOr<colo::v1::UpdateWeightsResponse> UpdateFromDisk(const std::string& model_dir,
                                                                 const std::string& version);

 private:
  std::unique_ptr<ServerProcess> process_;
  std::unique_ptr<colo::v1::RolloutEngine::Stub> stub_;
};

// A streaming Generate call read incrementally.
class GenerateStream {
 public:
  GenerateStream(colo::v1::RolloutEngine::Stub& stub, const colo::v1::GenerateRequest& request,
                 absl::Duration timeout = absl::Seconds(120));
  // Reads messages until at least `n` tokens arrived or the stream ended.
  // Returns false when the stream ended.
  bool ReadUntil(size_t n);
  // Reads to the end and returns the result.
  GenerateResult Finish();
  const std::vector<int32_t>& tokens() const { return result_.tokens; }

 private:
  bool ReadOne();
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<colo::v1::GenerateResponse>> reader_;
  GenerateResult result_;
  bool ended_ = false;
};

colo::v1::GenerateRequest GreedyRequest(const std::vector<int32_t>& ids, int max_new_tokens);

// engine::TinyPrompt: a deterministic pseudo-random prompt of `len` tokens in [0, vocab).
std::vector<int32_t> Prompt(int seed, int len, int vocab);

// The process's resident bytes as the engine reports them.
int64_t ProcessRss(const colo::v1::GetMemoryInfoResponse& memory);

}  // namespace colo::test_util

#endif  // COLO_TESTS_ENGINE_ENGINE_FIXTURE_H_
