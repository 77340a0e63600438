// An in-memory rollout engine for controller tests: tags with byte counts, a
// device whose free memory (or, for "cpu", process RSS) follows the tags,
// pause/continue state, and fault knobs (unavailable, lying releases, hangs,
// scripted errors). Exposed both as an EngineClient (unit tests without gRPC)
// and as a colo.v1.RolloutEngine service (tests against a real in-process
// server). Thread-safe.
#ifndef COLO_CONTROLLER_TESTING_FAKE_ENGINE_H_
#define COLO_CONTROLLER_TESTING_FAKE_ENGINE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "colo/v1/engine.grpc.pb.h"
#include "controller/engine_client.h"

namespace colo {
namespace controller {

class FakeEngine {
 public:
  struct Options {
    std::string address = "fake:1";
    // "cuda" or "cpu".
    std::string device_kind = "cuda";
    int64_t device_total_bytes = int64_t{80} << 30;
    int64_t weights_bytes = int64_t{16} << 30;
    int64_t kv_cache_bytes = int64_t{40} << 30;
    int64_t cuda_graph_bytes = int64_t{2} << 30;
    // Process RSS not owned by any tag (cpu).
    int64_t base_rss_bytes = int64_t{1} << 30;
  };

  explicit FakeEngine(const Options& options);

  const std::string& address() const { return options_.address; }

  // --- RolloutEngine semantics ------------------------------------------
  absl::StatusOr<::colo::v1::GetServerInfoResponse> GetServerInfo() ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<::colo::v1::GetMemoryInfoResponse> GetMemoryInfo() ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<::colo::v1::PauseGenerationResponse> PauseGeneration(const std::string& mode)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<::colo::v1::ContinueGenerationResponse> ContinueGeneration(bool empty_cache)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<::colo::v1::ReleaseTagsResponse> ReleaseTags(std::vector<std::string> tags)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<::colo::v1::ResumeTagsResponse> ResumeTags(std::vector<std::string> tags)
      ABSL_LOCKS_EXCLUDED(mu_);

  // --- Fault knobs ---------------------------------------------------------
  // Every call fails with UNAVAILABLE while set (a dead engine).
  void SetUnavailable(bool unavailable) ABSL_LOCKS_EXCLUDED(mu_);
  // GetServerInfo.ipc_domain from now on.
  void SetIpcDomain(const std::string& domain) ABSL_LOCKS_EXCLUDED(mu_);
  // The release of `tag` is reported (bytes as if freed) but the memory
  // stays mapped. With `hide_in_memory_info`, GetMemoryInfo also claims 0
  // resident bytes for it (only the device numbers tell the truth).
  void SetLyingTag(const std::string& tag, bool hide_in_memory_info) ABSL_LOCKS_EXCLUDED(mu_);
  // The next call of `method` ("ReleaseTags", "PauseGeneration", ...) fails
  // with `status`.
  void FailNext(const std::string& method, absl::Status status) ABSL_LOCKS_EXCLUDED(mu_);
  // While set, calls block until cleared or the caller's cancel epoch moves
  // (then CANCELLED). GetServerInfo and Probe keep answering until some call
  // is stuck; then GetServerInfo blocks too and Probe fails at once with
  // DEADLINE_EXCEEDED.
  void SetHang(bool hang) ABSL_LOCKS_EXCLUDED(mu_);
  // Blocks until a call is hanging (for tests that need "call in flight").
  void WaitUntilHanging() ABSL_LOCKS_EXCLUDED(mu_);
  // Cancels hanging calls.
  void CancelHanging() ABSL_LOCKS_EXCLUDED(mu_);

  // --- Observation ------------------------------------------------------------
  // Calls seen, e.g. "PauseGeneration(retract)", "ReleaseTags(weights,kv_cache)".
  std::vector<std::string> calls() const ABSL_LOCKS_EXCLUDED(mu_);
  void ClearCalls() ABSL_LOCKS_EXCLUDED(mu_);
  bool paused() const ABSL_LOCKS_EXCLUDED(mu_);
  bool tag_resident(const std::string& tag) const ABSL_LOCKS_EXCLUDED(mu_);
  int64_t probes() const ABSL_LOCKS_EXCLUDED(mu_);
  // The server info, like GetServerInfo but not recorded in calls().
  absl::StatusOr<::colo::v1::GetServerInfoResponse> Probe() ABSL_LOCKS_EXCLUDED(mu_);
  // A restarted engine process: a new instance_id, every tag resident, not
  // paused, available.
  void Restart() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Tag {
    int64_t bytes = 0;
    bool resident = true;
    // Still mapped although reported released (a lying engine).
    bool leaked = false;
  };

  // Records the call and applies fault knobs; non-OK means "fail with this".
  absl::Status EnterLocked(const std::string& method, const std::string& call)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  ::colo::v1::GetServerInfoResponse InfoLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int64_t MappedBytesLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int64_t DeviceFreeLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int64_t RssLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CheckTagsLocked(std::vector<std::string>* tags) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;

  mutable absl::Mutex mu_;
  // Signalled when hang_, hanging_ or cancel_epoch_ change.
  absl::CondVar cv_;
  std::map<std::string, Tag> tags_ ABSL_GUARDED_BY(mu_);
  std::string ipc_domain_ ABSL_GUARDED_BY(mu_);
  bool paused_ ABSL_GUARDED_BY(mu_) = false;
  std::string paused_mode_ ABSL_GUARDED_BY(mu_);
  bool unavailable_ ABSL_GUARDED_BY(mu_) = false;
  bool hang_ ABSL_GUARDED_BY(mu_) = false;
  int hanging_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t cancel_epoch_ ABSL_GUARDED_BY(mu_) = 0;
  std::string lying_tag_ ABSL_GUARDED_BY(mu_);
  bool hide_lie_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_map<std::string, absl::Status> fail_next_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> calls_ ABSL_GUARDED_BY(mu_);
  int64_t probes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t incarnation_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t caching_reserved_ ABSL_GUARDED_BY(mu_) = int64_t{1} << 20;
};

// EngineClient over a FakeEngine (not owned; must outlive the client).
class FakeEngineClient : public EngineClient {
 public:
  explicit FakeEngineClient(FakeEngine* engine) : engine_(engine) {}

  const std::string& address() const override { return engine_->address(); }
  absl::StatusOr<::colo::v1::GetServerInfoResponse> GetServerInfo() override {
    if (closed()) return Closed();
    return engine_->GetServerInfo();
  }
  absl::StatusOr<::colo::v1::GetMemoryInfoResponse> GetMemoryInfo() override {
    if (closed()) return Closed();
    return engine_->GetMemoryInfo();
  }
  absl::StatusOr<::colo::v1::PauseGenerationResponse> PauseGeneration(
      const std::string& mode) override {
    if (closed()) return Closed();
    return engine_->PauseGeneration(mode);
  }
  absl::StatusOr<::colo::v1::ContinueGenerationResponse> ContinueGeneration(
      bool torch_empty_cache) override {
    if (closed()) return Closed();
    return engine_->ContinueGeneration(torch_empty_cache);
  }
  absl::StatusOr<::colo::v1::ReleaseTagsResponse> ReleaseTags(
      const std::vector<std::string>& tags) override {
    if (closed()) return Closed();
    return engine_->ReleaseTags(tags);
  }
  absl::StatusOr<::colo::v1::ResumeTagsResponse> ResumeTags(
      const std::vector<std::string>& tags) override {
    if (closed()) return Closed();
    return engine_->ResumeTags(tags);
  }
  absl::StatusOr<::colo::v1::GetServerInfoResponse> Probe() override {
    if (closed()) return Closed();
    return engine_->Probe();
  }
  void CancelPending() override { engine_->CancelHanging(); }
  // Later calls fail CANCELLED; hanging ones are cancelled.
  void Close() override {
    {
      absl::MutexLock lock(&mu_);
      closed_ = true;
    }
    engine_->CancelHanging();
  }

 private:
  bool closed() const {
    absl::MutexLock lock(&mu_);
    return closed_;
  }
  absl::Status Closed() const {
    return absl::CancelledError("fake engine client closed: the controller is shutting down");
  }

  FakeEngine* engine_;
  mutable absl::Mutex mu_;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

// colo.v1.RolloutEngine over a FakeEngine (not owned). Generate streams
// max_new_tokens tokens (last input id + 1, + 2, ...) one per message;
// the other RPCs not modelled answer UNIMPLEMENTED.
class FakeRolloutEngineService final : public ::colo::v1::RolloutEngine::Service {
 public:
  explicit FakeRolloutEngineService(FakeEngine* engine) : engine_(engine) {}

  grpc::Status GetServerInfo(grpc::ServerContext*, const ::colo::v1::GetServerInfoRequest*,
                             ::colo::v1::GetServerInfoResponse* response) override;
  grpc::Status GetMemoryInfo(grpc::ServerContext*, const ::colo::v1::GetMemoryInfoRequest*,
                             ::colo::v1::GetMemoryInfoResponse* response) override;
  grpc::Status PauseGeneration(grpc::ServerContext*, const ::colo::v1::PauseGenerationRequest*,
                               ::colo::v1::PauseGenerationResponse* response) override;
  grpc::Status ContinueGeneration(grpc::ServerContext*,
                                  const ::colo::v1::ContinueGenerationRequest*,
                                  ::colo::v1::ContinueGenerationResponse* response) override;
  grpc::Status ReleaseTags(grpc::ServerContext*, const ::colo::v1::ReleaseTagsRequest*,
                           ::colo::v1::ReleaseTagsResponse* response) override;
  grpc::Status ResumeTags(grpc::ServerContext*, const ::colo::v1::ResumeTagsRequest*,
                          ::colo::v1::ResumeTagsResponse* response) override;
  grpc::Status Generate(grpc::ServerContext*, const ::colo::v1::GenerateRequest*,
                        grpc::ServerWriter<::colo::v1::GenerateResponse>* writer) override;

 private:
  FakeEngine* engine_;
};

}  // namespace controller
}  // namespace colo

#endif  // COLO_CONTROLLER_TESTING_FAKE_ENGINE_H_
