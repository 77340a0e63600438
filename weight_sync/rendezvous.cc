#include "weight_sync/rendezvous.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "weight_sync/socket_io.h"

namespace colo {
namespace weight_sync {

absl::Status ValidateTransportOptions(const TransportOptions& options) {
  if (options.world_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("world_size must be >= 1, got ", options.world_size));
  }
  if (options.rank < 0 || options.rank >= options.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", options.rank, " is outside [0, world_size=",
                     options.world_size, ")"));
  }
  if (options.group_name.empty()) {
    return absl::InvalidArgumentError("group_name must not be empty");
  }
  if (options.init_timeout <= absl::ZeroDuration() ||
      options.transfer_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("init and transfer timeouts must be > 0");
  }
  if (options.master_port < 0 || options.master_port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("master_port ", options.master_port, " is not a TCP port"));
  }
  if (options.rank != 0 && options.master_port == 0) {
    return absl::InvalidArgumentError(
        "master_port 0 (pick a free port) is only valid on rank 0");
  }
  if (options.rank != 0 && options.master_address.empty()) {
    return absl::InvalidArgumentError(
        "master_address is empty: give the address of the trainer's rank 0");
  }
  if (options.rendezvous != "colo" && options.rendezvous != "torch") {
    return absl::InvalidArgumentError(absl::StrCat(
        "rendezvous must be \"colo\" or \"torch\", got \"", options.rendezvous, "\""));
  }
  if (options.rendezvous == "torch" && options.torch_group != "world" &&
      options.torch_group != "new_group" && options.torch_group != "custom") {
    return absl::InvalidArgumentError(absl::StrCat(
        "torch_group must be \"world\", \"new_group\" or \"custom\", got \"",
        options.torch_group, "\""));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Rendezvous>> JoinRendezvous(
    const TransportOptions& options, std::unique_ptr<TcpStoreServer> server,
    absl::Time deadline) {
  auto rv = std::make_unique<Rendezvous>();
  if (options.rank == 0) {
    if (server == nullptr) {
      TcpStoreServer::Options so;
      so.bind_address = options.master_address;
      so.port = options.master_port;
      so.group_name = options.group_name;
      so.world_size = options.world_size;
      absl::StatusOr<std::unique_ptr<TcpStoreServer>> s = TcpStoreServer::Start(so);
      if (!s.ok()) return s.status();
      server = std::move(s).value();
    }
    absl::StatusOr<std::string> ip = ResolveIpv4(options.master_address);
    if (!ip.ok()) return ip.status();
    if (*ip == "0.0.0.0") {
      return absl::InvalidArgumentError(
          "master_address must be an address the other ranks can reach, not "
          "a wildcard");
    }
    rv->local_address = *ip;
    rv->master_port = server->port();
    absl::Status st = server->WaitForJoins(deadline);
    rv->server = std::move(server);
    if (!st.ok()) return st;
    return rv;
  }
  TcpStoreClient::Options co;
  co.master_address = options.master_address;
  co.master_port = options.master_port;
  co.group_name = options.group_name;
  co.rank = options.rank;
  co.world_size = options.world_size;
  co.deadline = deadline;
  absl::StatusOr<std::unique_ptr<TcpStoreClient>> c = TcpStoreClient::Connect(co);
  if (!c.ok()) return c.status();
  rv->client = std::move(c).value();
  rv->local_address = rv->client->local_address();
  rv->master_port = options.master_port;
  return rv;
}

}  // namespace weight_sync
}  // namespace colo
