// GPU memory figures for issue 3 (prints; no timed assertions):
//  - TaggedPool release/resume per GiB (discard) against the raw driver floor
//    measured in the same run: a plain cuMemUnmap+cuMemRelease /
//    cuMemCreate+cuMemMap+cuMemSetAccess loop over the same bytes in the
//    pool's chunk size (goals: release <= 1.2x the floor, <= 2 ms/GiB);
//  - host-backup release/resume bandwidth against pinned cudaMemcpy
//    D2H/H2D bandwidth (goal: >= 80%);
//  - CachingAllocator malloc/free ns per op against cudaMalloc/cudaFree.
//
//   bazel run --config=cuda //bench/memory:memory_cuda_bench -- --gib=4 --reps=5
//
// Without a GPU it prints why and exits 0.
#include <cuda.h>
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "engine/device/cuda_backend.h"
#include "engine/memory/caching_allocator.h"
#include "engine/memory/tagged_pool.h"

ABSL_FLAG(double, gib, 2.0, "bytes per measurement, in GiB");
ABSL_FLAG(int, reps, 5, "repetitions (median reported)");
ABSL_FLAG(int, chunk_mib, 64, "physical chunk size (pool and raw loop)");
ABSL_FLAG(int, alloc_ops, 100000, "allocator operations");

namespace colo {
namespace engine {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

void Die(const std::string& what) {
  std::fprintf(stderr, "%s\n", what.c_str());
  std::exit(1);
}
void Check(const absl::Status& s, const char* what) {
  if (!s.ok()) Die(std::string(what) + ": " + s.ToString());
}
void CheckCuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) Die(std::string(what) + ": " + cudaGetErrorName(e));
}
template <typename T>
T Value(absl::StatusOr<T> v, const char* what) {
  Check(v.status(), what);
  return std::move(*v);
}
double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
double Ms(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

// The driver calls of the raw floor, loaded like CudaBackend does.
struct RawDriver {
  decltype(&::cuMemAddressReserve) AddressReserve;
  decltype(&::cuMemAddressFree) AddressFree;
  decltype(&::cuMemCreate) Create;
  decltype(&::cuMemRelease) Release;
  decltype(&::cuMemMap) Map;
  decltype(&::cuMemUnmap) Unmap;
  decltype(&::cuMemSetAccess) SetAccess;
  decltype(&::cuCtxSynchronize) Synchronize;

  static RawDriver Load() {
    void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) Die("dlopen(libcuda.so.1) failed");
    RawDriver d;
    auto sym = [&](auto* fn, const char* name) {
      *fn = reinterpret_cast<std::remove_reference_t<decltype(*fn)>>(dlsym(lib, name));
      if (*fn == nullptr) Die(std::string("libcuda.so.1 lacks ") + name);
    };
    sym(&d.AddressReserve, "cuMemAddressReserve");
    sym(&d.AddressFree, "cuMemAddressFree");
    sym(&d.Create, "cuMemCreate");
    sym(&d.Release, "cuMemRelease");
    sym(&d.Map, "cuMemMap");
    sym(&d.Unmap, "cuMemUnmap");
    sym(&d.SetAccess, "cuMemSetAccess");
    sym(&d.Synchronize, "cuCtxSynchronize");
    return d;
  }
};

void CheckCu(CUresult r, const char* what) {
  if (r != CUDA_SUCCESS) Die(std::string(what) + " failed: CUresult " + std::to_string(r));
}

struct Pair {
  double release_ms = 0;
  double resume_ms = 0;
};

// Raw driver loop over `bytes` in chunks (on cudart's current = primary
// context): release = sync + unmap + release, resume = create + map + access.
Pair RawFloor(const RawDriver& d, size_t bytes, size_t chunk, int device, int reps) {
  CUmemAllocationProp prop = {};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = device;
  CUmemAccessDesc access = {};
  access.location = prop.location;
  access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  CUdeviceptr base = 0;
  CheckCu(d.AddressReserve(&base, bytes, 0, 0, 0), "cuMemAddressReserve");
  const size_t n = (bytes + chunk - 1) / chunk;
  std::vector<CUmemGenericAllocationHandle> handles(n);
  auto map_all = [&] {
    for (size_t i = 0; i < n; ++i) {
      const size_t len = std::min(chunk, bytes - i * chunk);
      CheckCu(d.Create(&handles[i], len, &prop, 0), "cuMemCreate");
      CheckCu(d.Map(base + i * chunk, len, 0, handles[i], 0), "cuMemMap");
      CheckCu(d.SetAccess(base + i * chunk, len, &access, 1), "cuMemSetAccess");
    }
  };
  auto unmap_all = [&] {
    CheckCu(d.Synchronize(), "cuCtxSynchronize");
    for (size_t i = 0; i < n; ++i) {
      const size_t len = std::min(chunk, bytes - i * chunk);
      CheckCu(d.Unmap(base + i * chunk, len), "cuMemUnmap");
      CheckCu(d.Release(handles[i]), "cuMemRelease");
    }
  };
  map_all();
  std::vector<double> rel, res;
  for (int r = 0; r < reps; ++r) {
    absl::Time t0 = absl::Now();
    unmap_all();
    rel.push_back(Ms(absl::Now() - t0));
    t0 = absl::Now();
    map_all();
    res.push_back(Ms(absl::Now() - t0));
  }
  unmap_all();
  CheckCu(d.AddressFree(base, bytes), "cuMemAddressFree");
  return {Median(rel), Median(res)};
}

Pair PoolCycle(DeviceBackend& b, size_t bytes, size_t chunk, int reps,
               BackupPolicy policy) {
  TaggedPool::Options options;
  options.backend = &b;
  options.physical_chunk_bytes = chunk;
  options.backup[static_cast<int>(MemoryTag::kWeights)] = policy;
  auto pool = Value(TaggedPool::Create(options), "pool");
  Check(pool->Allocate(MemoryTag::kWeights, bytes, "w").status(), "allocate");
  std::vector<double> rel, res;
  for (int i = 0; i < reps; ++i) {
    rel.push_back(Ms(Value(pool->Release({MemoryTag::kWeights}), "release").duration));
    res.push_back(Ms(Value(pool->Resume({MemoryTag::kWeights}), "resume").duration));
  }
  return {Median(rel), Median(res)};
}

// Pinned host <-> device copy times of `bytes` (cudaMemcpy).
Pair PinnedCopy(size_t bytes, int reps) {
  void* host = nullptr;
  void* dev = nullptr;
  CheckCuda(cudaMallocHost(&host, bytes), "cudaMallocHost");
  CheckCuda(cudaMalloc(&dev, bytes), "cudaMalloc");
  CheckCuda(cudaMemset(dev, 1, bytes), "cudaMemset");
  std::vector<double> d2h, h2d;
  for (int r = 0; r < reps; ++r) {
    absl::Time t0 = absl::Now();
    CheckCuda(cudaMemcpy(host, dev, bytes, cudaMemcpyDeviceToHost), "D2H");
    d2h.push_back(Ms(absl::Now() - t0));
    t0 = absl::Now();
    CheckCuda(cudaMemcpy(dev, host, bytes, cudaMemcpyHostToDevice), "H2D");
    h2d.push_back(Ms(absl::Now() - t0));
  }
  CheckCuda(cudaFree(dev), "cudaFree");
  CheckCuda(cudaFreeHost(host), "cudaFreeHost");
  return {Median(d2h), Median(h2d)};
}

void AllocatorBench(DeviceBackend& b, int ops) {
  std::mt19937 rng(1234);
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
  auto ca_alloc = [&](size_t n) { return Value(ca->Allocate(n), "alloc"); };
  auto ca_free = [&](void* p) { Check(ca->Free(p), "free"); };
  run(ca_alloc, ca_free);  // warm the cache
  const double caching_ns = run(ca_alloc, ca_free);
  const double cuda_ns = run(
      [](size_t n) {
        void* p = nullptr;
        CheckCuda(cudaMalloc(&p, n), "cudaMalloc");
        return p;
      },
      [](void* p) { CheckCuda(cudaFree(p), "cudaFree"); });
  std::printf("caching_allocator: %.1f ns/op   cudaMalloc/cudaFree: %.1f ns/op   "
              "ratio %.3f  (ops=%d, live=%d)\n",
              caching_ns, cuda_ns, caching_ns / cuda_ns, ops, kLive);
}

int Main() {
  absl::StatusOr<std::unique_ptr<CudaBackend>> backend =
      CudaBackend::Create(CudaBackend::Options());
  if (!backend.ok()) {
    std::printf("memory_cuda_bench: skipped, no CUDA device: %s\n",
                backend.status().ToString().c_str());
    return 0;
  }
  int device = 0;
  CheckCuda(cudaSetDevice(device), "cudaSetDevice");
  CheckCuda(cudaFree(nullptr), "cudaFree(0) (context init)");
  DeviceBackend& b = **backend;
  const size_t bytes = b.RoundUp(static_cast<size_t>(absl::GetFlag(FLAGS_gib) * kGiB));
  const size_t chunk = b.RoundUp(size_t(absl::GetFlag(FLAGS_chunk_mib)) << 20);
  const int reps = absl::GetFlag(FLAGS_reps);
  const double gib = bytes / kGiB;
  std::printf("bytes=%.2f GiB chunk=%zu MiB reps=%d granularity=%zu\n", gib,
              chunk >> 20, reps, b.granularity());

  const RawDriver raw_driver = RawDriver::Load();
  const Pair raw = RawFloor(raw_driver, bytes, chunk, device, reps);
  const Pair discard = PoolCycle(b, bytes, chunk, reps, BackupPolicy::kDiscard);
  const Pair backup = PoolCycle(b, bytes, chunk, reps, BackupPolicy::kHostCopy);
  const Pair pinned = PinnedCopy(bytes, reps);

  std::printf("%-40s %10s %10s   (ms per GiB)\n", "", "release", "resume");
  std::printf("%-40s %10.2f %10.2f\n", "floor: raw cuMemUnmap/Release, Create/Map",
              raw.release_ms / gib, raw.resume_ms / gib);
  std::printf("%-40s %10.2f %10.2f\n", "pool, discard", discard.release_ms / gib,
              discard.resume_ms / gib);
  std::printf("%-40s %10.2f %10.2f\n", "pool, host copy", backup.release_ms / gib,
              backup.resume_ms / gib);
  std::printf("ratio pool/raw floor (discard): release %.2fx  resume %.2fx  "
              "(goal release <= 1.2x and <= 2 ms/GiB)\n",
              discard.release_ms / raw.release_ms, discard.resume_ms / raw.resume_ms);
  const double d2h_gbs = bytes / 1e9 / (pinned.release_ms / 1e3);
  const double h2d_gbs = bytes / 1e9 / (pinned.resume_ms / 1e3);
  const double backup_gbs = bytes / 1e9 / (backup.release_ms / 1e3);
  const double restore_gbs = bytes / 1e9 / (backup.resume_ms / 1e3);
  std::printf("pinned cudaMemcpy: D2H %.1f GB/s  H2D %.1f GB/s\n", d2h_gbs, h2d_gbs);
  std::printf("pool host backup (whole release): %.1f GB/s = %.0f%% of pinned D2H; "
              "restore (whole resume): %.1f GB/s = %.0f%% of pinned H2D (goal >= 80%%)\n",
              backup_gbs, 100 * backup_gbs / d2h_gbs, restore_gbs,
              100 * restore_gbs / h2d_gbs);
  AllocatorBench(b, absl::GetFlag(FLAGS_alloc_ops));
  return 0;
}

}  // namespace
}  // namespace engine
}  // namespace colo

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return colo::engine::Main();
}
