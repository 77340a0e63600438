// TorchStoreClient: a client of PyTorch's c10d TCPStore, the key/value store
// that `torch.distributed.init_process_group(init_method="tcp://host:port")`
// starts on rank 0. The engine joins a trainer's torch group through it
// (torch_transport.h); it speaks the wire protocol of the server directly.
//
// Wire format (both generations): one query-type byte, then the arguments;
// a key or value is a u64 little-endian length followed by its bytes; ADD's
// delta and reply are i64; WAIT's and CHECK's key lists are a u64 count then
// keys; WAIT replies one byte (0 = STOP_WAITING) once every key exists.
// SET has no reply. The query-type numbers differ between generations:
//
//   query        torch 2.x (kV2)   torch 1.x (kV1, Debian's 1.13)
//   VALIDATE     0 (+u32 magic)    -
//   SET          1                 0
//   GET          3                 2
//   ADD          4                 3
//   WAIT         6                 5
//   PING         13 (+u32 nonce,   -
//                reply the nonce)
//
// A 2.x server (libuv or classic) ignores every query of a connection until
// it sent VALIDATE with magic 0x3C85F7CE; torch's own client then PINGs.
// Generation detection (no timing involved): the client opens with exactly
// VALIDATE + PING(nonce), choosing a nonce whose third byte is >= 0x80. A
// 2.x server echoes the nonce. A 1.x server reads byte 0 as SET and the next
// eight bytes (magic, PING, three nonce bytes) as the key length, which is
// then >= 2^63: its std::vector throws length_error, it drops the connection
// (its daemon catches every query error) and keeps serving the others. On
// EOF/reset the client reconnects and talks 1.x.
//
// Every rank of a torch world, the engine included, ADDs 1 to "init/" after
// connecting: rank 0's TCPStore constructor waits for world_size of them.
//
// Thread safety: thread-safe (one request at a time on the connection).
#ifndef COLO_WEIGHT_SYNC_TORCH_STORE_H_
#define COLO_WEIGHT_SYNC_TORCH_STORE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "weight_sync/tcp_store.h"

namespace colo {
namespace weight_sync {

enum class TorchStoreProtocol {
  kV1,  // torch 1.x TCPStore (tested: Debian's 1.13.1)
  kV2,  // torch 2.x TCPStore, libuv or classic daemon (tested: 2.15.0)
};

// "torch 1.x" / "torch 2.x".
const char* TorchStoreProtocolName(TorchStoreProtocol protocol);

class TorchStoreClient : public RendezvousStore {
 public:
  struct Options {
    std::string master_address;  // host name or IPv4 address
    int master_port = 0;
    // Bounds connecting (retried while refused: rank 0 may start later),
    // the generation probe and the "init/" join.
    absl::Time deadline = absl::InfiniteFuture();
    // Bounds each later request that does not wait for a key.
    absl::Duration io_timeout = absl::Seconds(30);
  };

  // Connects, detects the server's generation and joins "init/". Errors:
  // INVALID_ARGUMENT for an empty address or a port outside [1, 65535];
  // UNAVAILABLE when the address does not resolve; DEADLINE_EXCEEDED when
  // the server cannot be reached or does not answer before the deadline.
  static absl::StatusOr<std::unique_ptr<TorchStoreClient>> Connect(
      const Options& options);
  ~TorchStoreClient() override;
  TorchStoreClient(const TorchStoreClient&) = delete;
  TorchStoreClient& operator=(const TorchStoreClient&) = delete;

  TorchStoreProtocol protocol() const { return protocol_; }
  // The IPv4 address of this end of the store connection: the interface
  // that reaches the trainer (the data connections bind to it).
  const std::string& local_address() const { return local_address_; }
  // "host:port" of the server, for messages.
  const std::string& peer() const { return peer_; }

  absl::Status Set(const std::string& key, const std::string& value) override
      ABSL_LOCKS_EXCLUDED(mu_);
  // WAIT for the key, then GET it. DEADLINE_EXCEEDED naming the key when it
  // does not appear in time (the connection is then closed: a 1.x server
  // has no way to cancel a wait, so the client cannot be used any more).
  absl::StatusOr<std::string> Get(const std::string& key,
                                  absl::Time deadline) override
      ABSL_LOCKS_EXCLUDED(mu_);
  // ADD: increments the integer stored at `key` (created as 0) and returns
  // the new value.
  absl::StatusOr<int64_t> Add(const std::string& key, int64_t delta)
      ABSL_LOCKS_EXCLUDED(mu_);
  // WAIT until every key exists (see Get for the deadline).
  absl::Status Wait(const std::vector<std::string>& keys, absl::Time deadline)
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  TorchStoreClient(int fd, TorchStoreProtocol protocol, std::string local_address,
                   std::string peer, absl::Duration io_timeout)
      : fd_(fd),
        protocol_(protocol),
        local_address_(std::move(local_address)),
        peer_(std::move(peer)),
        io_timeout_(io_timeout) {}
  uint8_t Code(int v2_code, int v1_code) const;
  absl::Status WaitLocked(const std::vector<std::string>& keys, absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Marks the connection unusable after an I/O error or an abandoned wait.
  absl::Status Broken(absl::Status st) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  int fd_ ABSL_GUARDED_BY(mu_);
  absl::Status broken_ ABSL_GUARDED_BY(mu_);
  const TorchStoreProtocol protocol_;
  const std::string local_address_;
  const std::string peer_;
  const absl::Duration io_timeout_;
};

}  // namespace weight_sync
}  // namespace colo

#endif  // COLO_WEIGHT_SYNC_TORCH_STORE_H_
