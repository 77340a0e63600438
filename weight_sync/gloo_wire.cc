#include "weight_sync/gloo_wire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "weight_sync/socket_io.h"

namespace colo {
namespace weight_sync {
namespace {

constexpr uint64_t kSendUnboundBuffer = 1;
constexpr uint64_t kNotifySendReady = 2;
constexpr uint64_t kNotifyRecvReady = 3;
constexpr size_t kPreambleBytes = 48;
// sockaddr_storage (128) + i64 sequence number, as gloo's tcp::Address.
constexpr size_t kAddressBytes = 136;
constexpr size_t kSockaddrBytes = 128;
constexpr size_t kScratchBytes = size_t{1} << 20;

void AppendU64(std::string* out, uint64_t v) {
  char b[8];
  PutU64Le(b, v);
  out->append(b, 8);
}

std::string Hostname() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "localhost";
  return buf;
}

void CloseFd(int* fd) {
  if (*fd >= 0) {
    close(*fd);
    *fd = -1;
  }
}

// A listening IPv4 socket on `ip`:0.
absl::StatusOr<int> Listen(const std::string& ip, sockaddr_in* bound, int backlog) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("socket(): ", strerror(errno)));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr;
  memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  if (inet_pton(AF_INET, ip.c_str(), &addr.sin_addr) != 1) {
    close(fd);
    return absl::InvalidArgumentError(absl::StrCat("\"", ip, "\" is not an IPv4 address"));
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(fd, backlog) != 0) {
    const int err = errno;
    close(fd);
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", ip, " for the gloo mesh: ", strerror(err)));
  }
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  *bound = addr;
  return fd;
}

// gloo's tcp::Address bytes: sockaddr_storage then the sequence number.
std::string AddressBytes(const sockaddr_in& addr, int64_t seq) {
  std::string out(kAddressBytes, '\0');
  std::memcpy(out.data(), &addr, sizeof(addr));
  PutU64Le(out.data() + kSockaddrBytes, static_cast<uint64_t>(seq));
  return out;
}

// The IPv4 socket address in gloo address bytes.
absl::StatusOr<sockaddr_in> ParseAddress(const char* bytes, size_t n, const std::string& who) {
  if (n < sizeof(sockaddr_in)) {
    return absl::FailedPreconditionError(
        absl::StrCat(who, " published a ", n, "-byte address (want ", kAddressBytes, ")"));
  }
  sockaddr_in addr;
  std::memcpy(&addr, bytes, sizeof(addr));
  if (addr.sin_family != AF_INET) {
    return absl::FailedPreconditionError(absl::StrCat(
        who, " published an address of family ", addr.sin_family,
        " (not IPv4): colo's torch rendezvous supports IPv4 peers; make the trainer's "
        "gloo device IPv4 (GLOO_SOCKET_IFNAME=<interface> or a host name that resolves "
        "to IPv4)"));
  }
  return addr;
}

// gloo: the side whose address compares greater initiates the connection.
bool IsInitiator(const sockaddr_in& local, int64_t local_seq, const sockaddr_in& remote,
                 int64_t remote_seq) {
  int rv = std::memcmp(&local.sin_addr, &remote.sin_addr, sizeof(in_addr));
  if (rv == 0) rv = static_cast<int>(local.sin_port) - static_cast<int>(remote.sin_port);
  if (rv == 0) rv = local_seq > remote_seq ? 1 : (local_seq < remote_seq ? -1 : 0);
  return rv > 0;
}

std::string Ipv4String(const sockaddr_in& addr) {
  char buf[INET_ADDRSTRLEN] = {0};
  inet_ntop(AF_INET, &addr.sin_addr, buf, sizeof(buf));
  return buf;
}

void SetNonBlocking(int fd) {
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int PollMillis(absl::Time deadline) {
  if (deadline == absl::InfiniteFuture()) return 1000;
  const int64_t left = absl::ToInt64Milliseconds(deadline - absl::Now()) + 1;
  return static_cast<int>(std::clamp<int64_t>(left, 0, 1000));
}

// Accepts connections on `listeners` until every one in `expected` (listener
// index -> pair) got its peer. For the current wire one listener serves
// every pair and the peer writes the pair's sequence number first.
struct Incoming {
  int listener = -1;
  int seq = -1;     // current wire: the sequence number the peer must send
  int pair = -1;    // peer rank
};

}  // namespace

uint64_t GlooBroadcastSlot(uint32_t tag) {
  return (uint64_t{0x06} << 56) | (static_cast<uint64_t>(tag) << 24);
}

absl::StatusOr<std::unique_ptr<GlooMesh>> GlooMesh::Connect(
    RendezvousStore* store, const GlooMeshOptions& options) {
  if (options.size < 2 || options.rank < 0 || options.rank >= options.size) {
    return absl::InvalidArgumentError(absl::StrCat(
        options.description, ": rank ", options.rank, " / size ", options.size,
        " do not form a mesh"));
  }
  const int me = options.rank;
  const int n = options.size;
  const std::string hostname = options.hostname.empty() ? Hostname() : options.hostname;
  const std::string& prefix = options.key_prefix;
  std::vector<Pair> pairs(n);
  for (int p = 0; p < n; ++p) pairs[p].peer = p;
  std::vector<int> listeners;  // closed on return
  struct ListenerGuard {
    std::vector<int>* fds;
    ~ListenerGuard() {
      for (int& fd : *fds) CloseFd(&fd);
    }
  } guard{&listeners};
  auto fail = [&](absl::Status st) {
    for (Pair& pair : pairs) CloseFd(&pair.fd);
    return st;
  };
  const std::string where = absl::StrCat(options.description, " rank ", me, "/", n);

  // Listening sockets and this rank's record.
  std::vector<sockaddr_in> local(n);  // the address each pair presents
  std::vector<Incoming> incoming;
  if (options.wire == GlooWire::kCurrent) {
    sockaddr_in bound;
    absl::StatusOr<int> fd = Listen(options.bind_address, &bound, n);
    if (!fd.ok()) return fail(fd.status());
    listeners.push_back(*fd);
    std::string record;
    AppendU64(&record, hostname.size());
    record += hostname;
    AppendU64(&record, kAddressBytes);
    record += AddressBytes(bound, -1);
    for (int p = 0; p < n; ++p) AppendU64(&record, static_cast<uint64_t>(p));
    for (int p = 0; p < n; ++p) local[p] = bound;
    absl::Status st = store->Set(absl::StrCat(prefix, me), record);
    if (!st.ok()) return fail(st);
  } else {
    absl::Status st = store->Set(absl::StrCat(prefix, "rank_", me), hostname);
    if (!st.ok()) return fail(st);
    std::string all;
    for (int p = 0; p < n; ++p) {
      if (p == me) continue;
      sockaddr_in bound;
      absl::StatusOr<int> fd = Listen(options.bind_address, &bound, 1);
      if (!fd.ok()) return fail(fd.status());
      listeners.push_back(*fd);
      local[p] = bound;
      all += AddressBytes(bound, -1);
    }
    st = store->Set(absl::StrCat(prefix, me), all);
    if (!st.ok()) return fail(st);
  }

  // Every peer's record; initiate or expect each connection.
  for (int p = 0; p < n; ++p) {
    if (p == me) continue;
    const std::string who = absl::StrCat("rank ", p, " of ", options.description);
    absl::StatusOr<std::string> record = store->Get(absl::StrCat(prefix, p), options.deadline);
    if (!record.ok()) {
      return fail(absl::Status(record.status().code(),
                               absl::StrCat(where, ": waiting for the address of rank ", p,
                                            ": ", record.status().message())));
    }
    sockaddr_in remote;
    int64_t remote_seq = -1;  // what this rank presents to the peer
    if (options.wire == GlooWire::kCurrent) {
      const std::string& r = *record;
      size_t off = 0;
      auto need = [&](size_t k) { return off + k <= r.size(); };
      if (!need(8)) return fail(absl::FailedPreconditionError(who + ": short record"));
      const uint64_t host_len = GetU64Le(r.data() + off);
      off += 8;
      if (!need(host_len + 8)) return fail(absl::FailedPreconditionError(who + ": short record"));
      off += host_len;
      const uint64_t addr_len = GetU64Le(r.data() + off);
      off += 8;
      if (!need(addr_len)) return fail(absl::FailedPreconditionError(who + ": short record"));
      absl::StatusOr<sockaddr_in> a = ParseAddress(r.data() + off, addr_len, who);
      if (!a.ok()) return fail(a.status());
      remote = *a;
      off += addr_len;
      const size_t ids = (r.size() - off) / 8;
      if ((r.size() - off) % 8 != 0 || ids != static_cast<size_t>(n)) {
        return fail(absl::FailedPreconditionError(absl::StrCat(
            who, " published ", ids, " pair identifiers for a world of ", n,
            " (does the trainer use the same world_size?)")));
      }
      remote_seq = static_cast<int64_t>(GetU64Le(r.data() + off + 8 * me));
      if (IsInitiator(local[p], p, remote, remote_seq)) {
        absl::StatusOr<int> fd = ConnectWithRetry(
            Ipv4String(remote), ntohs(remote.sin_port), options.deadline, who);
        if (!fd.ok()) return fail(fd.status());
        char seq[8];
        PutU64Le(seq, static_cast<uint64_t>(remote_seq));
        absl::Status st = SendAll(*fd, seq, 8, options.deadline, who);
        if (!st.ok()) {
          close(*fd);
          return fail(st);
        }
        pairs[p].fd = *fd;
      } else {
        incoming.push_back({listeners[0], p, p});
      }
    } else {
      const std::string& r = *record;
      if (r.empty() || r.size() % (n - 1) != 0) {
        return fail(absl::FailedPreconditionError(absl::StrCat(
            who, " published ", r.size(), " address bytes for a world of ", n,
            " (does the trainer use the same world_size?)")));
      }
      const size_t each = r.size() / (n - 1);
      const int index = me > p ? me - 1 : me;
      absl::StatusOr<sockaddr_in> a = ParseAddress(r.data() + index * each, each, who);
      if (!a.ok()) return fail(a.status());
      remote = *a;
      if (IsInitiator(local[p], -1, remote, -1)) {
        absl::StatusOr<int> fd = ConnectWithRetry(
            Ipv4String(remote), ntohs(remote.sin_port), options.deadline, who);
        if (!fd.ok()) return fail(fd.status());
        pairs[p].fd = *fd;
      } else {
        const int listener_index = p < me ? p : p - 1;
        incoming.push_back({listeners[listener_index], -1, p});
      }
    }
  }

  // Accept the connections the peers initiate.
  std::set<int> waiting;
  for (const Incoming& in : incoming) waiting.insert(in.pair);
  std::vector<int> accepted;  // current wire: accepted, sequence number not read yet
  while (!waiting.empty()) {
    if (absl::Now() >= options.deadline) {
      for (int fd : accepted) close(fd);
      return fail(absl::DeadlineExceededError(absl::StrCat(
          where, ": rank(s) ", absl::StrJoin(waiting, ", "),
          " did not connect before the init deadline")));
    }
    std::vector<pollfd> fds;
    std::set<int> polled;
    for (const Incoming& in : incoming) {
      if (waiting.count(in.pair) && polled.insert(in.listener).second) {
        fds.push_back({in.listener, POLLIN, 0});
      }
    }
    if (poll(fds.data(), fds.size(), PollMillis(options.deadline)) < 0 && errno != EINTR) {
      return fail(absl::UnavailableError(absl::StrCat("poll(): ", strerror(errno))));
    }
    for (const pollfd& pfd : fds) {
      if (!(pfd.revents & POLLIN)) continue;
      const int fd = accept4(pfd.fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      int pair = -1;
      if (options.wire == GlooWire::kLegacy) {
        for (const Incoming& in : incoming) {
          if (in.listener == pfd.fd) pair = in.pair;
        }
      } else {
        char seq[8];
        absl::Status st = RecvAll(fd, seq, 8, options.deadline, where);
        const int64_t s = st.ok() ? static_cast<int64_t>(GetU64Le(seq)) : -1;
        for (const Incoming& in : incoming) {
          if (in.seq == s && waiting.count(in.pair)) pair = in.pair;
        }
      }
      if (pair < 0 || !waiting.count(pair)) {
        close(fd);  // not a peer we expect (e.g. a stray connect)
        continue;
      }
      pairs[pair].fd = fd;
      waiting.erase(pair);
    }
  }
  for (Pair& pair : pairs) {
    if (pair.fd >= 0) SetNonBlocking(pair.fd);
  }
  return std::unique_ptr<GlooMesh>(new GlooMesh(options, std::move(pairs)));
}

GlooMesh::~GlooMesh() {
  for (Pair& pair : pairs_) CloseFd(&pair.fd);
}

void GlooMesh::Close() {
  broken_.store(true);
  for (Pair& pair : pairs_) {
    if (pair.fd >= 0) shutdown(pair.fd, SHUT_RDWR);
  }
}

bool GlooMesh::PeerClosed() const {
  for (const Pair& pair : pairs_) {
    if (pair.fd >= 0 && SocketPeerClosed(pair.fd)) return true;
  }
  return false;
}

std::string GlooMesh::PeerName(int peer) const {
  return absl::StrCat("rank ", peer, " of ", options_.description);
}

absl::Status GlooMesh::Fail(absl::Status st) {
  broken_.store(true);
  if (failure_.ok()) failure_ = st;
  return st;
}

void GlooMesh::Queue(Pair* pair, uint64_t opcode, uint64_t slot, size_t length,
                     const char* data) {
  Send s;
  PutU64Le(s.header, kPreambleBytes + (opcode == kSendUnboundBuffer ? length : 0));
  PutU64Le(s.header + 8, opcode);
  PutU64Le(s.header + 16, slot);
  PutU64Le(s.header + 24, 0);  // offset
  PutU64Le(s.header + 32, length);
  PutU64Le(s.header + 40, 0);  // roffset
  if (opcode == kSendUnboundBuffer) {
    s.data = data;
    s.data_bytes = length;
  }
  pair->tx.push_back(s);
}

absl::Status GlooMesh::WriteTo(Pair* pair) {
  while (!pair->tx.empty()) {
    Send& s = pair->tx.front();
    iovec iov[2];
    int n = 0;
    if (s.done < kPreambleBytes) {
      iov[n++] = {s.header + s.done, kPreambleBytes - s.done};
    }
    const size_t data_done = s.done > kPreambleBytes ? s.done - kPreambleBytes : 0;
    if (s.data_bytes > data_done) {
      iov[n++] = {const_cast<char*>(s.data) + data_done, s.data_bytes - data_done};
    }
    if (n == 0) {
      pair->tx.pop_front();
      continue;
    }
    msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = iov;
    msg.msg_iovlen = n;
    const ssize_t w = sendmsg(pair->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return absl::OkStatus();
      return absl::AbortedError(absl::StrCat("sending to ", PeerName(pair->peer), ": ",
                                             strerror(errno), " (did it exit?)"));
    }
    s.done += static_cast<size_t>(w);
    if (s.done == kPreambleBytes + s.data_bytes) pair->tx.pop_front();
  }
  return absl::OkStatus();
}

absl::Status GlooMesh::HandlePreamble(Pair* pair) {
  const unsigned char* p = pair->preamble;
  const uint64_t nbytes = GetU64Le(p);
  const uint64_t opcode = GetU64Le(p + 8);
  const uint64_t slot = GetU64Le(p + 16);
  const uint64_t length = GetU64Le(p + 32);
  const std::string who = PeerName(pair->peer);
  switch (opcode) {
    case kNotifySendReady:
      pair->peer_send_ready[slot] = length;
      return absl::OkStatus();
    case kNotifyRecvReady: {
      auto it = pair->sends.find(slot);
      if (it != pair->sends.end() && !it->second.queued) {
        // Like gloo, send what this rank has; a receiver expecting another
        // size reports the mismatch.
        it->second.queued = true;
        Queue(pair, kSendUnboundBuffer, slot, it->second.bytes, it->second.data);
      } else {
        pair->peer_recv_ready[slot]++;
      }
      return absl::OkStatus();
    }
    case kSendUnboundBuffer: {
      auto it = pair->recvs.find(slot);
      if (it == pair->recvs.end() || it->second.done || nbytes != kPreambleBytes + length) {
        return absl::AbortedError(absl::StrCat(
            who, " sent ", length, " bytes for slot ", slot,
            " that this rank did not ask for (protocol error: is it a torch "
            "ProcessGroupGloo running a different collective?)"));
      }
      if (length != it->second.bytes) {
        return absl::InvalidArgumentError(absl::StrCat(
            who, " broadcast ", length, " bytes where this rank expected ",
            it->second.bytes, " (the names, dtypes and shapes of the update must match "
            "the tensors the trainer broadcasts, in order)"));
      }
      pair->slot = slot;
      pair->payload_left = length;
      pair->payload_dst = it->second.dst;
      if (length == 0) it->second.done = true;
      return absl::OkStatus();
    }
    default:
      return absl::AbortedError(absl::StrCat(
          who, " sent gloo opcode ", opcode,
          " (protocol error: only unbound-buffer broadcasts are expected)"));
  }
}

absl::Status GlooMesh::ReadFrom(Pair* pair) {
  while (true) {
    char* dst;
    size_t want;
    if (pair->payload_left > 0) {
      if (pair->payload_dst != nullptr) {
        dst = pair->payload_dst;
        want = pair->payload_left;
      } else {
        if (scratch_.empty()) scratch_.resize(kScratchBytes);
        dst = scratch_.data();
        want = std::min(pair->payload_left, scratch_.size());
      }
    } else {
      dst = reinterpret_cast<char*>(pair->preamble) + pair->preamble_got;
      want = kPreambleBytes - pair->preamble_got;
    }
    const ssize_t r = recv(pair->fd, dst, want, MSG_DONTWAIT);
    if (r == 0) {
      return absl::AbortedError(absl::StrCat(PeerName(pair->peer),
                                             " closed its connection (did it exit or "
                                             "destroy its process group?)"));
    }
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return absl::OkStatus();
      return absl::AbortedError(absl::StrCat("receiving from ", PeerName(pair->peer), ": ",
                                             strerror(errno), " (did it exit?)"));
    }
    const size_t got = static_cast<size_t>(r);
    if (pair->payload_left > 0) {
      pair->payload_left -= got;
      if (pair->payload_dst != nullptr) pair->payload_dst += got;
      if (pair->payload_left == 0) pair->recvs[pair->slot].done = true;
      continue;
    }
    pair->preamble_got += got;
    if (pair->preamble_got == kPreambleBytes) {
      pair->preamble_got = 0;
      absl::Status st = HandlePreamble(pair);
      if (!st.ok()) return st;
    }
  }
}

template <typename Done>
absl::Status GlooMesh::Pump(absl::Time deadline, const Done& done, const char* what) {
  std::vector<pollfd> fds;
  std::vector<Pair*> owners;
  while (!done()) {
    if (broken_.load() && failure_.ok()) {
      return Fail(absl::AbortedError(absl::StrCat(options_.description, " was closed")));
    }
    if (absl::Now() >= deadline) {
      return Fail(absl::DeadlineExceededError(absl::StrCat(
          what, " in ", options_.description, " did not finish before the transfer "
          "timeout (is the trainer still broadcasting?)")));
    }
    fds.clear();
    owners.clear();
    for (Pair& pair : pairs_) {
      if (pair.fd < 0) continue;
      fds.push_back({pair.fd, static_cast<short>(POLLIN | (pair.tx.empty() ? 0 : POLLOUT)), 0});
      owners.push_back(&pair);
    }
    const int r = poll(fds.data(), fds.size(), PollMillis(deadline));
    if (r < 0 && errno != EINTR) {
      return Fail(absl::UnavailableError(absl::StrCat("poll(): ", strerror(errno))));
    }
    for (size_t i = 0; r > 0 && i < fds.size(); ++i) {
      if (fds[i].revents & (POLLIN | POLLERR | POLLHUP)) {
        absl::Status st = ReadFrom(owners[i]);
        if (!st.ok()) return Fail(st);
      }
      if (fds[i].revents & POLLOUT) {
        absl::Status st = WriteTo(owners[i]);
        if (!st.ok()) return Fail(st);
      }
    }
  }
  return absl::OkStatus();
}

absl::Status GlooMesh::Broadcast(void* data, size_t bytes, int root, uint32_t tag,
                                 absl::Time deadline) {
  if (broken_.load()) {
    return absl::FailedPreconditionError(absl::StrCat(
        options_.description, " is broken by an earlier failure",
        failure_.ok() ? "" : absl::StrCat(" (", failure_.message(), ")"),
        "; destroy the group and form it again"));
  }
  const int n = options_.size;
  if (root < 0 || root >= n) {
    return absl::InvalidArgumentError(absl::StrCat("broadcast root ", root, " outside the group"));
  }
  const uint64_t slot = GlooBroadcastSlot(tag);
  const size_t vrank = static_cast<size_t>((options_.rank + n - root) % n);
  size_t dim = 0;
  while ((size_t{1} << dim) < static_cast<size_t>(n)) ++dim;
  int parent = -1;
  std::vector<int> children;
  size_t mask = (size_t{1} << dim) - 1;
  for (size_t i = 0; i < dim; ++i) {
    mask ^= (size_t{1} << i);
    if ((vrank & mask) != 0) continue;
    const size_t vpeer = vrank ^ (size_t{1} << i);
    if (vpeer >= static_cast<size_t>(n)) continue;
    const int peer = static_cast<int>((vpeer + root) % n);
    if ((vrank & (size_t{1} << i)) == 0) {
      children.push_back(peer);
    } else {
      parent = peer;
    }
  }
  // A discarding rank that forwards needs the bytes once.
  std::vector<char> forward;
  char* buf = static_cast<char*>(data);
  if (buf == nullptr && !children.empty() && bytes > 0) {
    forward.resize(bytes);
    buf = forward.data();
  }
  if (parent >= 0) {
    Pair* p = &pairs_[parent];
    PostedRecv& recv = p->recvs[slot];
    recv = PostedRecv{buf, bytes, false};
    p->peer_send_ready.erase(slot);
    Queue(p, kNotifyRecvReady, slot, bytes, nullptr);
    absl::Status st = Pump(deadline, [&] { return p->recvs[slot].done; },
                           absl::StrCat("receiving broadcast tag ", tag, " from rank ", parent).c_str());
    p->recvs.erase(slot);
    if (!st.ok()) return st;
  }
  for (int c : children) {
    Pair* p = &pairs_[c];
    PendingSend& send = p->sends[slot];
    send = PendingSend{buf, bytes, false};
    Queue(p, kNotifySendReady, slot, bytes, nullptr);
    auto ready = p->peer_recv_ready.find(slot);
    if (ready != p->peer_recv_ready.end()) {
      if (--ready->second == 0) p->peer_recv_ready.erase(ready);
      send.queued = true;
      Queue(p, kSendUnboundBuffer, slot, bytes, buf);
    }
  }
  if (!children.empty()) {
    absl::Status st = Pump(
        deadline,
        [&] {
          for (int c : children) {
            const Pair& p = pairs_[c];
            if (!p.sends.at(slot).queued || !p.tx.empty()) return false;
          }
          return true;
        },
        absl::StrCat("forwarding broadcast tag ", tag).c_str());
    for (int c : children) pairs_[c].sends.erase(slot);
    if (!st.ok()) return st;
  }
  return absl::OkStatus();
}

}  // namespace weight_sync
}  // namespace colo
