#include "engine/device/cpu_backend.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4  // Linux 5.7+
#endif

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14+
#endif

namespace colo {
namespace engine {
namespace {

constexpr size_t kDefaultGranularity = size_t{2} << 20;

absl::Status ErrnoStatus(absl::string_view call, int err, void* addr,
                         size_t bytes) {
  const std::string msg = absl::StrFormat("%s(%p, %d bytes) failed: %s (errno %d)",
                                          call, addr, bytes, strerror(err), err);
  if (err == ENOMEM) return absl::ResourceExhaustedError(msg);
  return absl::InternalError(msg);
}

absl::StatusOr<uint64_t> ReadMeminfoField(const std::string& text,
                                          absl::string_view field) {
  std::istringstream in(text);
  std::string key;
  uint64_t value_kb = 0;
  std::string unit;
  while (in >> key >> value_kb) {
    std::getline(in, unit);
    if (key.size() == field.size() + 1 && key.back() == ':' &&
        absl::string_view(key).substr(0, field.size()) == field) {
      return value_kb * 1024;
    }
  }
  return absl::InternalError(
      absl::StrCat("/proc/meminfo has no field '", field, "'"));
}

bool IsPowerOfTwo(size_t x) { return x != 0 && (x & (x - 1)) == 0; }

}  // namespace

absl::StatusOr<uint64_t> ReadProcessResidentBytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) {
    return absl::InternalError(absl::StrCat("open /proc/self/statm failed: ",
                                            strerror(errno)));
  }
  unsigned long long size_pages = 0, resident_pages = 0;
  const int n = std::fscanf(f, "%llu %llu", &size_pages, &resident_pages);
  std::fclose(f);
  if (n != 2) return absl::InternalError("cannot parse /proc/self/statm");
  return static_cast<uint64_t>(resident_pages) *
         static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

absl::StatusOr<std::unique_ptr<CpuBackend>> CpuBackend::Create(
    const Options& options) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t g = options.granularity == 0 ? kDefaultGranularity
                                            : options.granularity;
  if (!IsPowerOfTwo(g) || g % page != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CpuBackend granularity ", g,
        " must be a power of two and a multiple of the page size ", page));
  }
  return std::unique_ptr<CpuBackend>(new CpuBackend(g));
}

CpuBackend::CpuBackend(size_t granularity)
    : granularity_(granularity),
      page_bytes_(static_cast<size_t>(sysconf(_SC_PAGESIZE))) {}

CpuBackend::~CpuBackend() {
  absl::MutexLock lock(&mu_);
  for (const auto& [base, bytes] : reservations_) {
    munmap(reinterpret_cast<void*>(base), bytes);
  }
}

bool CpuBackend::InsideReservationLocked(uintptr_t address,
                                         size_t bytes) const {
  auto it = reservations_.upper_bound(address);
  if (it == reservations_.begin()) return false;
  --it;
  return address >= it->first && address + bytes <= it->first + it->second;
}

bool CpuBackend::MappedLocked(uintptr_t address, size_t bytes) const {
  const uintptr_t end = address + bytes;
  auto it = mappings_.upper_bound(address);
  if (it == mappings_.begin()) return false;
  --it;
  uintptr_t covered = address;
  while (it != mappings_.end() && it->first <= covered) {
    covered = std::max<uintptr_t>(covered, it->first + it->second);
    if (covered >= end) return true;
    ++it;
  }
  return false;
}

absl::Status CpuBackend::ExchangePages(void* a, void* b, size_t bytes) {
  const uintptr_t ua = reinterpret_cast<uintptr_t>(a);
  const uintptr_t ub = reinterpret_cast<uintptr_t>(b);
  if (bytes == 0 || bytes % page_bytes_ != 0 || ua % page_bytes_ != 0 ||
      ub % page_bytes_ != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "ExchangePages(%p, %p, %d): addresses and size must be multiples of "
        "the page size %d",
        a, b, bytes, page_bytes_));
  }
  if (ua < ub + bytes && ub < ua + bytes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "ExchangePages(%p, %p, %d): the ranges overlap", a, b, bytes));
  }
  int fail_step = 0;
  {
    absl::MutexLock lock(&mu_);
    fail_step = fail_exchange_step_;
    if (!MappedLocked(ua, bytes) || !MappedLocked(ub, bytes)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "ExchangePages(%p, %p, %d): a range is not mapped memory of this "
          "backend",
          a, b, bytes));
    }
  }
  // A scratch reservation that the first move replaces, so no step ever
  // leaves a hole another thread's mmap could land in: MREMAP_DONTUNMAP
  // keeps each source range mapped (empty) after its pages moved out.
  void* scratch = mmap(nullptr, bytes, PROT_NONE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (scratch == MAP_FAILED) {
    return ErrnoStatus("mmap(scratch)", errno, nullptr, bytes);
  }
  constexpr int kMove = MREMAP_MAYMOVE | MREMAP_FIXED;
  // mremap(from -> to), or the injected failure of step `step`.
  auto move = [bytes, fail_step](int step, void* from, void* to, int flags) {
    if (step == fail_step) {
      errno = EIO;
      return false;
    }
    return mremap(from, bytes, bytes, flags, to) != MAP_FAILED;
  };
  // 1. a's pages -> scratch (a stays mapped, empty).
  if (!move(1, a, scratch, kMove | MREMAP_DONTUNMAP)) {
    const int err = errno;
    munmap(scratch, bytes);
    if (err == EINVAL) {
      return absl::UnimplementedError(absl::StrFormat(
          "mremap(MREMAP_DONTUNMAP, %p, %d bytes) failed: %s (kernel before "
          "5.7?)",
          a, bytes, strerror(err)));
    }
    return ErrnoStatus("mremap(a -> scratch)", err, a, bytes);
  }
  // 2. b's pages -> a (b stays mapped, empty).
  if (!move(2, b, a, kMove | MREMAP_DONTUNMAP)) {
    const int err = errno;
    // Put a's pages back; copy them back if even that move fails.
    if (mremap(scratch, bytes, bytes, kMove, a) == MAP_FAILED) {
      std::memcpy(a, scratch, bytes);
      munmap(scratch, bytes);
    }
    return ErrnoStatus("mremap(b -> a)", err, b, bytes);
  }
  // 3. a's old pages -> b; the scratch range is gone afterwards.
  if (!move(3, scratch, b, kMove)) {
    std::memcpy(b, scratch, bytes);  // b is mapped (empty): copy instead
    munmap(scratch, bytes);
  }
  return absl::OkStatus();
}

void CpuBackend::FailExchangeStepForTesting(int step) {
  absl::MutexLock lock(&mu_);
  fail_exchange_step_ = step;
}

absl::StatusOr<void*> CpuBackend::ReserveAddressRange(size_t bytes) {
  if (bytes == 0 || bytes % granularity_ != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ReserveAddressRange: ", bytes, " bytes is not a positive multiple of ",
        granularity_));
  }
  // Over-reserve by one granule so the base can be aligned to granularity.
  const size_t span = bytes + granularity_;
  void* raw = mmap(nullptr, span, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (raw == MAP_FAILED) return ErrnoStatus("mmap(PROT_NONE)", errno, nullptr, span);
  const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (start + granularity_ - 1) / granularity_ * granularity_;
  if (aligned > start) munmap(raw, aligned - start);
  const uintptr_t end = start + span;
  if (end > aligned + bytes) {
    munmap(reinterpret_cast<void*>(aligned + bytes), end - (aligned + bytes));
  }
  absl::MutexLock lock(&mu_);
  reservations_[aligned] = bytes;
  return reinterpret_cast<void*>(aligned);
}

absl::Status CpuBackend::FreeAddressRange(void* base, size_t bytes) {
  const uintptr_t b = reinterpret_cast<uintptr_t>(base);
  {
    absl::MutexLock lock(&mu_);
    auto it = reservations_.find(b);
    if (it == reservations_.end() || it->second != bytes) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "FreeAddressRange(%p, %d): not a reservation", base, bytes));
    }
    auto m = mappings_.lower_bound(b);
    if (m != mappings_.end() && m->first < b + bytes) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "FreeAddressRange(%p, %d): range still has a mapping at %p", base,
          bytes, reinterpret_cast<void*>(m->first)));
    }
    reservations_.erase(it);
  }
  if (munmap(base, bytes) != 0) return ErrnoStatus("munmap", errno, base, bytes);
  return absl::OkStatus();
}

absl::StatusOr<PhysicalHandle> CpuBackend::CreatePhysical(size_t bytes) {
  if (bytes == 0 || bytes % granularity_ != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CreatePhysical: ", bytes, " bytes is not a positive multiple of ",
        granularity_));
  }
  absl::MutexLock lock(&mu_);
  const PhysicalHandle h = next_handle_++;
  physical_[h] = bytes;
  return h;
}

absl::Status CpuBackend::ReleasePhysical(PhysicalHandle handle) {
  absl::MutexLock lock(&mu_);
  if (physical_.erase(handle) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("ReleasePhysical: unknown handle ", handle));
  }
  return absl::OkStatus();
}

absl::Status CpuBackend::MapPhysical(void* address, size_t bytes,
                                     PhysicalHandle handle) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(address);
  bool try_populate = true;
  {
    absl::MutexLock lock(&mu_);
    auto p = physical_.find(handle);
    if (p == physical_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("MapPhysical: unknown handle ", handle));
    }
    if (p->second != bytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "MapPhysical: handle ", handle, " has ", p->second, " bytes, not ",
          bytes));
    }
    if (a % granularity_ != 0 || !InsideReservationLocked(a, bytes)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "MapPhysical(%p, %d): not a granular range inside a reservation",
          address, bytes));
    }
    auto m = mappings_.upper_bound(a);
    if (m != mappings_.begin()) {
      auto prev = std::prev(m);
      if (prev->first + prev->second > a) m = prev;
    }
    if (m != mappings_.end() && m->first < a + bytes) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "MapPhysical(%p, %d): overlaps the mapping at %p", address, bytes,
          reinterpret_cast<void*>(m->first)));
    }
    mappings_[a] = bytes;  // claim the range before dropping the lock
    try_populate = populate_write_supported_;
  }
  auto unclaim = [&] {
    absl::MutexLock lock(&mu_);
    mappings_.erase(a);
  };
  if (mprotect(address, bytes, PROT_READ | PROT_WRITE) != 0) {
    const int err = errno;
    unclaim();
    return ErrnoStatus("mprotect(RW)", err, address, bytes);
  }
  bool populated = false;
  if (try_populate) {
    if (madvise(address, bytes, MADV_POPULATE_WRITE) == 0) {
      populated = true;
    } else if (errno == EINVAL) {
      absl::MutexLock lock(&mu_);
      populate_write_supported_ = false;
    } else {
      const int err = errno;
      madvise(address, bytes, MADV_DONTNEED);
      mprotect(address, bytes, PROT_NONE);
      unclaim();
      return ErrnoStatus("madvise(MADV_POPULATE_WRITE)", err, address, bytes);
    }
  }
  if (!populated) {
    // Commit every page now by writing to it (the pages are zero already).
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    volatile char* p = static_cast<volatile char*>(address);
    for (size_t off = 0; off < bytes; off += page) p[off] = 0;
  }
  return absl::OkStatus();
}

absl::Status CpuBackend::UnmapRange(void* address, size_t bytes) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(address);
  {
    absl::MutexLock lock(&mu_);
    auto m = mappings_.find(a);
    if (m == mappings_.end() || m->second != bytes) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "UnmapRange(%p, %d): not a mapped range", address, bytes));
    }
  }
  if (madvise(address, bytes, MADV_DONTNEED) != 0) {
    return ErrnoStatus("madvise(MADV_DONTNEED)", errno, address, bytes);
  }
  if (mprotect(address, bytes, PROT_NONE) != 0) {
    return ErrnoStatus("mprotect(PROT_NONE)", errno, address, bytes);
  }
  absl::MutexLock lock(&mu_);
  mappings_.erase(a);
  return absl::OkStatus();
}

absl::StatusOr<DeviceMemoryInfo> CpuBackend::MemoryInfo() {
  std::ifstream in("/proc/meminfo");
  if (!in) return absl::InternalError("cannot open /proc/meminfo");
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  DeviceMemoryInfo info;
  absl::StatusOr<uint64_t> avail = ReadMeminfoField(text, "MemAvailable");
  if (!avail.ok()) return avail.status();
  absl::StatusOr<uint64_t> total = ReadMeminfoField(text, "MemTotal");
  if (!total.ok()) return total.status();
  absl::StatusOr<uint64_t> rss = ReadProcessResidentBytes();
  if (!rss.ok()) return rss.status();
  info.free_bytes = *avail;
  info.total_bytes = *total;
  info.process_resident_bytes = *rss;
  return info;
}

absl::Status CpuBackend::Synchronize() { return absl::OkStatus(); }

absl::Status CpuBackend::CopyToHost(void* host_dst, const void* device_src,
                                    size_t bytes) {
  std::memcpy(host_dst, device_src, bytes);
  return absl::OkStatus();
}

absl::Status CpuBackend::CopyToDevice(void* device_dst, const void* host_src,
                                      size_t bytes) {
  std::memcpy(device_dst, host_src, bytes);
  return absl::OkStatus();
}

absl::StatusOr<void*> CpuBackend::AllocateHost(size_t bytes) {
  if (bytes == 0) return absl::InvalidArgumentError("AllocateHost: 0 bytes");
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return ErrnoStatus("mmap(host)", errno, nullptr, bytes);
  return p;
}

absl::Status CpuBackend::FreeHost(void* host, size_t bytes) {
  if (munmap(host, bytes) != 0) return ErrnoStatus("munmap(host)", errno, host, bytes);
  return absl::OkStatus();
}

}  // namespace engine
}  // namespace colo
