#include "weight_sync/nccl_transport.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "weight_sync/torch_transport.h"

namespace colo {
namespace weight_sync {
namespace {

constexpr char kUniqueIdKey[] = "nccl/unique_id";

std::string CudaError(const char* call, cudaError_t e) {
  return absl::StrCat(call, ": ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ")");
}

std::string NcclError(const char* call, ncclResult_t r, ncclComm_t comm) {
  const char* last = comm != nullptr ? ncclGetLastError(comm) : ncclGetLastError(nullptr);
  return absl::StrCat(call, ": ", ncclGetErrorString(r),
                      (last != nullptr && last[0] != '\0') ? absl::StrCat(" (", last, ")") : "");
}

// NCCL reports the progress of non-blocking calls only through
// ncclCommGetAsyncError / cudaStreamQuery, which have no blocking variant
// with a timeout: poll with a short, growing pause (bounded by `deadline`).
class Poller {
 public:
  void Pause() {
    absl::SleepFor(pause_);
    pause_ = std::min(pause_ * 2, absl::Milliseconds(1));
  }

 private:
  absl::Duration pause_ = absl::Microseconds(20);
};

}  // namespace

absl::StatusOr<std::unique_ptr<NcclTransport>> NcclTransport::Create(
    const TransportOptions& options, std::unique_ptr<TcpStoreServer> server) {
  absl::Status st = ValidateTransportOptions(options);
  if (!st.ok()) return st;
  const std::string who = absl::StrCat("nccl group \"", options.group_name, "\" rank ",
                                       options.rank, "/", options.world_size);
  int devices = 0;
  if (cudaError_t e = cudaGetDeviceCount(&devices); e != cudaSuccess || devices == 0) {
    cudaGetLastError();  // reset the runtime's last-error state
    return absl::FailedPreconditionError(absl::StrCat(
        who, ": no usable CUDA device for backend \"nccl\" (",
        e != cudaSuccess ? CudaError("cudaGetDeviceCount", e) : "0 devices",
        "); use backend \"gloo\" on machines without a GPU"));
  }
  if (options.cuda_device < 0 || options.cuda_device >= devices) {
    return absl::FailedPreconditionError(absl::StrCat(
        who, ": cuda_device ", options.cuda_device, " is outside [0, ", devices, ")"));
  }
  if (cudaError_t e = cudaSetDevice(options.cuda_device); e != cudaSuccess) {
    return absl::FailedPreconditionError(
        absl::StrCat(who, ": ", CudaError("cudaSetDevice", e)));
  }

  const absl::Time deadline = absl::Now() + options.init_timeout;
  std::unique_ptr<Rendezvous> rendezvous;
  std::unique_ptr<TorchStoreClient> torch_store;
  RendezvousStore* store = nullptr;
  std::string key = kUniqueIdKey;
  if (options.rendezvous == "torch") {
    if (options.rank == 0) {
      return absl::InvalidArgumentError(
          "rank 0 of a torch group is the trainer; the engine joins as rank_offset >= 1");
    }
    TorchStoreClient::Options so;
    so.master_address = options.master_address;
    so.master_port = options.master_port;
    so.deadline = deadline;
    absl::StatusOr<std::unique_ptr<TorchStoreClient>> c = TorchStoreClient::Connect(so);
    if (!c.ok()) return c.status();
    torch_store = std::move(c).value();
    const std::vector<TorchGroupLayout> layouts =
        TorchGroupLayouts(torch_store->protocol(), options.torch_group, options.group_name);
    for (const TorchGroupLayout& layout : layouts) {
      if (layout.barrier_key.empty()) continue;
      absl::StatusOr<int64_t> count = torch_store->Add(layout.barrier_key, 1);
      if (!count.ok()) return count.status();
      if (*count == options.world_size) {
        st = torch_store->Set(absl::StrCat(layout.barrier_key, ":last_worker"), "1");
        if (!st.ok()) return st;
      }
    }
    key = TorchNcclUniqueIdKey(torch_store->protocol(), layouts.back());
    store = torch_store.get();
  } else {
    absl::StatusOr<std::unique_ptr<Rendezvous>> rv =
        JoinRendezvous(options, std::move(server), deadline);
    if (!rv.ok()) return rv.status();
    rendezvous = std::move(rv).value();
    store = rendezvous->store();
  }

  ncclUniqueId id;
  if (options.rank == 0) {
    if (ncclResult_t r = ncclGetUniqueId(&id); r != ncclSuccess) {
      return absl::UnavailableError(
          absl::StrCat(who, ": ", NcclError("ncclGetUniqueId", r, nullptr)));
    }
    st = store->Set(key, std::string(id.internal, sizeof(id.internal)));
    if (!st.ok()) return st;
  } else {
    absl::StatusOr<std::string> v = store->Get(key, deadline);
    if (!v.ok()) {
      return absl::Status(v.status().code(),
                          absl::StrCat(who, ": waiting for rank 0's NCCL unique id (key \"",
                                       key, "\"): ", v.status().message()));
    }
    if (v->size() != sizeof(id.internal)) {
      return absl::InvalidArgumentError(absl::StrCat(
          who, ": the NCCL unique id from rank 0 has ", v->size(), " bytes, want ",
          sizeof(id.internal), " (mismatched NCCL versions?)"));
    }
    std::copy(v->begin(), v->end(), id.internal);
  }

  cudaStream_t stream = nullptr;
  if (cudaError_t e = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
      e != cudaSuccess) {
    return absl::FailedPreconditionError(
        absl::StrCat(who, ": ", CudaError("cudaStreamCreateWithFlags", e)));
  }
  int32_t* scratch = nullptr;
  if (cudaError_t e = cudaMalloc(&scratch, sizeof(int32_t)); e != cudaSuccess) {
    cudaStreamDestroy(stream);
    return absl::ResourceExhaustedError(absl::StrCat(who, ": ", CudaError("cudaMalloc", e)));
  }
  auto free_cuda = [&] {
    cudaFree(scratch);
    cudaStreamDestroy(stream);
  };

  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // so init can be bounded by the deadline and aborted
  ncclComm_t comm = nullptr;
  ncclResult_t r = ncclCommInitRankConfig(&comm, options.world_size, id, options.rank, &config);
  if (r != ncclSuccess && r != ncclInProgress) {
    const std::string msg = NcclError("ncclCommInitRankConfig", r, comm);
    if (comm != nullptr) ncclCommAbort(comm);
    free_cuda();
    return absl::UnavailableError(absl::StrCat(who, ": ", msg));
  }
  Poller poller;
  while (true) {
    ncclResult_t state = ncclSuccess;
    r = ncclCommGetAsyncError(comm, &state);
    if (r != ncclSuccess) state = r;
    if (state == ncclSuccess) break;
    if (state != ncclInProgress) {
      const std::string msg = NcclError("ncclCommInitRankConfig (async)", state, comm);
      ncclCommAbort(comm);
      free_cuda();
      return absl::UnavailableError(absl::StrCat(who, ": ", msg));
    }
    if (absl::Now() > deadline) {
      ncclCommAbort(comm);
      free_cuda();
      return absl::DeadlineExceededError(absl::StrCat(
          who, ": the NCCL communicator did not form within the init timeout (",
          absl::FormatDuration(options.init_timeout), "); aborted"));
    }
    poller.Pause();
  }
  std::unique_ptr<NcclTransport> t(
      new NcclTransport(options, std::move(rendezvous), comm, stream, scratch));
  t->torch_store_ = std::move(torch_store);
  return t;
}

NcclTransport::NcclTransport(const TransportOptions& options,
                             std::unique_ptr<Rendezvous> rendezvous, ncclComm* comm,
                             CUstream_st* stream, int32_t* scratch)
    : options_(options),
      master_port_(rendezvous != nullptr ? rendezvous->master_port : options.master_port),
      rendezvous_(std::move(rendezvous)),
      comm_(comm),
      stream_(stream),
      scratch_(scratch) {}

NcclTransport::~NcclTransport() { Close(); }

absl::Status NcclTransport::CheckUsable(const char* op) {
  if (stream_ == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(op, ": nccl group \"", options_.group_name, "\" is closed"));
  }
  if (broken_.load() || comm_ == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        op, ": nccl group \"", options_.group_name,
        "\" is broken by an earlier failed collective; destroy and re-create the group"));
  }
  if (cudaError_t e = cudaSetDevice(options_.cuda_device); e != cudaSuccess) {
    return Fail(op, CudaError("cudaSetDevice", e));
  }
  return absl::OkStatus();
}

absl::Status NcclTransport::Fail(const char* op, const std::string& why) {
  broken_.store(true);
  if (comm_ != nullptr) {
    ncclCommAbort(comm_);
    comm_ = nullptr;
  }
  return absl::AbortedError(absl::StrCat("nccl group \"", options_.group_name, "\" rank ",
                                         options_.rank, "/", options_.world_size, ": ", op,
                                         " failed: ", why,
                                         "; the group is broken, destroy and re-create it"));
}

absl::Status NcclTransport::WaitForCompletion(const char* op) {
  const absl::Time deadline = absl::Now() + options_.transfer_timeout;
  Poller poller;
  while (true) {
    const cudaError_t q = cudaStreamQuery(stream_);
    ncclResult_t state = ncclSuccess;
    const ncclResult_t r = ncclCommGetAsyncError(comm_, &state);
    if (r != ncclSuccess) return Fail(op, NcclError("ncclCommGetAsyncError", r, comm_));
    if (state != ncclSuccess && state != ncclInProgress) {
      return Fail(op, NcclError("asynchronous NCCL error", state, comm_));
    }
    if (q == cudaSuccess && state == ncclSuccess) return absl::OkStatus();
    if (q != cudaSuccess && q != cudaErrorNotReady) {
      return Fail(op, CudaError("cudaStreamQuery", q));
    }
    if (absl::Now() > deadline) {
      return Fail(op, absl::StrCat("not finished within the transfer timeout (",
                                   absl::FormatDuration(options_.transfer_timeout),
                                   "): a peer died or stalled; communicator aborted"));
    }
    poller.Pause();
  }
}

absl::Status NcclTransport::Broadcast(void* data, size_t bytes, int root) {
  if (absl::Status st = CheckUsable("broadcast"); !st.ok()) return st;
  if (root < 0 || root >= options_.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("broadcast root ", root, " is outside [0, ", options_.world_size, ")"));
  }
  if (bytes == 0) return absl::OkStatus();
  const ncclResult_t r = ncclBroadcast(data, data, bytes, ncclUint8, root, comm_, stream_);
  if (r != ncclSuccess && r != ncclInProgress) {
    return Fail("broadcast", NcclError("ncclBroadcast", r, comm_));
  }
  return WaitForCompletion("broadcast");
}

absl::StatusOr<int32_t> NcclTransport::AllReduceMin(int32_t value) {
  if (absl::Status st = CheckUsable("allreduce(min)"); !st.ok()) return st;
  // Pageable host -> device copies are staged before the call returns.
  if (cudaError_t e =
          cudaMemcpyAsync(scratch_, &value, sizeof(value), cudaMemcpyHostToDevice, stream_);
      e != cudaSuccess) {
    return Fail("allreduce(min)", CudaError("cudaMemcpyAsync", e));
  }
  const ncclResult_t r = ncclAllReduce(scratch_, scratch_, 1, ncclInt32, ncclMin, comm_, stream_);
  if (r != ncclSuccess && r != ncclInProgress) {
    return Fail("allreduce(min)", NcclError("ncclAllReduce", r, comm_));
  }
  if (absl::Status st = WaitForCompletion("allreduce(min)"); !st.ok()) return st;
  // The stream is idle now, so this copy cannot block on a stalled peer.
  int32_t result = 0;
  if (cudaError_t e = cudaMemcpy(&result, scratch_, sizeof(result), cudaMemcpyDeviceToHost);
      e != cudaSuccess) {
    return Fail("allreduce(min)", CudaError("cudaMemcpy", e));
  }
  return result;
}

absl::Status NcclTransport::Barrier() { return AllReduceMin(0).status(); }

absl::Status NcclTransport::RunCollective(
    const char* op, const std::function<int(ncclComm*, CUstream_st*)>& enqueue) {
  if (absl::Status st = CheckUsable(op); !st.ok()) return st;
  const ncclResult_t r = static_cast<ncclResult_t>(enqueue(comm_, stream_));
  if (r != ncclSuccess && r != ncclInProgress) return Fail(op, NcclError(op, r, comm_));
  return WaitForCompletion(op);
}

bool NcclTransport::broken() const {
  if (broken_.load()) return true;
  return rendezvous_ != nullptr && rendezvous_->client != nullptr &&
         rendezvous_->client->PeerClosed();
}

void NcclTransport::Close() {
  if (stream_ == nullptr) return;
  cudaSetDevice(options_.cuda_device);
  if (comm_ != nullptr) {
    ncclCommAbort(comm_);
    comm_ = nullptr;
  }
  cudaFree(scratch_);
  scratch_ = nullptr;
  cudaStreamDestroy(stream_);
  stream_ = nullptr;
  rendezvous_.reset();
}

}  // namespace weight_sync
}  // namespace colo
