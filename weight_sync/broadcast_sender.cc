#include "weight_sync/broadcast_sender.h"

#include <algorithm>
#include <cstring>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "weight_sync/bucket_plan.h"
#include "weight_sync/update_protocol.h"

namespace colo {
namespace weight_sync {
namespace {

int64_t MicrosSince(absl::Time start) {
  return absl::ToInt64Microseconds(absl::Now() - start);
}

// Copies the pieces of transfer `tr` into `dst`.
void Pack(const BucketPlan& plan, const Transfer& tr,
          const std::vector<SendTensor>& tensors, char* dst) {
  const std::vector<BucketPiece>& pieces = plan.buckets[tr.bucket].pieces;
  for (size_t j = tr.first_piece; j < tr.first_piece + tr.num_pieces; ++j) {
    const BucketPiece& p = pieces[j];
    std::memcpy(dst + (p.bucket_offset - tr.bucket_offset),
                static_cast<const char*>(tensors[p.tensor_index].data) + p.tensor_offset,
                p.bytes);
  }
}

// Device staging buffers from the caching allocator.
struct DeviceSlots {
  engine::CachingAllocator* allocator = nullptr;
  void* ptr[2] = {nullptr, nullptr};
  ~DeviceSlots() {
    for (void* p : ptr) {
      if (p != nullptr) allocator->Free(p).IgnoreError();
    }
  }
};

}  // namespace

absl::StatusOr<SendReport> SendUpdate(const SendOptions& options,
                                      const std::vector<SendTensor>& tensors) {
  Transport* t = options.transport;
  if (t == nullptr || t->rank() != 0) {
    return absl::InvalidArgumentError("SendUpdate needs rank 0 of a group");
  }
  const bool on_device = t->memory_space() == MemorySpace::kDevice;
  if (on_device && (options.device_backend == nullptr || options.staging == nullptr)) {
    return absl::InvalidArgumentError(
        "a device transport needs a device backend and a staging allocator");
  }
  std::vector<TensorSpec> specs;
  for (const SendTensor& s : tensors) {
    if (s.data == nullptr && s.spec.Bytes() > 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor \"", s.spec.name, "\" has no data"));
    }
    specs.push_back(s.spec);
  }
  const size_t bucket_bytes =
      options.bucket_bytes == 0 ? kDefaultBucketBytes : options.bucket_bytes;
  absl::StatusOr<BucketPlan> plan = MakeBucketPlan(specs, bucket_bytes);
  if (!plan.ok()) return plan.status();

  // Host transports send a single-piece transfer straight from the tensor;
  // the rest is packed into staging that holds the largest such transfer.
  const std::vector<Transfer> transfers = PlanTransfers(*plan, /*whole_buckets=*/on_device);
  auto direct = [&](size_t k) { return !on_device && transfers[k].num_pieces == 1; };
  size_t slot_bytes = sizeof(UpdateHeader);
  for (size_t k = 0; k < transfers.size(); ++k) {
    if (!direct(k)) slot_bytes = std::max(slot_bytes, transfers[k].bytes);
  }
  std::vector<char> host[2];
  host[0].resize(slot_bytes);
  host[1].resize(slot_bytes);
  DeviceSlots dev;
  dev.allocator = options.staging;
  if (on_device) {
    for (void*& p : dev.ptr) {
      absl::StatusOr<void*> m = options.staging->Allocate(slot_bytes);
      if (!m.ok()) return m.status();
      p = *m;
    }
  }
  // Puts `bytes` host bytes where the transport reads them; returns that.
  auto place = [&](int slot, void* src, size_t bytes) -> absl::StatusOr<void*> {
    if (!on_device) return src;
    absl::Status st = options.device_backend->CopyToDevice(dev.ptr[slot], src, bytes);
    if (!st.ok()) return st;
    return dev.ptr[slot];
  };

  SendReport report;
  report.bytes = static_cast<int64_t>(plan->tensor_bytes);
  report.buckets = static_cast<int64_t>(plan->buckets.size());

  // --- Header + ready vote. ---
  const absl::Time t_ready = absl::Now();
  UpdateHeader header;
  header.plan_hash = plan->hash;
  header.num_buckets = plan->buckets.size();
  header.tensor_bytes = plan->tensor_bytes;
  std::memcpy(host[0].data(), &header, sizeof(header));
  absl::StatusOr<void*> hdr = place(0, host[0].data(), sizeof(header));
  if (!hdr.ok()) return hdr.status();
  absl::Status st = t->Broadcast(*hdr, sizeof(header), 0);
  if (!st.ok()) return st;
  absl::StatusOr<int32_t> vote = t->AllReduceMin(1);
  if (!vote.ok()) return vote.status();
  report.ready_us = MicrosSince(t_ready);
  if (*vote == 0) {
    return absl::AbortedError(
        "an engine rejected the update before any weight was sent (see the "
        "engines' UpdateWeightsFromDistributed replies: names, dtypes, shapes)");
  }

  // --- Transfers: a packer thread fills one slot while the other is sent;
  // direct transfers go from the tensors without waiting for it. ---
  const absl::Time t_transfer = absl::Now();
  const std::vector<Bucket>& buckets = plan->buckets;
  std::vector<int> slot_of(transfers.size(), -1);
  for (size_t k = 0, next = 0; k < transfers.size(); ++k) {
    if (!direct(k)) slot_of[k] = static_cast<int>(next++ % 2);
  }
  absl::Mutex mu;
  absl::CondVar cv;
  bool packed[2] = {false, false};
  bool stop = false;
  std::thread packer([&] {
    for (size_t k = 0; k < transfers.size(); ++k) {
      const int s = slot_of[k];
      if (s < 0) continue;
      {
        absl::MutexLock lock(&mu);
        while (packed[s] && !stop) cv.Wait(&mu);
        if (stop) return;
      }
      Pack(*plan, transfers[k], tensors, host[s].data());
      absl::MutexLock lock(&mu);
      packed[s] = true;
      cv.SignalAll();
    }
  });
  absl::Status send_error;
  for (size_t k = 0; k < transfers.size() && send_error.ok(); ++k) {
    const int s = slot_of[k];
    const Transfer& tr = transfers[k];
    void* src = nullptr;
    if (s >= 0) {
      absl::MutexLock lock(&mu);
      while (!packed[s]) cv.Wait(&mu);
      src = host[s].data();
    } else {
      const BucketPiece& p = buckets[tr.bucket].pieces[tr.first_piece];
      src = const_cast<char*>(static_cast<const char*>(tensors[p.tensor_index].data) +
                              p.tensor_offset);
    }
    absl::StatusOr<void*> buf = place(std::max(s, 0), src, tr.bytes);
    send_error = buf.status();
    if (send_error.ok()) send_error = t->Broadcast(*buf, tr.bytes, 0);
    const bool bucket_done =
        k + 1 == transfers.size() || transfers[k + 1].bucket != tr.bucket;
    if (send_error.ok() && bucket_done && options.after_bucket_for_testing) {
      options.after_bucket_for_testing(static_cast<int64_t>(tr.bucket) + 1);
    }
    if (!send_error.ok()) {
      send_error = absl::Status(
          send_error.code(), absl::StrCat("bucket ", tr.bucket, "/", buckets.size(),
                                          " (transfer ", k, "/", transfers.size(),
                                          "): ", send_error.message()));
    }
    if (s >= 0) {
      absl::MutexLock lock(&mu);
      packed[s] = false;
      cv.SignalAll();
    }
  }
  {
    absl::MutexLock lock(&mu);
    stop = true;
    cv.SignalAll();
  }
  packer.join();
  report.transfer_us = MicrosSince(t_transfer);
  if (!send_error.ok()) return send_error;

  // --- Commit vote. ---
  const absl::Time t_commit = absl::Now();
  vote = t->AllReduceMin(1);
  if (!vote.ok()) return vote.status();
  report.commit_us = MicrosSince(t_commit);
  if (*vote == 0) {
    return absl::AbortedError(
        "an engine failed to apply the update; every engine aborted it and "
        "keeps its previous weights");
  }
  return report;
}

}  // namespace weight_sync
}  // namespace colo
