// GlooTpComm: the collectives of a tensor-parallel CPU engine over Gloo's TCP
// transport (host memory). The group forms through the colo rendezvous
// (weight_sync/rendezvous.h: rank 0 hosts the store, the others join it) as a
// weight_sync::GlooTransport named "colo-tp", whose connected full mesh the
// collectives here run on.
//
// AllReduceSum is an all-gather followed by a sum in rank order (not Gloo's
// ring all-reduce, whose chunking depends on the buffer size): every rank
// gets the same bits, and a request's result does not depend on the batch
// it ran in. AllGather is Gloo's ring all-gather.
//
// Deadlines: forming the group is bounded by init_timeout; every collective
// by `timeout`. A failed or timed-out collective (a peer died: its socket
// closes at once; a peer hangs: the timeout) is ABORTED naming the
// operation, and the communicator is broken: later calls fail
// FAILED_PRECONDITION at once.
//
// Thread safety: collectives must not overlap (one forward at a time);
// rank()/size()/broken()/stats() are thread-safe.
#ifndef COLO_ENGINE_TP_GLOO_TP_COMM_H_
#define COLO_ENGINE_TP_GLOO_TP_COMM_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/model/tp_collectives.h"
#include "engine/tp/tp_comm_options.h"
#include "weight_sync/gloo_transport.h"
#include "weight_sync/tcp_store.h"

namespace colo {
namespace engine {

// Time and bytes spent in collectives (for the bench and GetServerInfo).
struct TpCommStats {
  int64_t calls = 0;
  int64_t bytes = 0;   // bytes this rank contributed
  int64_t micros = 0;  // wall time inside collectives
};

class GlooTpComm : public TpCollectives {
 public:
  using Options = TpCommOptions;
  // Blocks until every rank joined (or DEADLINE_EXCEEDED / INVALID_ARGUMENT
  // from the rendezvous). `server`: rank 0's already started store.
  static absl::StatusOr<std::unique_ptr<GlooTpComm>> Create(
      const Options& options, std::unique_ptr<weight_sync::TcpStoreServer> server = nullptr);
  ~GlooTpComm() override;

  int rank() const override { return options_.rank; }
  int size() const override { return options_.size; }
  absl::Status AllReduceSum(float* data, int64_t n) override;
  absl::Status AllGather(const float* in, int64_t n, float* out) override;

  bool broken() const { return broken_.load(); }
  TpCommStats stats() const;

 private:
  GlooTpComm(const Options& options, std::unique_ptr<weight_sync::GlooTransport> transport)
      : options_(options), transport_(std::move(transport)) {}
  // Runs a Gloo call; a thrown exception becomes ABORTED and breaks the
  // communicator.
  absl::Status Run(const char* op, int64_t bytes, const std::function<void()>& fn);

  const Options options_;
  std::unique_ptr<weight_sync::GlooTransport> transport_;
  // Owned by the single collective caller.
  std::vector<float> gathered_;
  uint32_t next_tag_ = 1u << 20;  // clear of the transport's own tags
  std::atomic<bool> broken_{false};
  std::atomic<int64_t> calls_{0}, bytes_{0}, micros_{0};
};

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_TP_GLOO_TP_COMM_H_
