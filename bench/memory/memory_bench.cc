// Prints release/resume cost of the TaggedPool per GiB, with and without host
// backup, against the raw floor measured in the same run, and the caching
// allocator's ns/op against malloc/free.
//
//   bazel run -c opt //bench/memory:memory_bench -- --gib=1 --reps=5
//   ... --backend=cuda   (on a GPU machine)
//
// Floors: "raw" = plain mmap/madvise(MADV_DONTNEED)/MADV_POPULATE_WRITE of the
// same bytes (CPU only) and memcpy for the host copy; "backend" = one
// DeviceBackend map/unmap of the whole range (no pool bookkeeping).
#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "engine/device/device_backend.h"
#include "engine/device/device_backend_factory.h"
#include "engine/memory/caching_allocator.h"
#include "engine/memory/tagged_pool.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

ABSL_FLAG(std::string, backend, "cpu", "cpu, cuda or auto");
ABSL_FLAG(double, gib, 1.0, "bytes per measurement, in GiB");
ABSL_FLAG(int, reps, 5, "repetitions (median reported)");
ABSL_FLAG(int, alloc_ops, 200000, "caching allocator operations");
ABSL_FLAG(int, host_chunk_mib, 0, "TaggedPool host backup chunk (0 = default)");
ABSL_FLAG(bool, verbose, false, "print every repetition");

namespace colo {
namespace engine {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

void Check(const absl::Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, s.ToString().c_str());
    std::exit(1);
  }
}

template <typename T>
T Value(absl::StatusOr<T> v, const char* what) {
  Check(v.status(), what);
  return std::move(*v);
}

double Median(std::vector<double> v) {
  if (absl::GetFlag(FLAGS_verbose)) {
    for (double x : v) std::fprintf(stderr, " %.1f", x);
    std::fprintf(stderr, "\n");
  }
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double MsPerGiB(absl::Duration d, size_t bytes) {
  return absl::ToDoubleMilliseconds(d) / (static_cast<double>(bytes) / kGiB);
}

struct Pair {
  double release_ms_per_gib;
  double resume_ms_per_gib;
};

// Plain mmap + populate / madvise(DONTNEED) of the same bytes (+ memcpy to a
// host buffer for the backup variant).
Pair RawCpuFloor(size_t bytes, int reps, bool with_copy) {
  char* p = static_cast<char*>(mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  char* host = nullptr;
  if (with_copy) {
    host = static_cast<char*>(mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    std::memset(host, 1, bytes);
  }
  madvise(p, bytes, MADV_POPULATE_WRITE);
  std::vector<double> rel, res;
  for (int i = 0; i < reps; ++i) {
    absl::Time t0 = absl::Now();
    if (with_copy) std::memcpy(host, p, bytes);
    madvise(p, bytes, MADV_DONTNEED);
    rel.push_back(MsPerGiB(absl::Now() - t0, bytes));
    t0 = absl::Now();
    madvise(p, bytes, MADV_POPULATE_WRITE);
    if (with_copy) std::memcpy(p, host, bytes);
    res.push_back(MsPerGiB(absl::Now() - t0, bytes));
  }
  munmap(p, bytes);
  if (host != nullptr) munmap(host, bytes);
  return {Median(rel), Median(res)};
}

// One backend map/unmap of the whole range (no pool, no chunking).
Pair BackendFloor(DeviceBackend& b, size_t bytes, int reps) {
  Reservation va = Value(b.Reserve(bytes), "reserve");
  std::vector<double> rel, res;
  PhysicalAllocation chunk = Value(b.CreateChunk(bytes), "create");
  Mapping m = Value(b.Map(va.base(), chunk), "map");
  for (int i = 0; i < reps; ++i) {
    absl::Time t0 = absl::Now();
    Check(m.Reset(), "unmap");
    Check(chunk.Reset(), "release");
    rel.push_back(MsPerGiB(absl::Now() - t0, bytes));
    t0 = absl::Now();
    chunk = Value(b.CreateChunk(bytes), "create");
    m = Value(b.Map(va.base(), chunk), "map");
    res.push_back(MsPerGiB(absl::Now() - t0, bytes));
  }
  return {Median(rel), Median(res)};
}

Pair PoolCycle(DeviceBackend& b, size_t bytes, int reps, BackupPolicy policy) {
  TaggedPool::Options options;
  options.backend = &b;
  options.backup[static_cast<int>(MemoryTag::kWeights)] = policy;
  options.host_chunk_bytes = size_t(absl::GetFlag(FLAGS_host_chunk_mib)) << 20;
  auto pool = Value(TaggedPool::Create(options), "pool");
  void* p = Value(pool->Allocate(MemoryTag::kWeights, bytes, "w"), "allocate");
  (void)p;
  std::vector<double> rel, res;
  for (int i = 0; i < reps; ++i) {
    ReleaseReport r = Value(pool->Release({MemoryTag::kWeights}), "release");
    rel.push_back(MsPerGiB(r.duration, bytes));
    ResumeReport s = Value(pool->Resume({MemoryTag::kWeights}), "resume");
    res.push_back(MsPerGiB(s.duration, bytes));
  }
  return {Median(rel), Median(res)};
}

void AllocatorBench(DeviceBackend& b, int ops) {
  std::mt19937 rng(1234);
  // Mixed transient sizes: mostly small activations, some large staging.
  std::vector<size_t> sizes;
  for (int i = 0; i < 4096; ++i) {
    const int r = rng() % 100;
    if (r < 70) {
      sizes.push_back(512 + rng() % (256 << 10));
    } else if (r < 95) {
      sizes.push_back((1 << 20) + rng() % (8 << 20));
    } else {
      sizes.push_back((16 << 20) + rng() % (32 << 20));
    }
  }
  constexpr int kLive = 16;
  auto run = [&](auto alloc, auto release) {
    std::vector<void*> live(kLive, nullptr);
    absl::Time t0 = absl::Now();
    for (int i = 0; i < ops; ++i) {
      const int slot = i % kLive;
      if (live[slot] != nullptr) release(live[slot]);
      live[slot] = alloc(sizes[i % sizes.size()]);
    }
    for (void* p : live) {
      if (p != nullptr) release(p);
    }
    return absl::ToDoubleNanoseconds(absl::Now() - t0) / (2.0 * ops);
  };
  CachingAllocator::Options options;
  options.backend = &b;
  auto ca = Value(CachingAllocator::Create(options), "allocator");
  // Warm the cache once so the steady state is measured.
  run([&](size_t n) { return Value(ca->Allocate(n), "alloc"); },
      [&](void* p) { Check(ca->Free(p), "free"); });
  const double caching_ns =
      run([&](size_t n) { return Value(ca->Allocate(n), "alloc"); },
          [&](void* p) { Check(ca->Free(p), "free"); });
  const double malloc_ns = run(
      [](size_t n) {
        void* p = std::malloc(n);
        static_cast<volatile char*>(p)[0] = 1;
        return p;
      },
      [](void* p) { std::free(p); });
  const CachingAllocatorStats s = ca->Stats();
  std::printf(
      "caching_allocator: %.1f ns/op   malloc/free: %.1f ns/op   ratio %.2f  "
      "(ops=%d, live=%d, reserved=%.1f MiB, segments=%lld)\n",
      caching_ns, malloc_ns, caching_ns / malloc_ns, ops, kLive,
      s.reserved_bytes / 1048576.0, static_cast<long long>(s.segments));
}

int Main() {
  const std::string kind = absl::GetFlag(FLAGS_backend);
  auto backend = Value(CreateDeviceBackend(kind), "backend");
  const size_t bytes =
      backend->RoundUp(static_cast<size_t>(absl::GetFlag(FLAGS_gib) * kGiB));
  const int reps = absl::GetFlag(FLAGS_reps);
  std::printf("backend=%s bytes=%.2f GiB reps=%d granularity=%zu\n",
              std::string(backend->kind()).c_str(), bytes / kGiB, reps,
              backend->granularity());

  const Pair pool_discard = PoolCycle(*backend, bytes, reps, BackupPolicy::kDiscard);
  const Pair pool_backup = PoolCycle(*backend, bytes, reps, BackupPolicy::kHostCopy);
  const Pair backend_floor = BackendFloor(*backend, bytes, reps);
  std::printf("%-34s %12s %12s\n", "", "release", "resume");
  std::printf("%-34s %9.2f ms %9.2f ms  per GiB\n", "pool, discard",
              pool_discard.release_ms_per_gib, pool_discard.resume_ms_per_gib);
  std::printf("%-34s %9.2f ms %9.2f ms  per GiB\n", "pool, host copy",
              pool_backup.release_ms_per_gib, pool_backup.resume_ms_per_gib);
  std::printf("%-34s %9.2f ms %9.2f ms  per GiB\n", "floor: backend one-range map/unmap",
              backend_floor.release_ms_per_gib, backend_floor.resume_ms_per_gib);
  if (backend->kind() == "cpu") {
    const Pair raw = RawCpuFloor(bytes, reps, /*with_copy=*/false);
    const Pair raw_copy = RawCpuFloor(bytes, reps, /*with_copy=*/true);
    std::printf("%-34s %9.2f ms %9.2f ms  per GiB\n", "floor: raw madvise",
                raw.release_ms_per_gib, raw.resume_ms_per_gib);
    std::printf("%-34s %9.2f ms %9.2f ms  per GiB\n", "floor: raw memcpy + madvise",
                raw_copy.release_ms_per_gib, raw_copy.resume_ms_per_gib);
    std::printf("ratio pool/raw  discard: release %.2fx resume %.2fx\n",
                pool_discard.release_ms_per_gib / raw.release_ms_per_gib,
                pool_discard.resume_ms_per_gib / raw.resume_ms_per_gib);
    std::printf("ratio pool/raw  host copy: release %.2fx resume %.2fx\n",
                pool_backup.release_ms_per_gib / raw_copy.release_ms_per_gib,
                pool_backup.resume_ms_per_gib / raw_copy.resume_ms_per_gib);
  } else {
    std::printf("ratio pool/backend floor  discard: release %.2fx resume %.2fx\n",
                pool_discard.release_ms_per_gib / backend_floor.release_ms_per_gib,
                pool_discard.resume_ms_per_gib / backend_floor.resume_ms_per_gib);
  }
  AllocatorBench(*backend, absl::GetFlag(FLAGS_alloc_ops));
  return 0;
}

}  // namespace
}  // namespace engine
}  // namespace colo

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return colo::engine::Main();
}
