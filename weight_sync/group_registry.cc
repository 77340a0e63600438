#include "weight_sync/group_registry.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "weight_sync/tcp_store.h"

namespace colo {
namespace weight_sync {

GroupRegistry::GroupRegistry(Factory factory)
    : factory_(factory != nullptr ? factory : &CreateTransport) {}

absl::StatusOr<std::shared_ptr<Transport>> GroupRegistry::Create(
    const TransportOptions& options) {
  {
    absl::MutexLock lock(&mu_);
    if (groups_.contains(options.group_name)) {
      return absl::AlreadyExistsError(absl::StrCat(
          "weight-update group \"", options.group_name,
          "\" already exists; destroy it first or use another group_name"));
    }
    groups_[options.group_name] = nullptr;  // reserve the name
  }
  absl::StatusOr<std::unique_ptr<Transport>> t = factory_(options, nullptr);
  absl::MutexLock lock(&mu_);
  if (!t.ok()) {
    groups_.erase(options.group_name);
    return t.status();
  }
  std::shared_ptr<Transport> shared(std::move(t).value());
  groups_[options.group_name] = shared;
  return shared;
}

absl::StatusOr<std::shared_ptr<Transport>> GroupRegistry::Get(
    const std::string& name) const {
  absl::MutexLock lock(&mu_);
  auto it = groups_.find(name);
  if (it == groups_.end()) {
    return absl::NotFoundError(
        absl::StrCat("no weight-update group named \"", name, "\""));
  }
  if (it->second == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "weight-update group \"", name, "\" is still being created"));
  }
  return it->second;
}

absl::Status GroupRegistry::Destroy(const std::string& name) {
  std::shared_ptr<Transport> dropped;
  {
    absl::MutexLock lock(&mu_);
    auto it = groups_.find(name);
    if (it == groups_.end()) {
      return absl::NotFoundError(
          absl::StrCat("no weight-update group named \"", name, "\""));
    }
    if (it->second == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "weight-update group \"", name, "\" is still being created"));
    }
    dropped = std::move(it->second);
    groups_.erase(it);
  }
  // The transport closes when the last holder (maybe an update) lets go,
  // outside the lock.
  dropped.reset();
  return absl::OkStatus();
}

size_t GroupRegistry::size() const {
  absl::MutexLock lock(&mu_);
  return groups_.size();
}

}  // namespace weight_sync
}  // namespace colo
