// The controller's seam to one rollout engine. The controller talks to
// engines only through this interface; GrpcEngineClient implements it over
// the colo.v1.RolloutEngine service, tests use an in-memory fake.
#ifndef COLO_CONTROLLER_ENGINE_CLIENT_H_
#define COLO_CONTROLLER_ENGINE_CLIENT_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "colo/v1/engine.pb.h"

namespace colo {
namespace controller {

// Implementations are thread-safe: the controller calls one client from the
// transition thread and the health-watch thread at once. Every call is
// bounded by a deadline and returns the engine's error (or UNAVAILABLE /
// DEADLINE_EXCEEDED / CANCELLED from the transport) as a Status.
class EngineClient {
 public:
  virtual ~EngineClient() = default;

  // "host:port" of the engine.
  virtual const std::string& address() const = 0;

  virtual absl::StatusOr<::colo::v1::GetServerInfoResponse> GetServerInfo() = 0;
  virtual absl::StatusOr<::colo::v1::GetMemoryInfoResponse> GetMemoryInfo() = 0;
  virtual absl::StatusOr<::colo::v1::PauseGenerationResponse> PauseGeneration(
      const std::string& mode) = 0;
  virtual absl::StatusOr<::colo::v1::ContinueGenerationResponse> ContinueGeneration(
      bool torch_empty_cache) = 0;
  virtual absl::StatusOr<::colo::v1::ReleaseTagsResponse> ReleaseTags(
      const std::vector<std::string>& tags) = 0;
  virtual absl::StatusOr<::colo::v1::ResumeTagsResponse> ResumeTags(
      const std::vector<std::string>& tags) = 0;
  // Short-deadline liveness probe (the health watch): the engine's server
  // info when it answers (its instance_id tells a restart).
  virtual absl::StatusOr<::colo::v1::GetServerInfoResponse> Probe() = 0;

  // Cancels every call in flight (they fail promptly with CANCELLED); later
  // calls are unaffected. Used when the engine is declared lost.
  virtual void CancelPending() = 0;

  // Cancels every call in flight and fails every later call at once with
  // CANCELLED ("controller shutting down"). Used on SIGTERM, so a transition
  // blocked on a hung engine ends without waiting out its deadline.
  // Idempotent.
  virtual void Close() = 0;
};

}  // namespace controller
}  // namespace colo

#endif  // COLO_CONTROLLER_ENGINE_CLIENT_H_
