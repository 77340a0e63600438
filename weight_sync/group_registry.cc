#include "weight_sync/group_registry.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "weight_sync/tcp_store.h"

namespace colo {
namespace weight_sync {

GroupRegistry::GroupRegistry(Factory factory)
    : factory_(factory != nullptr ? factory : &CreateTransport) {}

std::shared_ptr<Transport> GroupRegistry::Drop(Entry* entry) {
  std::shared_ptr<Transport> t = std::move(entry->transport);
  // A torch transport can be shut down under a running update (it then
  // fails at once); colo transports close when the last holder lets go.
  // (TorchTransport over gloo; NCCL communicators are not closed under a
  // running collective.)
  if (t != nullptr && t->rendezvous() == "torch" && t->memory_space() == MemorySpace::kHost) {
    t->Close();
  }
  return t;
}

absl::StatusOr<std::shared_ptr<Transport>> GroupRegistry::Create(
    const TransportOptions& options) {
  std::shared_ptr<Transport> stale;
  {
    absl::MutexLock lock(&mu_);
    auto it = groups_.find(options.group_name);
    if (it != groups_.end()) {
      const Entry& e = it->second;
      if (e.transport == nullptr) {
        return absl::AlreadyExistsError(absl::StrCat(
            "weight-update group \"", options.group_name,
            "\" is being created by another InitWeightsUpdateGroup call"));
      }
      if (!e.transport->broken()) {
        return absl::AlreadyExistsError(absl::StrCat(
            "weight-update group \"", options.group_name,
            "\" already exists; destroy it first or use another group_name"));
      }
      // A dead group (its last transfer failed) is replaced.
      stale = Drop(&it->second);
      groups_.erase(it);
    }
    Entry reserved;
    reserved.options = options;
    reserved.created = absl::Now();
    groups_[options.group_name] = std::move(reserved);  // reserve the name
  }
  stale.reset();
  absl::StatusOr<std::unique_ptr<Transport>> t = factory_(options, nullptr);
  absl::MutexLock lock(&mu_);
  if (!t.ok()) {
    groups_.erase(options.group_name);
    return t.status();
  }
  std::shared_ptr<Transport> shared(std::move(t).value());
  Entry& e = groups_[options.group_name];
  e.transport = shared;
  e.created = absl::Now();
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
  if (it->second.transport == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "weight-update group \"", name, "\" is still being created"));
  }
  return it->second.transport;
}

absl::StatusOr<std::shared_ptr<Transport>> GroupRegistry::Acquire(const std::string& name,
                                                                  const std::string& what) {
  absl::MutexLock lock(&mu_);
  auto it = groups_.find(name);
  if (it == groups_.end()) {
    return absl::NotFoundError(
        absl::StrCat("no weight-update group named \"", name, "\""));
  }
  Entry& e = it->second;
  if (e.transport == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "weight-update group \"", name, "\" is still being created"));
  }
  if (!e.in_use.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "weight-update group \"", name, "\" is in use by ", e.in_use,
        "; one update at a time per group"));
  }
  e.in_use = what;
  return e.transport;
}

void GroupRegistry::Release(const std::string& name, const Transport* transport,
                            const absl::Status& outcome) {
  absl::MutexLock lock(&mu_);
  auto it = groups_.find(name);
  if (it == groups_.end() || it->second.transport.get() != transport) return;
  Entry& e = it->second;
  e.in_use.clear();
  if (outcome.ok()) {
    ++e.updates;
  } else {
    e.last_error = std::string(outcome.message());
  }
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
    if (it->second.transport == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "weight-update group \"", name, "\" is still being created"));
    }
    dropped = Drop(&it->second);
    groups_.erase(it);
  }
  // The transport closes when the last holder (maybe an update) lets go,
  // outside the lock.
  dropped.reset();
  return absl::OkStatus();
}

bool GroupRegistry::DestroyIfCurrent(const std::string& name, const Transport* transport) {
  std::shared_ptr<Transport> dropped;
  {
    absl::MutexLock lock(&mu_);
    auto it = groups_.find(name);
    if (it == groups_.end() || it->second.transport.get() != transport) return false;
    dropped = Drop(&it->second);
    groups_.erase(it);
  }
  dropped.reset();
  return true;
}

std::vector<GroupInfo> GroupRegistry::List() const {
  absl::MutexLock lock(&mu_);
  std::vector<GroupInfo> out;
  for (const auto& [name, e] : groups_) {
    GroupInfo info;
    info.options = e.options;
    info.created = e.created;
    info.updates = e.updates;
    info.last_error = e.last_error;
    if (e.transport == nullptr) {
      info.state = "creating";
    } else {
      info.detail = e.transport->detail();
      info.state = e.transport->broken() ? "broken" : (e.in_use.empty() ? "ready" : "updating");
    }
    out.push_back(std::move(info));
  }
  return out;
}

size_t GroupRegistry::size() const {
  absl::MutexLock lock(&mu_);
  return groups_.size();
}

}  // namespace weight_sync
}  // namespace colo
