// CreateTransport (declared in transport.h): picks the backend.
#include <utility>

#include "absl/strings/str_cat.h"
#include "weight_sync/gloo_transport.h"
#include "weight_sync/tcp_store.h"
#include "weight_sync/torch_transport.h"
#include "weight_sync/transport.h"
#ifdef COLO_WITH_NCCL
#include "weight_sync/nccl_transport.h"
#endif

namespace colo {
namespace weight_sync {

absl::StatusOr<std::unique_ptr<Transport>> CreateTransport(
    const TransportOptions& options, std::unique_ptr<TcpStoreServer> server) {
  if (options.rendezvous == "torch" && options.backend != "nccl") {
    absl::StatusOr<std::unique_ptr<TorchTransport>> t = TorchTransport::Create(options);
    if (!t.ok()) return t.status();
    return std::unique_ptr<Transport>(std::move(t).value());
  }
  if (options.backend == "gloo") {
    absl::StatusOr<std::unique_ptr<GlooTransport>> t =
        GlooTransport::Create(options, std::move(server));
    if (!t.ok()) return t.status();
    return std::unique_ptr<Transport>(std::move(t).value());
  }
  if (options.backend == "nccl") {
#ifdef COLO_WITH_NCCL
    absl::StatusOr<std::unique_ptr<NcclTransport>> t =
        NcclTransport::Create(options, std::move(server));
    if (!t.ok()) return t.status();
    return std::unique_ptr<Transport>(std::move(t).value());
#else
    return absl::FailedPreconditionError(
        "backend \"nccl\" is not available in this build: build with "
        "--config=cuda and run on a machine with a GPU, or use backend "
        "\"gloo\"");
#endif
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown weight-sync backend \"", options.backend,
      "\" (want \"gloo\" or \"nccl\")"));
}

}  // namespace weight_sync
}  // namespace colo
