// DeviceBackend: the seam between colo's memory managers and a device's
// virtual-memory API (CUDA driver VMM on GPUs, mmap/madvise on CPU).
//
// The model is the CUDA VMM one:
//   1. reserve a virtual address (VA) range            ReserveAddressRange
//   2. create a physical memory chunk                   CreatePhysical
//   3. map the chunk at an address inside the range and
//      grant read/write access                          MapPhysical
//   4. unmap (physical memory stays alive while a
//      handle exists)                                   UnmapRange
//   5. release the chunk / free the VA range            ReleasePhysical /
//                                                       FreeAddressRange
// Release-with-stable-address = 4 + 5a; resume = 2 + 3 at the same VA.
//
// All sizes are bytes and must be multiples of granularity() (addresses too,
// relative to a reservation's base). The raw virtual methods are what a
// backend implements; most callers use the move-only RAII wrappers
// (Reservation, PhysicalAllocation, Mapping) returned by the non-virtual
// helpers, which undo themselves on destruction.
//
// Thread safety: every DeviceBackend implementation is thread-safe.
// Error codes: INVALID_ARGUMENT (unaligned/zero sizes, address outside a
// reservation, unknown handle), RESOURCE_EXHAUSTED (out of device memory or
// VA space), UNAVAILABLE (driver missing), INTERNAL (unexpected driver or
// syscall failure; the message names the call and the numbers).
#ifndef COLO_ENGINE_DEVICE_DEVICE_BACKEND_H_
#define COLO_ENGINE_DEVICE_DEVICE_BACKEND_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace colo {
namespace engine {

// Device memory as the driver (CUDA: cuMemGetInfo) or the kernel (CPU:
// /proc/meminfo MemAvailable/MemTotal, /proc/self/statm) sees it.
struct DeviceMemoryInfo {
  uint64_t free_bytes = 0;
  uint64_t total_bytes = 0;
  // Resident set size of this process; CPU backend only (0 on CUDA).
  uint64_t process_resident_bytes = 0;
};

// Opaque physical-memory handle (CUmemGenericAllocationHandle on CUDA, a
// bookkeeping id on CPU). 0 is never a valid handle.
using PhysicalHandle = uint64_t;

class DeviceBackend;

// A reserved VA range. Move-only; the destructor frees the range (errors are
// logged). Everything mapped inside must be unmapped first.
class Reservation {
 public:
  Reservation() = default;
  Reservation(DeviceBackend* backend, void* base, size_t bytes);
  ~Reservation();
  Reservation(Reservation&& other) noexcept;
  Reservation& operator=(Reservation&& other) noexcept;
  Reservation(const Reservation&) = delete;
  Reservation& operator=(const Reservation&) = delete;

  bool valid() const { return base_ != nullptr; }
  void* base() const { return base_; }
  size_t bytes() const { return bytes_; }
  int device() const { return device_; }
  // Frees the range now; returns the backend's status. Idempotent.
  absl::Status Reset();

 private:
  DeviceBackend* backend_ = nullptr;
  void* base_ = nullptr;
  size_t bytes_ = 0;
  int device_ = -1;
};

// A physical memory chunk. Move-only; the destructor releases it (on CUDA the
// memory is returned once it is also unmapped everywhere).
class PhysicalAllocation {
 public:
  PhysicalAllocation() = default;
  PhysicalAllocation(DeviceBackend* backend, PhysicalHandle handle,
                     size_t bytes);
  ~PhysicalAllocation();
  PhysicalAllocation(PhysicalAllocation&& other) noexcept;
  PhysicalAllocation& operator=(PhysicalAllocation&& other) noexcept;
  PhysicalAllocation(const PhysicalAllocation&) = delete;
  PhysicalAllocation& operator=(const PhysicalAllocation&) = delete;

  bool valid() const { return handle_ != 0; }
  PhysicalHandle handle() const { return handle_; }
  size_t bytes() const { return bytes_; }
  int device() const { return device_; }
  absl::Status Reset();

 private:
  DeviceBackend* backend_ = nullptr;
  PhysicalHandle handle_ = 0;
  size_t bytes_ = 0;
  int device_ = -1;
};

// A mapped, read/write-accessible range. Move-only; the destructor unmaps.
class Mapping {
 public:
  Mapping() = default;
  Mapping(DeviceBackend* backend, void* address, size_t bytes);
  ~Mapping();
  Mapping(Mapping&& other) noexcept;
  Mapping& operator=(Mapping&& other) noexcept;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;

  bool valid() const { return address_ != nullptr; }
  void* address() const { return address_; }
  size_t bytes() const { return bytes_; }
  int device() const { return device_; }
  absl::Status Reset();

 private:
  DeviceBackend* backend_ = nullptr;
  void* address_ = nullptr;
  size_t bytes_ = 0;
  int device_ = -1;
};

class DeviceBackend {
 public:
  virtual ~DeviceBackend() = default;

  // "cpu" or "cuda" (wrappers report the wrapped backend's kind).
  virtual absl::string_view kind() const = 0;
  // Device ordinal (0 for CPU).
  virtual int device() const = 0;
  // Mapping granularity in bytes (a power of two).
  virtual size_t granularity() const = 0;

  // --- Raw VMM operations (implemented by backends). ---
  virtual absl::StatusOr<void*> ReserveAddressRange(size_t bytes) = 0;
  virtual absl::Status FreeAddressRange(void* base, size_t bytes) = 0;
  virtual absl::StatusOr<PhysicalHandle> CreatePhysical(size_t bytes) = 0;
  virtual absl::Status ReleasePhysical(PhysicalHandle handle) = 0;
  // Maps `handle` (of exactly `bytes`) at `address` inside a reservation and
  // grants read/write access. On failure nothing stays mapped.
  virtual absl::Status MapPhysical(void* address, size_t bytes,
                                   PhysicalHandle handle) = 0;
  // Unmaps [address, address+bytes), which must be exactly one earlier
  // MapPhysical range. Afterwards the pages hold no memory (CPU: RSS drops).
  virtual absl::Status UnmapRange(void* address, size_t bytes) = 0;

  // --- Device-wide operations. ---
  virtual absl::StatusOr<DeviceMemoryInfo> MemoryInfo() = 0;
  // Waits for all work queued on the device (CUDA: cuCtxSynchronize).
  virtual absl::Status Synchronize() = 0;
  // Synchronous copies between device memory and host memory.
  virtual absl::Status CopyToHost(void* host_dst, const void* device_src,
                                  size_t bytes) = 0;
  virtual absl::Status CopyToDevice(void* device_dst, const void* host_src,
                                    size_t bytes) = 0;
  // Host staging buffers (CUDA: pinned, cuMemHostAlloc; CPU: anonymous mmap).
  virtual absl::StatusOr<void*> AllocateHost(size_t bytes) = 0;
  virtual absl::Status FreeHost(void* host, size_t bytes) = 0;

  // --- Optional: exchanging memory without copying. ---
  // Page size for ExchangePages, or 0 when the backend cannot exchange (the
  // default; callers then copy).
  virtual size_t exchange_page_bytes() const { return 0; }
  // Exchanges the memory behind [a, a+bytes) and [b, b+bytes) by moving
  // physical pages between the two address ranges (no byte is copied):
  // afterwards `a` holds what `b` held and vice versa, and both addresses
  // stay valid, mapped and read/write. Both ranges must be
  // exchange_page_bytes()-aligned, a positive multiple of it in size,
  // disjoint, and inside memory this backend mapped. Nothing else may
  // access either range during the call.
  // On error both ranges keep their original contents: UNIMPLEMENTED (the
  // backend cannot exchange), INVALID_ARGUMENT (alignment, overlap, a range
  // this backend does not own), or the failed call (the caller may fall back
  // to copying).
  virtual absl::Status ExchangePages(void* a, void* b, size_t bytes);

  // --- RAII helpers over the raw operations. ---
  // `bytes` must be a positive multiple of granularity().
  absl::StatusOr<Reservation> Reserve(size_t bytes);
  absl::StatusOr<PhysicalAllocation> CreateChunk(size_t bytes);
  absl::StatusOr<Mapping> Map(void* address, const PhysicalAllocation& chunk);

  // Rounds `bytes` up to granularity(); 0 stays 0.
  size_t RoundUp(size_t bytes) const;
};

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_DEVICE_DEVICE_BACKEND_H_
