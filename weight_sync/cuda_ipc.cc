#include "weight_sync/cuda_ipc.h"

#include <cuda.h>
#include <dlfcn.h>

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace colo {
namespace weight_sync {

struct CudaIpcReader::Driver {
  void* library = nullptr;
  CUcontext context = nullptr;
  CUdevice device = 0;
  CUstream stream = nullptr;
  decltype(&::cuGetErrorName) GetErrorName = nullptr;
  decltype(&::cuInit) Init = nullptr;
  decltype(&::cuDeviceGetCount) DeviceGetCount = nullptr;
  decltype(&::cuDeviceGet) DeviceGet = nullptr;
  decltype(&::cuDevicePrimaryCtxRetain) PrimaryCtxRetain = nullptr;
  decltype(&::cuDevicePrimaryCtxRelease) PrimaryCtxRelease = nullptr;
  decltype(&::cuCtxSetCurrent) CtxSetCurrent = nullptr;
  decltype(&::cuStreamCreate) StreamCreate = nullptr;
  decltype(&::cuStreamDestroy) StreamDestroy = nullptr;
  decltype(&::cuStreamSynchronize) StreamSynchronize = nullptr;
  decltype(&::cuIpcOpenMemHandle) IpcOpenMemHandle = nullptr;
  decltype(&::cuIpcCloseMemHandle) IpcCloseMemHandle = nullptr;
  decltype(&::cuMemGetAddressRange) MemGetAddressRange = nullptr;
  decltype(&::cuMemcpyAsync) MemcpyAsync = nullptr;

  absl::Status Check(CUresult r, const std::string& what) const {
    if (r == CUDA_SUCCESS) return absl::OkStatus();
    const char* name = nullptr;
    if (GetErrorName != nullptr) GetErrorName(r, &name);
    return absl::InternalError(
        absl::StrCat(what, " failed: ", name != nullptr ? name : "CUDA error ", static_cast<int>(r)));
  }
  ~Driver() {
    if (CtxSetCurrent != nullptr && context != nullptr) CtxSetCurrent(context);
    if (stream != nullptr && StreamDestroy != nullptr) StreamDestroy(stream);
    if (context != nullptr && PrimaryCtxRelease != nullptr) PrimaryCtxRelease(device);
    if (library != nullptr) dlclose(library);
  }
};

namespace {

template <typename Fn>
absl::Status Load(void* library, const char* symbol, Fn* fn) {
  *fn = reinterpret_cast<Fn>(dlsym(library, symbol));
  if (*fn == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("libcuda.so.1 lacks symbol ", symbol, " (driver too old?)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<CudaIpcReader>> CudaIpcReader::Create(int device) {
  auto d = std::make_unique<Driver>();
  d->library = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (d->library == nullptr) {
    return absl::UnavailableError(absl::StrCat(
        "CUDA IPC unavailable: dlopen(libcuda.so.1) failed: ", dlerror()));
  }
#define COLO_LOAD(field, symbol)                            \
  do {                                                      \
    absl::Status s = Load(d->library, symbol, &d->field);   \
    if (!s.ok()) return s;                                  \
  } while (0)
  COLO_LOAD(GetErrorName, "cuGetErrorName");
  COLO_LOAD(Init, "cuInit");
  COLO_LOAD(DeviceGetCount, "cuDeviceGetCount");
  COLO_LOAD(DeviceGet, "cuDeviceGet");
  COLO_LOAD(PrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
  COLO_LOAD(PrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2");
  COLO_LOAD(CtxSetCurrent, "cuCtxSetCurrent");
  COLO_LOAD(StreamCreate, "cuStreamCreate");
  COLO_LOAD(StreamDestroy, "cuStreamDestroy_v2");
  COLO_LOAD(StreamSynchronize, "cuStreamSynchronize");
  COLO_LOAD(IpcOpenMemHandle, "cuIpcOpenMemHandle_v2");
  COLO_LOAD(IpcCloseMemHandle, "cuIpcCloseMemHandle");
  COLO_LOAD(MemGetAddressRange, "cuMemGetAddressRange_v2");
  COLO_LOAD(MemcpyAsync, "cuMemcpyAsync");
#undef COLO_LOAD
  if (CUresult r = d->Init(0); r != CUDA_SUCCESS) {
    return absl::UnavailableError(
        absl::StrCat("CUDA IPC unavailable: ", d->Check(r, "cuInit(0)").message()));
  }
  int count = 0;
  absl::Status st = d->Check(d->DeviceGetCount(&count), "cuDeviceGetCount");
  if (!st.ok()) return absl::UnavailableError(st.message());
  if (device < 0 || device >= count) {
    return absl::InvalidArgumentError(
        absl::StrCat("CUDA device ", device, " does not exist (", count, " visible)"));
  }
  st = d->Check(d->DeviceGet(&d->device, device), "cuDeviceGet");
  if (st.ok()) st = d->Check(d->PrimaryCtxRetain(&d->context, d->device), "cuDevicePrimaryCtxRetain");
  if (st.ok()) st = d->Check(d->CtxSetCurrent(d->context), "cuCtxSetCurrent");
  if (st.ok()) st = d->Check(d->StreamCreate(&d->stream, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
  if (!st.ok()) return st;
  return std::unique_ptr<CudaIpcReader>(new CudaIpcReader(std::move(d)));
}

CudaIpcReader::CudaIpcReader(std::unique_ptr<Driver> driver) : driver_(std::move(driver)) {}

CudaIpcReader::~CudaIpcReader() = default;

absl::Status CudaIpcReader::CopyOut(const std::string& handle, size_t base_offset, size_t size,
                                    const std::vector<Piece>& pieces) {
  if (handle.size() != kCudaIpcHandleBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a CUDA IPC handle has ", kCudaIpcHandleBytes, " bytes, got ", handle.size()));
  }
  for (const Piece& p : pieces) {
    if (p.offset > size || p.bytes > size - p.offset) {
      return absl::InvalidArgumentError(absl::StrCat(
          "bytes [", p.offset, ", ", p.offset + p.bytes, ") lie outside the segment's ", size,
          " bytes"));
    }
  }
  absl::MutexLock lock(&mu_);
  Driver& d = *driver_;
  absl::Status st = d.Check(d.CtxSetCurrent(d.context), "cuCtxSetCurrent");
  if (!st.ok()) return st;
  CUipcMemHandle h;
  std::memcpy(h.reserved, handle.data(), kCudaIpcHandleBytes);
  CUdeviceptr base = 0;
  CUresult r = d.IpcOpenMemHandle(&base, h, CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS);
  if (r != CUDA_SUCCESS) {
    return absl::FailedPreconditionError(absl::StrCat(
        d.Check(r, "cuIpcOpenMemHandle").message(),
        " (the handle must come from a live process on this machine, e.g. torch's "
        "storage._share_cuda_(), with peer access to this engine's GPU)"));
  }
  CUdeviceptr alloc_base = 0;
  size_t alloc_bytes = 0;
  st = d.Check(d.MemGetAddressRange(&alloc_base, &alloc_bytes, base), "cuMemGetAddressRange");
  if (st.ok()) {
    const size_t start = static_cast<size_t>(base - alloc_base);
    if (base_offset > alloc_bytes - start || size > alloc_bytes - start - base_offset) {
      st = absl::InvalidArgumentError(absl::StrCat(
          "the CUDA allocation behind the handle has ", alloc_bytes - start,
          " bytes; the segment needs [", base_offset, ", ", base_offset + size, ")"));
    }
  }
  for (size_t i = 0; st.ok() && i < pieces.size(); ++i) {
    const Piece& p = pieces[i];
    if (p.bytes == 0) continue;
    st = d.Check(d.MemcpyAsync(reinterpret_cast<CUdeviceptr>(p.dst),
                               base + base_offset + p.offset, p.bytes, d.stream),
                 "cuMemcpyAsync");
  }
  // Every copy finished before the handle is closed and the call returns.
  absl::Status sync = d.Check(d.StreamSynchronize(d.stream), "cuStreamSynchronize");
  if (st.ok()) st = sync;
  absl::Status closed = d.Check(d.IpcCloseMemHandle(base), "cuIpcCloseMemHandle");
  if (st.ok()) st = closed;
  return st;
}

}  // namespace weight_sync
}  // namespace colo
