// CpuBackend: DeviceBackend over host memory with the same release semantics
// as CUDA VMM, so tests on machines without a GPU exercise real behaviour.
//
//   reserve  = mmap(PROT_NONE, MAP_NORESERVE)      (no memory committed)
//   map      = mprotect(RW) + populate (MADV_POPULATE_WRITE, or touching
//              every page when the kernel lacks it): pages committed at once
//   unmap    = madvise(MADV_DONTNEED) + mprotect(PROT_NONE): RSS really drops
//   physical = a bookkeeping handle (the pages belong to the address on CPU)
//   exchange = three mremap(MREMAP_FIXED | MREMAP_DONTUNMAP) moves through a
//              scratch reservation (ExchangePages; page tables move, no byte
//              is copied; Linux 5.7+, else UNIMPLEMENTED)
//
// MemoryInfo: free/total = MemAvailable/MemTotal from /proc/meminfo, plus
// this process's RSS from /proc/self/statm.
// Thread-safe.
#ifndef COLO_ENGINE_DEVICE_CPU_BACKEND_H_
#define COLO_ENGINE_DEVICE_CPU_BACKEND_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/device/device_backend.h"

namespace colo {
namespace engine {

class CpuBackend : public DeviceBackend {
 public:
  struct Options {
    // Mapping granularity; 0 = 2 MiB (the usual CUDA minimum granularity, so
    // CPU runs round like GPU runs). Must be a power-of-two multiple of the
    // system page size.
    size_t granularity = 0;
  };

  static absl::StatusOr<std::unique_ptr<CpuBackend>> Create(
      const Options& options);
  ~CpuBackend() override;

  absl::string_view kind() const override { return "cpu"; }
  int device() const override { return 0; }
  size_t granularity() const override { return granularity_; }

  absl::StatusOr<void*> ReserveAddressRange(size_t bytes) override;
  absl::Status FreeAddressRange(void* base, size_t bytes) override;
  absl::StatusOr<PhysicalHandle> CreatePhysical(size_t bytes) override;
  absl::Status ReleasePhysical(PhysicalHandle handle) override;
  absl::Status MapPhysical(void* address, size_t bytes,
                           PhysicalHandle handle) override;
  absl::Status UnmapRange(void* address, size_t bytes) override;

  absl::StatusOr<DeviceMemoryInfo> MemoryInfo() override;
  absl::Status Synchronize() override;
  absl::Status CopyToHost(void* host_dst, const void* device_src,
                          size_t bytes) override;
  absl::Status CopyToDevice(void* device_dst, const void* host_src,
                            size_t bytes) override;
  absl::StatusOr<void*> AllocateHost(size_t bytes) override;
  absl::Status FreeHost(void* host, size_t bytes) override;

  size_t exchange_page_bytes() const override { return page_bytes_; }
  // See DeviceBackend. Both ranges must lie in mapped ranges (MapPhysical)
  // of this backend. Each exchanged range ends up as its own kernel mapping
  // (VMA). Kernels before 6.17 refuse to move a range that crosses two VMAs
  // (EFAULT): the exchange then fails with INTERNAL and changes nothing.
  absl::Status ExchangePages(void* a, void* b, size_t bytes) override;

  // TEST ONLY: the next exchanges fail their mremap number `step` (1: a ->
  // scratch, 2: b -> a, 3: scratch -> b) as if the kernel refused it (EIO),
  // exercising the recovery paths. 0 turns it off.
  void FailExchangeStepForTesting(int step) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  explicit CpuBackend(size_t granularity);
  // True when [address, address+bytes) lies inside one reservation.
  bool InsideReservationLocked(uintptr_t address, size_t bytes) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // True when mapped ranges cover every byte of [address, address+bytes).
  bool MappedLocked(uintptr_t address, size_t bytes) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Constant after construction.
  const size_t granularity_;
  const size_t page_bytes_;

  mutable absl::Mutex mu_;
  // Reservation base -> size.
  std::map<uintptr_t, size_t> reservations_ ABSL_GUARDED_BY(mu_);
  // Mapped range start -> size.
  std::map<uintptr_t, size_t> mappings_ ABSL_GUARDED_BY(mu_);
  // Physical handle -> size.
  absl::flat_hash_map<PhysicalHandle, size_t> physical_ ABSL_GUARDED_BY(mu_);
  PhysicalHandle next_handle_ ABSL_GUARDED_BY(mu_) = 1;
  // Whether MADV_POPULATE_WRITE works here (probed lazily).
  bool populate_write_supported_ ABSL_GUARDED_BY(mu_) = true;
  int fail_exchange_step_ ABSL_GUARDED_BY(mu_) = 0;
};

// This process's resident set size in bytes (/proc/self/statm).
absl::StatusOr<uint64_t> ReadProcessResidentBytes();

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_DEVICE_CPU_BACKEND_H_
