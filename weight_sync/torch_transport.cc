#include "weight_sync/torch_transport.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace colo {
namespace weight_sync {

std::vector<TorchGroupLayout> TorchGroupLayouts(TorchStoreProtocol protocol,
                                                const std::string& torch_group,
                                                const std::string& group_name) {
  const bool v2 = protocol == TorchStoreProtocol::kV2;
  std::vector<TorchGroupLayout> out;
  if (torch_group == "custom") {
    // PrefixStore(G, store) + _new_process_group_helper(group_name=G): no
    // store-based barrier in either generation.
    const std::string pg = absl::StrCat("/", group_name, "/", group_name, "/");
    out.push_back({v2 ? absl::StrCat(pg, "/cpu//0/") : absl::StrCat(pg, "0/"), "",
                   absl::StrCat("torch process group \"", group_name, "\""), pg});
    return out;
  }
  if (v2) {
    out.push_back({"/default_pg/0//cpu//0/", "/default_pg/store_based_barrier_key:0",
                   "torch default process group", "/default_pg/0/"});
    if (torch_group == "new_group") {
      out.push_back({"/default_pg/0//1//cpu//0/", "/default_pg/0//store_based_barrier_key:1",
                     "torch process group 1 (new_group)", "/default_pg/0//1/"});
    }
  } else {
    out.push_back({"/default_pg/0/0/", "/default_pg/store_based_barrier_key:1",
                   "torch default process group", "/default_pg/0/"});
    if (torch_group == "new_group") {
      out.push_back({"/default_pg/1/0/", "/default_pg/store_based_barrier_key:2",
                     "torch process group 1 (new_group)", "/default_pg/1/"});
    }
  }
  return out;
}

std::string TorchNcclUniqueIdKey(TorchStoreProtocol protocol, const TorchGroupLayout& layout) {
  // ProcessGroupNCCL stores the id under std::to_string(ncclCommCounter_++)
  // in its backend store: "cuda/" under the group's store on torch 2.x, the
  // group's store itself on 1.x.
  return protocol == TorchStoreProtocol::kV2 ? absl::StrCat(layout.pg_prefix, "/cuda//0")
                                             : absl::StrCat(layout.pg_prefix, "0");
}

absl::StatusOr<std::unique_ptr<TorchTransport>> TorchTransport::Create(
    const TransportOptions& options) {
  absl::Status st = ValidateTransportOptions(options);
  if (!st.ok()) return st;
  if (options.rendezvous != "torch") {
    return absl::InvalidArgumentError("TorchTransport needs rendezvous \"torch\"");
  }
  if (options.backend != "gloo") {
    return absl::FailedPreconditionError(absl::StrCat(
        "backend \"", options.backend, "\" with rendezvous \"torch\" is not available in "
        "this build; use backend \"gloo\""));
  }
  if (options.rank == 0) {
    return absl::InvalidArgumentError(
        "rank 0 of a torch group is the trainer; the engine joins as rank_offset >= 1");
  }
  const absl::Time deadline = absl::Now() + options.init_timeout;
  TorchStoreClient::Options so;
  so.master_address = options.master_address;
  so.master_port = options.master_port;
  so.deadline = deadline;
  absl::StatusOr<std::unique_ptr<TorchStoreClient>> store = TorchStoreClient::Connect(so);
  if (!store.ok()) return store.status();
  const TorchStoreProtocol protocol = (*store)->protocol();
  std::vector<std::unique_ptr<GlooMesh>> meshes;
  for (const TorchGroupLayout& layout :
       TorchGroupLayouts(protocol, options.torch_group, options.group_name)) {
    GlooMeshOptions mo;
    mo.wire = protocol == TorchStoreProtocol::kV2 ? GlooWire::kCurrent : GlooWire::kLegacy;
    mo.rank = options.rank;
    mo.size = options.world_size;
    mo.key_prefix = layout.mesh_prefix;
    mo.bind_address = (*store)->local_address();
    mo.deadline = deadline;
    mo.description = absl::StrCat(layout.description, " (", TorchStoreProtocolName(protocol),
                                  ", weight group \"", options.group_name, "\")");
    absl::StatusOr<std::unique_ptr<GlooMesh>> mesh = GlooMesh::Connect(store->get(), mo);
    if (!mesh.ok()) return mesh.status();
    meshes.push_back(std::move(mesh).value());
    if (!layout.barrier_key.empty()) {
      absl::StatusOr<int64_t> count = (*store)->Add(layout.barrier_key, 1);
      if (!count.ok()) return count.status();
      if (*count == options.world_size) {
        st = (*store)->Set(absl::StrCat(layout.barrier_key, ":last_worker"), "1");
        if (!st.ok()) return st;
      }
    }
  }
  return std::unique_ptr<TorchTransport>(
      new TorchTransport(options, std::move(store).value(), std::move(meshes)));
}

TorchTransport::~TorchTransport() { Close(); }

absl::Status TorchTransport::Broadcast(void* data, size_t bytes, int root) {
  GlooMesh* mesh = meshes_.back().get();
  const uint32_t tag = next_tag_++;
  absl::Status st =
      mesh->Broadcast(data, bytes, root, tag, absl::Now() + options_.transfer_timeout);
  if (!st.ok() && !absl::IsInvalidArgument(st) && !absl::IsFailedPrecondition(st)) {
    return absl::AbortedError(absl::StrCat("broadcast ", tag, " of ", bytes, " bytes (timeout ",
                                           absl::FormatDuration(options_.transfer_timeout),
                                           "): ", st.message()));
  }
  return st;
}

absl::StatusOr<int32_t> TorchTransport::AllReduceMin(int32_t) {
  return absl::UnimplementedError(
      "a torch group carries only the trainer's broadcasts (rank 0 runs plain "
      "torch.distributed)");
}

absl::Status TorchTransport::Barrier() {
  return absl::UnimplementedError(
      "a torch group carries only the trainer's broadcasts (rank 0 runs plain "
      "torch.distributed)");
}

void TorchTransport::Close() {
  for (const std::unique_ptr<GlooMesh>& mesh : meshes_) mesh->Close();
}

bool TorchTransport::broken() const {
  for (const std::unique_ptr<GlooMesh>& mesh : meshes_) {
    if (mesh->broken() || mesh->PeerClosed()) return true;
  }
  return false;
}

std::string TorchTransport::detail() const {
  return absl::StrCat(TorchStoreProtocolName(store_->protocol()), " TCPStore at ",
                      store_->peer(), ", torch_group ", options_.torch_group, ", ",
                      next_tag_.load(), " broadcasts so far");
}

}  // namespace weight_sync
}  // namespace colo
