// Rendezvous: the store side of forming a group, shared by the Gloo and NCCL
// transports. Rank 0 hosts a TcpStoreServer and waits until every other rank
// joined; other ranks connect a TcpStoreClient (with retry) and join.
#ifndef COLO_WEIGHT_SYNC_RENDEZVOUS_H_
#define COLO_WEIGHT_SYNC_RENDEZVOUS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "weight_sync/tcp_store.h"
#include "weight_sync/transport.h"

namespace colo {
namespace weight_sync {

struct Rendezvous {
  std::unique_ptr<TcpStoreServer> server;  // rank 0 only
  std::unique_ptr<TcpStoreClient> client;  // other ranks
  // The address this rank's data transport should bind to (rank 0: the
  // master address; others: the local end of the connection to the master).
  std::string local_address;
  int master_port = 0;

  RendezvousStore* store() {
    return server ? static_cast<RendezvousStore*>(server.get()) : client.get();
  }
};

// Joins (or, on rank 0, hosts and waits for) the rendezvous by `deadline`.
// Errors: see CreateTransport in transport.h.
absl::StatusOr<std::unique_ptr<Rendezvous>> JoinRendezvous(
    const TransportOptions& options, std::unique_ptr<TcpStoreServer> server,
    absl::Time deadline);

}  // namespace weight_sync
}  // namespace colo

#endif  // COLO_WEIGHT_SYNC_RENDEZVOUS_H_
