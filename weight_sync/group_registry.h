// GroupRegistry: the engine's weight-update groups by name.
//
// Create() blocks for the rendezvous (up to the init timeout); while it runs
// the name is reserved, so a concurrent Create with the same name fails with
// ALREADY_EXISTS. A name whose group is broken (a transfer failed: a peer
// died or timed out) is replaced at once by a new Create, so a trainer that
// retries never trips over a dead group. Destroy of an unknown name is
// NOT_FOUND. A destroyed group's transport stays alive while an update still
// holds it (shared_ptr) and is closed when the last holder lets go; a torch
// group is shut down at once (the update in flight then fails fast).
//
// Updates Acquire() a group for their duration: a second update on a group
// in use is FAILED_PRECONDITION (each rank runs one update at a time).
//
// Thread-safe.
#ifndef COLO_WEIGHT_SYNC_GROUP_REGISTRY_H_
#define COLO_WEIGHT_SYNC_GROUP_REGISTRY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "weight_sync/transport.h"

namespace colo {
namespace weight_sync {

// What ListWeightsUpdateGroups reports about one group.
struct GroupInfo {
  TransportOptions options;
  // "creating", "ready", "updating" or "broken".
  std::string state;
  absl::Time created;
  int64_t updates = 0;
  std::string last_error;
  std::string detail;
};

class GroupRegistry {
 public:
  // Function that builds a transport; defaults to CreateTransport. Tests
  // may substitute one.
  using Factory = absl::StatusOr<std::unique_ptr<Transport>> (*)(
      const TransportOptions&, std::unique_ptr<TcpStoreServer>);

  explicit GroupRegistry(Factory factory = nullptr);

  // Forms the group options.group_name. ALREADY_EXISTS when a working group
  // has the name (or one is being created); a broken group of that name is
  // destroyed first. Otherwise the transport factory's status.
  absl::StatusOr<std::shared_ptr<Transport>> Create(
      const TransportOptions& options) ABSL_LOCKS_EXCLUDED(mu_);
  // NOT_FOUND when no group has that name, FAILED_PRECONDITION while it is
  // still being created.
  absl::StatusOr<std::shared_ptr<Transport>> Get(const std::string& name) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // Get() and mark the group in use by `what` until Release(). Also
  // FAILED_PRECONDITION when another update is using it.
  absl::StatusOr<std::shared_ptr<Transport>> Acquire(const std::string& name,
                                                     const std::string& what)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Ends a use of `transport` (if the name still maps to it), recording the
  // outcome (an update counts when `outcome` is OK).
  void Release(const std::string& name, const Transport* transport,
               const absl::Status& outcome) ABSL_LOCKS_EXCLUDED(mu_);
  // Removes the group. NOT_FOUND for unknown names; FAILED_PRECONDITION
  // while it is still being created.
  absl::Status Destroy(const std::string& name) ABSL_LOCKS_EXCLUDED(mu_);
  // Removes the group if `transport` is still the one registered under the
  // name (a failed update cleaning up after itself). True when removed.
  bool DestroyIfCurrent(const std::string& name, const Transport* transport)
      ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<GroupInfo> List() const ABSL_LOCKS_EXCLUDED(mu_);
  size_t size() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Entry {
    std::shared_ptr<Transport> transport;  // null while being created
    TransportOptions options;
    absl::Time created;
    std::string in_use;  // the update using the group, "" when idle
    int64_t updates = 0;
    std::string last_error;
  };
  // Drops an entry (closing a torch transport at once); returns the
  // transport so the caller releases it outside the lock.
  static std::shared_ptr<Transport> Drop(Entry* entry);

  const Factory factory_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Entry> groups_ ABSL_GUARDED_BY(mu_);
};

}  // namespace weight_sync
}  // namespace colo

#endif  // COLO_WEIGHT_SYNC_GROUP_REGISTRY_H_
