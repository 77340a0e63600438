// GlooTransport: Transport over Gloo's TCP transport (Debian's libgloo).
// Host memory only. Rendezvous through the colo TCP store (rendezvous.h);
// the Gloo context connects a full mesh, so every pair of ranks has a TCP
// connection (Gloo's broadcast is a binomial tree).
//
// Gloo reports failures by throwing; every call is wrapped and a thrown
// gloo::Exception (peer closed, timeout) becomes ABORTED naming the
// operation, and marks the transport broken (see transport.h).
// Thread safety: collective calls must not overlap; rank()/world_size()/
// broken() are thread-safe.
#ifndef COLO_WEIGHT_SYNC_GLOO_TRANSPORT_H_
#define COLO_WEIGHT_SYNC_GLOO_TRANSPORT_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "weight_sync/rendezvous.h"
#include "weight_sync/transport.h"

namespace gloo {
class Context;
}  // namespace gloo

namespace colo {
namespace weight_sync {

class GlooTransport : public Transport {
 public:
  // See CreateTransport in transport.h for the contract and error codes.
  static absl::StatusOr<std::unique_ptr<GlooTransport>> Create(
      const TransportOptions& options,
      std::unique_ptr<TcpStoreServer> server = nullptr);
  ~GlooTransport() override;

  int rank() const override { return options_.rank; }
  int world_size() const override { return options_.world_size; }
  const std::string& backend() const override { return backend_; }
  MemorySpace memory_space() const override { return MemorySpace::kHost; }
  int master_port() const override { return master_port_; }

  absl::Status Broadcast(void* data, size_t bytes, int root) override;
  absl::StatusOr<int32_t> AllReduceMin(int32_t value) override;
  absl::Status Barrier() override;
  void Close() override;
  // Also true once the master's rendezvous connection closed (the sender
  // exited between updates).
  bool broken() const override;
  // The connected Gloo context, for collectives this interface does not
  // offer (the tensor-parallel all-gather, engine/tp). Same rules as the
  // collectives above: one caller at a time; null once closed.
  const std::shared_ptr<gloo::Context>& gloo_context() const { return context_; }

 private:
  GlooTransport(const TransportOptions& options,
                std::unique_ptr<Rendezvous> rendezvous,
                std::shared_ptr<gloo::Context> context);
  // Runs a Gloo call, turning exceptions into ABORTED and marking broken.
  absl::Status Run(const char* op, const std::function<void()>& fn);

  // Constant after construction.
  const TransportOptions options_;
  const std::string backend_ = "gloo";
  const int master_port_;
  // Owned by the single collective caller (see class comment).
  std::unique_ptr<Rendezvous> rendezvous_;
  std::shared_ptr<gloo::Context> context_;
  uint32_t next_tag_ = 1;
  std::atomic<bool> broken_{false};
};

}  // namespace weight_sync
}  // namespace colo

#endif  // COLO_WEIGHT_SYNC_GLOO_TRANSPORT_H_
