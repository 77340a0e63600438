#include "weight_sync/receiver.h"

#include <algorithm>
#include <cstring>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "weight_sync/bucket_plan.h"
#include "weight_sync/update_protocol.h"

namespace colo {
namespace weight_sync {
namespace {

int64_t MicrosSince(absl::Time start) {
  return absl::ToInt64Microseconds(absl::Now() - start);
}

// A buffer from the caching allocator, freed on destruction.
class StagingBuffer {
 public:
  StagingBuffer(engine::CachingAllocator* allocator) : allocator_(allocator) {}
  ~StagingBuffer() {
    if (ptr_ != nullptr) allocator_->Free(ptr_).IgnoreError();
  }
  absl::Status Allocate(size_t bytes) {
    absl::StatusOr<void*> p = allocator_->Allocate(bytes);
    if (!p.ok()) return p.status();
    ptr_ = *p;
    return absl::OkStatus();
  }
  void* get() const { return ptr_; }

 private:
  engine::CachingAllocator* const allocator_;
  void* ptr_ = nullptr;
};

// A host bounce buffer for device transports.
class HostBuffer {
 public:
  explicit HostBuffer(engine::DeviceBackend* backend) : backend_(backend) {}
  ~HostBuffer() {
    if (ptr_ != nullptr) backend_->FreeHost(ptr_, bytes_).IgnoreError();
  }
  absl::Status Allocate(size_t bytes) {
    absl::StatusOr<void*> p = backend_->AllocateHost(bytes);
    if (!p.ok()) return p.status();
    ptr_ = *p;
    bytes_ = bytes;
    return absl::OkStatus();
  }
  void* get() const { return ptr_; }

 private:
  engine::DeviceBackend* const backend_;
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// The transfer thread (producer) and the apply loop (consumer): transfers
// complete in order; a transfer that lands in a staging slot holds it until
// the apply loop has staged it. Direct transfers use no slot, so the
// producer never waits for the consumer on them.
class TransferPipeline {
 public:
  // Producer: waits until slot `s` is free (or Fail was called).
  bool WaitFree(int s) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    while (full_[s] && error_.ok()) cv_.Wait(&mu_);
    return error_.ok();
  }
  // Producer: transfer `k` landed (in slot `s`, or -1 for none).
  void MarkDone(size_t k, int s) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    done_ = k + 1;
    if (s >= 0) full_[s] = true;
    cv_.SignalAll();
  }
  // Consumer: waits until transfer `k` landed; false when the producer failed.
  bool WaitDone(size_t k) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    while (done_ <= k && error_.ok()) cv_.Wait(&mu_);
    return done_ > k;
  }
  void MarkFree(int s) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    full_[s] = false;
    cv_.SignalAll();
  }
  void Fail(absl::Status st) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    error_ = std::move(st);
    cv_.SignalAll();
  }
  absl::Status error() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return error_;
  }

 private:
  absl::Mutex mu_;
  absl::CondVar cv_;
  size_t done_ ABSL_GUARDED_BY(mu_) = 0;  // transfers landed
  bool full_[2] ABSL_GUARDED_BY(mu_) = {false, false};
  absl::Status error_ ABSL_GUARDED_BY(mu_);
};

absl::Status Aborted(const std::string& group_msg, const absl::Status& cause) {
  return absl::AbortedError(absl::StrCat(group_msg, ": ", cause.message()));
}

}  // namespace

absl::StatusOr<UpdateTimings> ReceiveUpdate(const ReceiverOptions& options,
                                            const std::vector<TensorSpec>& specs,
                                            size_t bucket_bytes) {
  Transport* t = options.transport;
  UpdateSink* sink = options.sink;
  if (t == nullptr || sink == nullptr || options.staging == nullptr) {
    return absl::InvalidArgumentError(
        "ReceiveUpdate needs a transport, a sink and a staging allocator");
  }
  const bool on_device = t->memory_space() == MemorySpace::kDevice;
  if (on_device && options.device_backend == nullptr) {
    return absl::InvalidArgumentError(
        "a device transport needs a device backend for the host copies");
  }
  if (t->broken()) {
    return absl::FailedPreconditionError(
        "the weight-update group is broken by an earlier failure; destroy and "
        "re-create it");
  }
  UpdateTimings timings;
  const absl::Time t_validate = absl::Now();

  // --- Local validation and preparation (no byte moved yet). ---
  absl::Status ready = specs.empty()
                           ? absl::InvalidArgumentError("the update names no tensor")
                           : sink->Validate(specs);
  absl::StatusOr<BucketPlan> plan = MakeBucketPlan(specs, bucket_bytes);
  if (ready.ok() && !plan.ok()) ready = plan.status();
  if (ready.ok()) ready = sink->Begin(specs);
  // The broadcasts of this update; on host transports a single-piece
  // transfer goes straight into the sink's staging area when it offers one.
  std::vector<Transfer> transfers;
  std::vector<void*> direct;
  // Staging holds the largest transfer that cannot go direct, not
  // bucket_bytes: a small model's update does not pin two full-size
  // buckets, and an update that goes direct entirely pins (almost) none.
  size_t slot_bytes = sizeof(UpdateHeader);
  if (ready.ok()) {
    transfers = PlanTransfers(*plan, /*whole_buckets=*/on_device);
    direct.assign(transfers.size(), nullptr);
    for (size_t k = 0; k < transfers.size(); ++k) {
      const Transfer& tr = transfers[k];
      if (!on_device && tr.num_pieces == 1) {
        const BucketPiece& p = plan->buckets[tr.bucket].pieces[tr.first_piece];
        direct[k] = sink->StagingArea(specs[p.tensor_index].name, p.tensor_offset, p.bytes);
      }
      if (direct[k] == nullptr) slot_bytes = std::max(slot_bytes, tr.bytes);
    }
  }
  StagingBuffer slots[2] = {StagingBuffer(options.staging),
                            StagingBuffer(options.staging)};
  HostBuffer bounce(options.device_backend);
  if (ready.ok()) ready = slots[0].Allocate(slot_bytes);
  if (ready.ok()) ready = slots[1].Allocate(slot_bytes);
  if (ready.ok() && on_device) ready = bounce.Allocate(slot_bytes);
  timings.validate_us = MicrosSince(t_validate);

  // --- Header + ready vote. ---
  const absl::Time t_transfer = absl::Now();
  // The header lands in slot 0 when it exists, else in a small buffer.
  StagingBuffer header_buf(options.staging);
  void* header_dev = slots[0].get();
  if (header_dev == nullptr) {
    absl::Status st = header_buf.Allocate(sizeof(UpdateHeader));
    if (!st.ok()) {
      sink->Abort();
      return st;  // cannot take part; peers time out
    }
    header_dev = header_buf.get();
  }
  absl::Status st = t->Broadcast(header_dev, sizeof(UpdateHeader), 0);
  if (!st.ok()) {
    sink->Abort();
    return st;
  }
  UpdateHeader header;
  if (on_device) {
    st = options.device_backend->CopyToHost(&header, header_dev, sizeof(header));
    if (!st.ok()) return st;
  } else {
    std::memcpy(&header, header_dev, sizeof(header));
  }
  if (ready.ok() && (header.magic != kUpdateMagic || header.plan_hash != plan->hash ||
                     header.num_buckets != plan->buckets.size())) {
    ready = absl::InvalidArgumentError(absl::StrCat(
        "the sender's bucket plan (hash ", header.plan_hash, ", ",
        header.num_buckets, " buckets) differs from this engine's (hash ",
        plan->hash, ", ", plan->buckets.size(),
        " buckets): names, dtypes, shapes or bucket_bytes differ"));
  }
  absl::StatusOr<int32_t> vote = t->AllReduceMin(ready.ok() ? 1 : 0);
  if (!vote.ok()) {
    sink->Abort();
    return vote.status();
  }
  if (!ready.ok()) {
    sink->Abort();
    return ready;
  }
  if (*vote == 0) {
    sink->Abort();
    return absl::AbortedError(
        "another rank of the group rejected the update (see its reply); no "
        "weights were transferred");
  }

  // --- Transfers, double-buffered. ---
  const std::vector<Bucket>& buckets = plan->buckets;
  // Transfers that go through staging alternate between the two slots.
  std::vector<int> slot_of(transfers.size(), -1);
  for (size_t k = 0, next = 0; k < transfers.size(); ++k) {
    if (direct[k] == nullptr) slot_of[k] = static_cast<int>(next++ % 2);
  }
  TransferPipeline pipe;
  std::thread transfer([&] {
    for (size_t k = 0; k < transfers.size(); ++k) {
      const int s = slot_of[k];
      if (s >= 0 && !pipe.WaitFree(s)) return;
      void* dst = s >= 0 ? slots[s].get() : direct[k];
      absl::Status bst = t->Broadcast(dst, transfers[k].bytes, 0);
      if (!bst.ok()) {
        pipe.Fail(absl::Status(
            bst.code(), absl::StrCat("bucket ", transfers[k].bucket, "/", buckets.size(),
                                     " (transfer ", k, "/", transfers.size(),
                                     "): ", bst.message())));
        return;
      }
      pipe.MarkDone(k, s);
    }
  });
  absl::Status apply_error;
  absl::Duration apply_time;
  for (size_t k = 0; k < transfers.size(); ++k) {
    if (!pipe.WaitDone(k)) break;
    const absl::Time a0 = absl::Now();
    const Transfer& tr = transfers[k];
    const int s = slot_of[k];
    const char* base = s >= 0 ? static_cast<const char*>(slots[s].get()) : nullptr;
    if (s >= 0 && on_device && apply_error.ok()) {
      apply_error = options.device_backend->CopyToHost(bounce.get(), base, tr.bytes);
      base = static_cast<const char*>(bounce.get());
    }
    for (size_t j = tr.first_piece; j < tr.first_piece + tr.num_pieces; ++j) {
      if (!apply_error.ok()) break;  // keep draining to stay in step
      const BucketPiece& p = buckets[tr.bucket].pieces[j];
      const std::string& name = specs[p.tensor_index].name;
      apply_error = s < 0 ? sink->MarkStaged(name, p.tensor_offset, p.bytes)
                          : sink->Stage(name, p.tensor_offset,
                                        base + (p.bucket_offset - tr.bucket_offset), p.bytes);
    }
    apply_time += absl::Now() - a0;
    if (s >= 0) pipe.MarkFree(s);
  }
  transfer.join();
  timings.transfer_us = MicrosSince(t_transfer);
  timings.apply_us = absl::ToInt64Microseconds(apply_time);
  absl::Status transfer_error = pipe.error();
  if (!transfer_error.ok()) {
    sink->Abort();
    return Aborted("weight update aborted, the transfer failed", transfer_error);
  }

  // --- Commit vote + commit. ---
  const absl::Time t_commit = absl::Now();
  if (apply_error.ok()) apply_error = sink->CheckComplete();
  vote = t->AllReduceMin(apply_error.ok() ? 1 : 0);
  if (!vote.ok()) {
    sink->Abort();
    return Aborted("weight update aborted in the commit vote", vote.status());
  }
  if (*vote == 0) {
    sink->Abort();
    if (absl::IsInvalidArgument(apply_error)) {
      // Bad weights (e.g. NaN): the caller's input, named by the sink.
      return absl::InvalidArgumentError(
          absl::StrCat("weight update rejected: ", apply_error.message()));
    }
    return absl::AbortedError(absl::StrCat(
        "weight update aborted: ",
        apply_error.ok() ? "another rank failed to apply its buckets"
                         : absl::StrCat("this rank failed to apply: ",
                                        apply_error.message())));
  }
  std::function<absl::Status()> commit = [sink] { return sink->Commit(); };
  st = options.run_commit ? options.run_commit(commit) : commit();
  if (!st.ok()) {
    sink->Abort();
    return absl::InternalError(
        absl::StrCat("every rank voted to commit but the commit failed: ",
                     st.message()));
  }
  timings.commit_us = MicrosSince(t_commit);
  timings.bytes = static_cast<int64_t>(plan->tensor_bytes);
  timings.tensors = static_cast<int64_t>(specs.size());
  return timings;
}

}  // namespace weight_sync
}  // namespace colo
