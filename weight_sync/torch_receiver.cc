#include "weight_sync/torch_receiver.h"

#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

namespace colo {
namespace weight_sync {
namespace {

int64_t MicrosSince(absl::Time start) {
  return absl::ToInt64Microseconds(absl::Now() - start);
}

}  // namespace

absl::StatusOr<UpdateTimings> ReceiveTorchUpdate(const TorchReceiveOptions& options,
                                                 const std::vector<TensorSpec>& specs) {
  Transport* t = options.transport;
  UpdateSink* sink = options.sink;
  if (t == nullptr || (sink == nullptr && options.rejection.ok())) {
    return absl::InvalidArgumentError("ReceiveTorchUpdate needs a transport and a sink");
  }
  if (t->broken()) {
    return absl::FailedPreconditionError(
        "the weight-update group is broken by an earlier failure; destroy and re-create it");
  }
  const bool on_device = t->memory_space() == MemorySpace::kDevice;
  if (on_device && (options.device_staging == nullptr || options.device_backend == nullptr)) {
    return absl::FailedPreconditionError(
        "a torch NCCL group needs device staging on this engine (--device=cuda)");
  }
  UpdateTimings timings;
  const absl::Time t_validate = absl::Now();
  absl::Status ready = options.rejection;
  if (ready.ok() && specs.empty()) ready = absl::InvalidArgumentError("the update names no tensor");
  if (ready.ok()) ready = sink->Begin(specs);
  timings.validate_us = MicrosSince(t_validate);

  const absl::Time t_transfer = absl::Now();
  // Where each tensor lands: the sink's staging area (fixed once Begin
  // succeeded), a host bounce buffer for a sink without one, or nothing
  // (draining a rejected update).
  const size_t n = specs.size();
  std::vector<void*> dst(n, nullptr);
  std::vector<std::vector<char>> bounce(n);
  if (ready.ok()) {
    for (size_t k = 0; k < n; ++k) {
      const size_t bytes = specs[k].Bytes();
      dst[k] = sink->StagingArea(specs[k].name, 0, bytes);
      if (dst[k] == nullptr && bytes > 0) {
        bounce[k].resize(bytes);
        dst[k] = bounce[k].data();
      }
    }
  }
  // The broadcasts run on their own thread; this thread stages each landed
  // tensor (the sink's NaN scan) while the next one is on the wire.
  absl::Mutex mu;
  size_t landed = 0;  // guarded by mu
  absl::Status transfer_error;  // guarded by mu
  std::thread receiver([&] {
    for (size_t k = 0; k < n; ++k) {
      const TensorSpec& spec = specs[k];
      const size_t bytes = spec.Bytes();
      // NCCL receives into device memory (also when draining).
      void* device = nullptr;
      absl::Status st;
      if (on_device && bytes > 0) {
        absl::StatusOr<void*> d = options.device_staging->Allocate(bytes);
        if (!d.ok()) {
          // Cannot take part in this broadcast: the group is out of step.
          t->Close();
          st = absl::AbortedError(absl::StrCat("no device staging: ", d.status().message()));
        } else {
          device = *d;
        }
      }
      if (st.ok()) st = t->Broadcast(on_device ? device : dst[k], bytes, 0);
      if (st.ok() && on_device && dst[k] != nullptr && bytes > 0) {
        st = options.device_backend->CopyToHost(dst[k], device, bytes);
      }
      if (device != nullptr) options.device_staging->Free(device).IgnoreError();
      absl::MutexLock lock(&mu);
      if (!st.ok()) {
        transfer_error = absl::Status(
            st.code(), absl::StrCat("receiving tensor \"", spec.name, "\" (",
                                    WireDtypeName(spec.dtype), " ", ShapeToString(spec.shape),
                                    "): ", st.message()));
        return;
      }
      landed = k + 1;
    }
  });
  for (size_t k = 0; k < n; ++k) {
    {
      absl::MutexLock lock(&mu);
      auto arrived = [&] { return landed > k || !transfer_error.ok(); };
      mu.Await(absl::Condition(&arrived));
      if (landed <= k) break;  // the transfer failed
    }
    if (!ready.ok()) continue;  // draining a rejected update
    const size_t bytes = specs[k].Bytes();
    ready = bounce[k].empty() ? sink->MarkStaged(specs[k].name, 0, bytes)
                              : sink->Stage(specs[k].name, 0, bounce[k].data(), bytes);
    timings.bytes += static_cast<int64_t>(bytes);
  }
  receiver.join();
  if (!transfer_error.ok()) {
    if (sink != nullptr) sink->Abort();
    return transfer_error;
  }
  timings.transfer_us = MicrosSince(t_transfer);
  if (ready.ok()) ready = sink->CheckComplete();
  if (!ready.ok()) {
    if (sink != nullptr) sink->Abort();
    return ready;
  }
  const absl::Time t_commit = absl::Now();
  std::function<absl::Status()> commit = [sink] { return sink->Commit(); };
  absl::Status st = options.run_commit ? options.run_commit(commit) : commit();
  if (!st.ok()) {
    sink->Abort();
    return st;
  }
  timings.commit_us = MicrosSince(t_commit);
  timings.tensors = static_cast<int64_t>(specs.size());
  return timings;
}

}  // namespace weight_sync
}  // namespace colo
