#include "engine/device/cuda_backend.h"

#include <dlfcn.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cuda.h"

namespace colo {
namespace engine {

// The driver entry points colo uses, resolved from libcuda.so.1 at run time.
struct CudaBackend::Driver {
  void* library = nullptr;
  CUdevice cu_device = 0;
  CUcontext context = nullptr;
  int ordinal = 0;
  size_t granularity = 0;

  decltype(&::cuGetErrorName) GetErrorName = nullptr;
  decltype(&::cuGetErrorString) GetErrorString = nullptr;
  decltype(&::cuInit) Init = nullptr;
  decltype(&::cuDeviceGetCount) DeviceGetCount = nullptr;
  decltype(&::cuDeviceGet) DeviceGet = nullptr;
  decltype(&::cuDevicePrimaryCtxRetain) PrimaryCtxRetain = nullptr;
  decltype(&::cuDevicePrimaryCtxRelease) PrimaryCtxRelease = nullptr;
  decltype(&::cuCtxSetCurrent) CtxSetCurrent = nullptr;
  decltype(&::cuCtxGetCurrent) CtxGetCurrent = nullptr;
  decltype(&::cuCtxSynchronize) CtxSynchronize = nullptr;
  decltype(&::cuMemGetAllocationGranularity) MemGetAllocationGranularity =
      nullptr;
  decltype(&::cuMemAddressReserve) MemAddressReserve = nullptr;
  decltype(&::cuMemAddressFree) MemAddressFree = nullptr;
  decltype(&::cuMemCreate) MemCreate = nullptr;
  decltype(&::cuMemRelease) MemRelease = nullptr;
  decltype(&::cuMemMap) MemMap = nullptr;
  decltype(&::cuMemUnmap) MemUnmap = nullptr;
  decltype(&::cuMemSetAccess) MemSetAccess = nullptr;
  decltype(&::cuMemGetInfo) MemGetInfo = nullptr;
  decltype(&::cuMemcpyDtoH) MemcpyDtoH = nullptr;
  decltype(&::cuMemcpyHtoD) MemcpyHtoD = nullptr;
  decltype(&::cuMemHostAlloc) MemHostAlloc = nullptr;
  decltype(&::cuMemFreeHost) MemFreeHost = nullptr;

  // "cuMemCreate(bytes=..) failed: CUDA_ERROR_OUT_OF_MEMORY (2): out of memory"
  absl::Status Check(CUresult r, absl::string_view call) const {
    if (r == CUDA_SUCCESS) return absl::OkStatus();
    const char* name = "?";
    const char* text = "?";
    if (GetErrorName != nullptr) GetErrorName(r, &name);
    if (GetErrorString != nullptr) GetErrorString(r, &text);
    const std::string msg = absl::StrCat(call, " failed on cuda:", ordinal,
                                         ": ", name, " (", static_cast<int>(r),
                                         "): ", text);
    if (r == CUDA_ERROR_OUT_OF_MEMORY) return absl::ResourceExhaustedError(msg);
    if (r == CUDA_ERROR_INVALID_VALUE) return absl::InvalidArgumentError(msg);
    if (r == CUDA_ERROR_NO_DEVICE || r == CUDA_ERROR_NOT_INITIALIZED ||
        r == CUDA_ERROR_DEINITIALIZED) {
      return absl::UnavailableError(msg);
    }
    return absl::InternalError(msg);
  }

  absl::Status MakeCurrent() const {
    return Check(CtxSetCurrent(context), "cuCtxSetCurrent");
  }

  CUmemAllocationProp Prop() const {
    CUmemAllocationProp prop = {};
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = cu_device;
    return prop;
  }
};

namespace {

template <typename Fn>
absl::Status Load(void* library, const char* symbol, Fn* fn) {
  *fn = reinterpret_cast<Fn>(dlsym(library, symbol));
  if (*fn == nullptr) {
    return absl::UnavailableError(absl::StrCat(
        "libcuda.so.1 lacks symbol ", symbol, " (driver too old?)"));
  }
  return absl::OkStatus();
}

absl::Status LoadAll(CudaBackend::Driver& d) {
#define COLO_LOAD(field, symbol)                              \
  do {                                                        \
    absl::Status s = Load(d.library, symbol, &d.field);       \
    if (!s.ok()) return s;                                    \
  } while (0)
  COLO_LOAD(GetErrorName, "cuGetErrorName");
  COLO_LOAD(GetErrorString, "cuGetErrorString");
  COLO_LOAD(Init, "cuInit");
  COLO_LOAD(DeviceGetCount, "cuDeviceGetCount");
  COLO_LOAD(DeviceGet, "cuDeviceGet");
  COLO_LOAD(PrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
  COLO_LOAD(PrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2");
  COLO_LOAD(CtxSetCurrent, "cuCtxSetCurrent");
  COLO_LOAD(CtxGetCurrent, "cuCtxGetCurrent");
  COLO_LOAD(CtxSynchronize, "cuCtxSynchronize");
  COLO_LOAD(MemGetAllocationGranularity, "cuMemGetAllocationGranularity");
  COLO_LOAD(MemAddressReserve, "cuMemAddressReserve");
  COLO_LOAD(MemAddressFree, "cuMemAddressFree");
  COLO_LOAD(MemCreate, "cuMemCreate");
  COLO_LOAD(MemRelease, "cuMemRelease");
  COLO_LOAD(MemMap, "cuMemMap");
  COLO_LOAD(MemUnmap, "cuMemUnmap");
  COLO_LOAD(MemSetAccess, "cuMemSetAccess");
  COLO_LOAD(MemGetInfo, "cuMemGetInfo_v2");
  COLO_LOAD(MemcpyDtoH, "cuMemcpyDtoH_v2");
  COLO_LOAD(MemcpyHtoD, "cuMemcpyHtoD_v2");
  COLO_LOAD(MemHostAlloc, "cuMemHostAlloc");
  COLO_LOAD(MemFreeHost, "cuMemFreeHost");
#undef COLO_LOAD
  return absl::OkStatus();
}

CUdeviceptr Ptr(const void* p) {
  return static_cast<CUdeviceptr>(reinterpret_cast<uintptr_t>(p));
}

}  // namespace

absl::StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Create(
    const Options& options) {
  auto d = std::make_unique<Driver>();
  d->ordinal = options.device;
  d->library = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (d->library == nullptr) {
    const char* err = dlerror();
    return absl::UnavailableError(absl::StrCat(
        "CUDA backend unavailable: dlopen(libcuda.so.1) failed: ",
        err != nullptr ? err : "unknown error",
        " (no NVIDIA driver on this machine)"));
  }
  absl::Status s = LoadAll(*d);
  if (!s.ok()) {
    dlclose(d->library);
    return s;
  }
  auto fail = [&](absl::Status status) {
    if (d->context != nullptr) d->PrimaryCtxRelease(d->cu_device);
    dlclose(d->library);
    return absl::Status(status.code(), absl::StrCat("CUDA backend unavailable: ",
                                                    status.message()));
  };
  s = d->Check(d->Init(0), "cuInit(0)");
  if (!s.ok()) return fail(absl::UnavailableError(s.message()));
  int count = 0;
  s = d->Check(d->DeviceGetCount(&count), "cuDeviceGetCount");
  if (!s.ok()) return fail(absl::UnavailableError(s.message()));
  if (count == 0) return fail(absl::UnavailableError("no CUDA device present"));
  if (options.device < 0 || options.device >= count) {
    return fail(absl::InvalidArgumentError(absl::StrCat(
        "device ordinal ", options.device, " out of range [0, ", count, ")")));
  }
  s = d->Check(d->DeviceGet(&d->cu_device, options.device), "cuDeviceGet");
  if (!s.ok()) return fail(s);
  s = d->Check(d->PrimaryCtxRetain(&d->context, d->cu_device),
               "cuDevicePrimaryCtxRetain");
  if (!s.ok()) {
    d->context = nullptr;
    return fail(s);
  }
  s = d->MakeCurrent();
  if (!s.ok()) return fail(s);
  CUmemAllocationProp prop = d->Prop();
  s = d->Check(d->MemGetAllocationGranularity(&d->granularity, &prop,
                                              CU_MEM_ALLOC_GRANULARITY_MINIMUM),
               "cuMemGetAllocationGranularity");
  if (!s.ok()) return fail(s);
  return std::unique_ptr<CudaBackend>(
      new CudaBackend(std::move(d), options.device));
}

CudaBackend::CudaBackend(std::unique_ptr<Driver> driver, int device)
    : driver_(std::move(driver)) {}

CudaBackend::~CudaBackend() {
  const Driver& d = *driver_;
  // Dropping our reference may destroy the primary context (when nothing
  // else, e.g. the CUDA runtime, holds one). It must not be destroyed while
  // current on this thread with work in flight: finish that work, and leave
  // no dangling current context behind. (Other threads that made it current
  // through this backend must be done with it: the backend outlives its
  // users.)
  CUcontext current = nullptr;
  if (d.CtxGetCurrent(&current) == CUDA_SUCCESS && current == d.context) {
    d.CtxSynchronize();
    d.CtxSetCurrent(nullptr);
  }
  d.PrimaryCtxRelease(d.cu_device);
  // The library stays loaded: the driver does not support being unloaded
  // while other code in the process may still use it.
}

int CudaBackend::device() const { return driver_->ordinal; }
size_t CudaBackend::granularity() const { return driver_->granularity; }

absl::StatusOr<void*> CudaBackend::ReserveAddressRange(size_t bytes) {
  const Driver& d = *driver_;
  absl::Status s = d.MakeCurrent();
  if (!s.ok()) return s;
  CUdeviceptr ptr = 0;
  s = d.Check(d.MemAddressReserve(&ptr, bytes, d.granularity, 0, 0),
              absl::StrCat("cuMemAddressReserve(bytes=", bytes, ")"));
  if (!s.ok()) return s;
  return reinterpret_cast<void*>(static_cast<uintptr_t>(ptr));
}

absl::Status CudaBackend::FreeAddressRange(void* base, size_t bytes) {
  const Driver& d = *driver_;
  absl::Status s = d.MakeCurrent();
  if (!s.ok()) return s;
  return d.Check(d.MemAddressFree(Ptr(base), bytes),
                 absl::StrFormat("cuMemAddressFree(%p, bytes=%d)", base, bytes));
}

absl::StatusOr<PhysicalHandle> CudaBackend::CreatePhysical(size_t bytes) {
  const Driver& d = *driver_;
  absl::Status s = d.MakeCurrent();
  if (!s.ok()) return s;
  CUmemAllocationProp prop = d.Prop();
  CUmemGenericAllocationHandle handle = 0;
  s = d.Check(d.MemCreate(&handle, bytes, &prop, 0),
              absl::StrCat("cuMemCreate(bytes=", bytes, ")"));
  if (!s.ok()) return s;
  return static_cast<PhysicalHandle>(handle);
}

absl::Status CudaBackend::ReleasePhysical(PhysicalHandle handle) {
  const Driver& d = *driver_;
  absl::Status s = d.MakeCurrent();
  if (!s.ok()) return s;
  return d.Check(d.MemRelease(handle),
                 absl::StrCat("cuMemRelease(handle=", handle, ")"));
}

absl::Status CudaBackend::MapPhysical(void* address, size_t bytes,
                                      PhysicalHandle handle) {
  const Driver& d = *driver_;
  absl::Status s = d.MakeCurrent();
  if (!s.ok()) return s;
  s = d.Check(d.MemMap(Ptr(address), bytes, 0, handle, 0),
              absl::StrFormat("cuMemMap(%p, bytes=%d, handle=%d)", address,
                              bytes, handle));
  if (!s.ok()) return s;
  CUmemAccessDesc access = {};
  access.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  access.location.id = d.cu_device;
  access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  s = d.Check(d.MemSetAccess(Ptr(address), bytes, &access, 1),
              absl::StrFormat("cuMemSetAccess(%p, bytes=%d, READWRITE)",
                              address, bytes));
  if (!s.ok()) d.MemUnmap(Ptr(address), bytes);
  return s;
}

absl::Status CudaBackend::UnmapRange(void* address, size_t bytes) {
  const Driver& d = *driver_;
  absl::Status s = d.MakeCurrent();
  if (!s.ok()) return s;
  return d.Check(d.MemUnmap(Ptr(address), bytes),
                 absl::StrFormat("cuMemUnmap(%p, bytes=%d)", address, bytes));
}

absl::StatusOr<DeviceMemoryInfo> CudaBackend::MemoryInfo() {
  const Driver& d = *driver_;
  absl::Status s = d.MakeCurrent();
  if (!s.ok()) return s;
  size_t free_bytes = 0, total_bytes = 0;
  s = d.Check(d.MemGetInfo(&free_bytes, &total_bytes), "cuMemGetInfo");
  if (!s.ok()) return s;
  DeviceMemoryInfo info;
  info.free_bytes = free_bytes;
  info.total_bytes = total_bytes;
  return info;
}

absl::Status CudaBackend::Synchronize() {
  const Driver& d = *driver_;
  absl::Status s = d.MakeCurrent();
  if (!s.ok()) return s;
  return d.Check(d.CtxSynchronize(), "cuCtxSynchronize");
}

absl::Status CudaBackend::CopyToHost(void* host_dst, const void* device_src,
                                     size_t bytes) {
  const Driver& d = *driver_;
  absl::Status s = d.MakeCurrent();
  if (!s.ok()) return s;
  return d.Check(d.MemcpyDtoH(host_dst, Ptr(device_src), bytes),
                 absl::StrFormat("cuMemcpyDtoH(%p <- %p, bytes=%d)", host_dst,
                                 device_src, bytes));
}

absl::Status CudaBackend::CopyToDevice(void* device_dst, const void* host_src,
                                       size_t bytes) {
  const Driver& d = *driver_;
  absl::Status s = d.MakeCurrent();
  if (!s.ok()) return s;
  return d.Check(d.MemcpyHtoD(Ptr(device_dst), host_src, bytes),
                 absl::StrFormat("cuMemcpyHtoD(%p <- %p, bytes=%d)",
                                 device_dst, host_src, bytes));
}

absl::StatusOr<void*> CudaBackend::AllocateHost(size_t bytes) {
  const Driver& d = *driver_;
  absl::Status s = d.MakeCurrent();
  if (!s.ok()) return s;
  void* p = nullptr;
  s = d.Check(d.MemHostAlloc(&p, bytes, 0),
              absl::StrCat("cuMemHostAlloc(bytes=", bytes, ")"));
  if (!s.ok()) return s;
  return p;
}

absl::Status CudaBackend::FreeHost(void* host, size_t bytes) {
  const Driver& d = *driver_;
  absl::Status s = d.MakeCurrent();
  if (!s.ok()) return s;
  return d.Check(d.MemFreeHost(host),
                 absl::StrFormat("cuMemFreeHost(%p, bytes=%d)", host, bytes));
}

}  // namespace engine
}  // namespace colo
