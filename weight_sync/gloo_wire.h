// GlooMesh: the engine's side of a torch ProcessGroupGloo, speaking the
// Gloo TCP transport's wire protocol itself (so no version of libgloo has to
// match the trainer's torch). Used by TorchTransport (torch_transport.h) for
// groups a stock PyTorch trainer forms.
//
// Full-mesh setup (through the torch TCPStore, keys under key_prefix):
//   kCurrent  Gloo as bundled with torch 2.x (tested: torch 2.15.0). One
//             listening socket per process; each rank SETs "<rank>" to a
//             Rank record: u64 hostname length, hostname, u64 address length
//             (136), the address (sockaddr_storage, 128 bytes, then an i64
//             sequence number, -1), then `size` i64 pair identifiers (the
//             sequence number peer i must present). The initiator of a pair
//             connects to the peer's listener and writes the peer's pair
//             identifier for it (8 bytes, little endian).
//   kLegacy   Gloo of 2022 (Debian's libgloo 0.0~git20220518, which Debian's
//             torch 1.13 links). Each rank SETs "rank_<rank>" to its hostname
//             and "<rank>" to the concatenated 136-byte addresses of one
//             listening socket per peer (rank order, self skipped); the
//             initiator connects to the listener of that pair and writes
//             nothing.
// In both, the initiator of a pair is the side whose address compares
// greater (IPv4 address bytes, then the port in network byte order as an
// integer, as gloo's Device/Pair do).
//
// Messages (both): a 48-byte preamble of six u64 {nbytes (preamble +
// payload), opcode, slot, offset, length, roffset}, then `length` payload
// bytes for SEND_UNBOUND_BUFFER (1). NOTIFY_SEND_READY (2) and
// NOTIFY_RECV_READY (3) carry no payload. A receiver announces
// NOTIFY_RECV_READY(slot, nbytes); the sender answers with
// NOTIFY_SEND_READY(slot) and, once the receiver is ready, the data.
//
// Broadcast is gloo::broadcast: a binomial tree over virtual ranks
// (rank - root) mod size; slot = (0x06 << 56) | (tag << 24). Each rank
// first receives from its parent, then sends to its children (a rank with
// children forwards what it received).
//
// Failures: a peer that closes or resets its connection, a protocol error or
// the deadline ends the call with ABORTED / DEADLINE_EXCEEDED naming the
// peer; a broadcast whose payload size differs from the caller's is
// INVALID_ARGUMENT. After any failure the mesh is broken: later calls are
// FAILED_PRECONDITION.
//
// Thread safety: Broadcast calls must not overlap; Close() may be called
// from another thread to unblock one (it then fails with ABORTED).
#ifndef COLO_WEIGHT_SYNC_GLOO_WIRE_H_
#define COLO_WEIGHT_SYNC_GLOO_WIRE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "weight_sync/tcp_store.h"

namespace colo {
namespace weight_sync {

enum class GlooWire { kCurrent, kLegacy };

struct GlooMeshOptions {
  GlooWire wire = GlooWire::kCurrent;
  int rank = 0;
  int size = 0;
  // Prefix of the store keys of this group's mesh, e.g.
  // "/default_pg/0//cpu//0/" (see torch_transport.cc).
  std::string key_prefix;
  // Published with the address (gloo derives local ranks from it); empty =
  // gethostname().
  std::string hostname;
  // IPv4 address the listening sockets bind to; peers connect to it.
  std::string bind_address = "127.0.0.1";
  // Bounds the whole connect.
  absl::Time deadline = absl::InfiniteFuture();
  // Names the group in messages.
  std::string description = "gloo group";
};

// The slot gloo::broadcast uses for `tag`.
uint64_t GlooBroadcastSlot(uint32_t tag);

class GlooMesh {
 public:
  // Publishes this rank's addresses, connects to every peer and returns
  // once every pair is connected. DEADLINE_EXCEEDED naming the peers that
  // did not connect (or whose keys never appeared); FAILED_PRECONDITION when
  // a peer published an address this rank cannot use (not IPv4).
  static absl::StatusOr<std::unique_ptr<GlooMesh>> Connect(RendezvousStore* store,
                                                           const GlooMeshOptions& options);
  ~GlooMesh();
  GlooMesh(const GlooMesh&) = delete;
  GlooMesh& operator=(const GlooMesh&) = delete;

  int rank() const { return options_.rank; }
  int size() const { return options_.size; }

  // gloo::broadcast of `bytes` bytes from `root` with `tag`. On the root
  // `data` is the source; elsewhere the destination, or null to receive and
  // discard (a rank with children then forwards from a temporary buffer).
  absl::Status Broadcast(void* data, size_t bytes, int root, uint32_t tag,
                         absl::Time deadline);

  // Shuts every connection down (peers see EOF) and breaks the mesh.
  void Close();
  bool broken() const { return broken_.load(); }
  // True when some peer closed its connection (non-blocking check).
  bool PeerClosed() const;

 private:
  struct Send {
    char header[48];
    const char* data = nullptr;
    size_t data_bytes = 0;
    size_t done = 0;  // bytes of header + data written
  };
  struct PostedRecv {
    char* dst = nullptr;   // null: discard
    size_t bytes = 0;
    bool done = false;
  };
  struct PendingSend {
    const char* data = nullptr;
    size_t bytes = 0;
    bool queued = false;  // data queued after the peer's NOTIFY_RECV_READY
  };
  struct Pair {
    int peer = -1;
    int fd = -1;
    // Receive state: preamble, then an optional payload.
    unsigned char preamble[48];
    size_t preamble_got = 0;
    uint64_t slot = 0;
    size_t payload_left = 0;
    char* payload_dst = nullptr;  // null: discard
    std::deque<Send> tx;
    std::map<uint64_t, PostedRecv> recvs;      // posted by this rank
    std::map<uint64_t, PendingSend> sends;     // waiting for the peer
    std::map<uint64_t, int> peer_recv_ready;   // NOTIFY_RECV_READY not yet used
    std::map<uint64_t, size_t> peer_send_ready;  // announced sizes
  };

  GlooMesh(const GlooMeshOptions& options, std::vector<Pair> pairs)
      : options_(options), pairs_(std::move(pairs)) {}
  std::string PeerName(int peer) const;
  void Queue(Pair* pair, uint64_t opcode, uint64_t slot, size_t length,
             const char* data);
  // Drives every connection until `done()` or the deadline.
  template <typename Done>
  absl::Status Pump(absl::Time deadline, const Done& done, const char* what);
  absl::Status ReadFrom(Pair* pair);
  absl::Status HandlePreamble(Pair* pair);
  absl::Status WriteTo(Pair* pair);
  absl::Status Fail(absl::Status st);

  const GlooMeshOptions options_;
  std::vector<Pair> pairs_;  // indexed by peer rank (own entry unused)
  std::vector<char> scratch_;  // discarded payloads land here
  std::atomic<bool> broken_{false};
  absl::Status failure_;
};

}  // namespace weight_sync
}  // namespace colo

#endif  // COLO_WEIGHT_SYNC_GLOO_WIRE_H_
