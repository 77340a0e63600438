// GroupRegistry: the engine's weight-update groups by name.
//
// Create() blocks for the rendezvous (up to the init timeout); while it runs
// the name is reserved, so a concurrent or later Create with the same name
// fails with ALREADY_EXISTS (until Destroy). Destroy of an unknown name is
// NOT_FOUND. A destroyed group's transport stays alive while an update still
// holds it (shared_ptr) and is closed when the last holder lets go.
//
// Thread-safe.
#ifndef COLO_WEIGHT_SYNC_GROUP_REGISTRY_H_
#define COLO_WEIGHT_SYNC_GROUP_REGISTRY_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "weight_sync/transport.h"

namespace colo {
namespace weight_sync {

class GroupRegistry {
 public:
  // Function that builds a transport; defaults to CreateTransport. Tests
  // may substitute one.
  using Factory = absl::StatusOr<std::unique_ptr<Transport>> (*)(
      const TransportOptions&, std::unique_ptr<TcpStoreServer>);

  explicit GroupRegistry(Factory factory = nullptr);

  // Forms the group options.group_name. ALREADY_EXISTS when the name is in
  // use (or being created); otherwise the transport factory's status.
  absl::StatusOr<std::shared_ptr<Transport>> Create(
      const TransportOptions& options) ABSL_LOCKS_EXCLUDED(mu_);
  // NOT_FOUND when no group has that name, FAILED_PRECONDITION while it is
  // still being created.
  absl::StatusOr<std::shared_ptr<Transport>> Get(const std::string& name) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // Removes the group. NOT_FOUND for unknown names; FAILED_PRECONDITION
  // while it is still being created.
  absl::Status Destroy(const std::string& name) ABSL_LOCKS_EXCLUDED(mu_);
  size_t size() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  const Factory factory_;
  mutable absl::Mutex mu_;
  // A null value marks a name reserved by a Create in progress.
  absl::flat_hash_map<std::string, std::shared_ptr<Transport>> groups_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace weight_sync
}  // namespace colo

#endif  // COLO_WEIGHT_SYNC_GROUP_REGISTRY_H_
