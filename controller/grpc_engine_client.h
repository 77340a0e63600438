// EngineClient over gRPC: one channel and stub per engine address.
#ifndef COLO_CONTROLLER_GRPC_ENGINE_CLIENT_H_
#define COLO_CONTROLLER_GRPC_ENGINE_CLIENT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "colo/v1/engine.grpc.pb.h"
#include "controller/engine_client.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/security/credentials.h"

namespace colo {
namespace controller {

// Thread-safe.
class GrpcEngineClient : public EngineClient {
 public:
  struct Options {
    // "host:port".
    std::string address;
    // Deadline of every engine call (release/resume can take seconds on GPU).
    absl::Duration call_timeout = absl::Seconds(60);
    // Deadline of Probe().
    absl::Duration probe_timeout = absl::Seconds(2);
    // Sent as `authorization: Bearer <token>` when not empty.
    std::string auth_token;
    // Channel credentials; insecure when null.
    std::shared_ptr<grpc::ChannelCredentials> credentials;
  };

  // INVALID_ARGUMENT for an address that is not host:port.
  static absl::StatusOr<std::unique_ptr<GrpcEngineClient>> Create(const Options& options);

  const std::string& address() const override { return options_.address; }
  absl::StatusOr<::colo::v1::GetServerInfoResponse> GetServerInfo() override;
  absl::StatusOr<::colo::v1::GetMemoryInfoResponse> GetMemoryInfo() override;
  absl::StatusOr<::colo::v1::PauseGenerationResponse> PauseGeneration(
      const std::string& mode) override;
  absl::StatusOr<::colo::v1::ContinueGenerationResponse> ContinueGeneration(
      bool torch_empty_cache) override;
  absl::StatusOr<::colo::v1::ReleaseTagsResponse> ReleaseTags(
      const std::vector<std::string>& tags) override;
  absl::StatusOr<::colo::v1::ResumeTagsResponse> ResumeTags(
      const std::vector<std::string>& tags) override;
  absl::StatusOr<::colo::v1::GetServerInfoResponse> Probe() override;
  void CancelPending() override ABSL_LOCKS_EXCLUDED(mu_);
  void Close() override ABSL_LOCKS_EXCLUDED(mu_);

 private:
  GrpcEngineClient(const Options& options, std::shared_ptr<grpc::Channel> channel);

  // Runs `call(context)` with a deadline of `timeout`, registered for
  // CancelPending; prefixes errors with the address and `method`.
  template <typename Call>
  absl::Status Invoke(const char* method, absl::Duration timeout, Call call)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Constant after construction.
  const Options options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<::colo::v1::RolloutEngine::Stub> stub_;

  absl::Mutex mu_;
  absl::flat_hash_set<grpc::ClientContext*> in_flight_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

// Splits "a:1,b:2" into addresses; INVALID_ARGUMENT for an empty list, an
// entry without a port, a port outside [1, 65535] or a duplicate.
absl::StatusOr<std::vector<std::string>> ParseEngineList(const std::string& list);

}  // namespace controller
}  // namespace colo

#endif  // COLO_CONTROLLER_GRPC_ENGINE_CLIENT_H_
