#include "weight_sync/tcp_store.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "weight_sync/socket_io.h"

namespace colo {
namespace weight_sync {
namespace {

enum Op : unsigned char { kJoin = 1, kSet = 2, kGet = 3 };

// Slack added on the client side to a GET's own deadline, so the server's
// DEADLINE_EXCEEDED reply (sent at the deadline) arrives first.
constexpr absl::Duration kReplySlack = absl::Seconds(2);

absl::Status SendReply(int fd, absl::StatusCode code, const std::string& payload,
                       const std::string& peer) {
  const unsigned char c = static_cast<unsigned char>(code);
  absl::Status st = SendAll(fd, &c, 1, absl::InfiniteFuture(), peer);
  if (!st.ok()) return st;
  return SendString(fd, payload, absl::InfiniteFuture(), peer);
}

// Reads a reply; a non-OK code becomes a Status with the payload as message.
absl::StatusOr<std::string> RecvReply(int fd, absl::Time deadline,
                                      const std::string& peer) {
  unsigned char c = 0;
  absl::Status st = RecvAll(fd, &c, 1, deadline, peer);
  if (!st.ok()) return st;
  absl::StatusOr<std::string> payload = RecvString(fd, deadline, peer);
  if (!payload.ok()) return payload.status();
  if (c != 0) return absl::Status(static_cast<absl::StatusCode>(c), *payload);
  return payload;
}

void SetNoDelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

}  // namespace

// --- Server -----------------------------------------------------------------

absl::StatusOr<std::unique_ptr<TcpStoreServer>> TcpStoreServer::Start(
    const Options& options) {
  if (options.world_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("world_size must be >= 1, got ", options.world_size));
  }
  absl::StatusOr<std::string> ip = ResolveIpv4(options.bind_address);
  if (!ip.ok()) return ip.status();
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("socket(): ", strerror(errno)));
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr;
  memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(options.port));
  inet_pton(AF_INET, ip->c_str(), &addr.sin_addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(fd, 128) != 0) {
    const int err = errno;
    close(fd);
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.bind_address, ":",
                     options.port, " for the rendezvous: ", strerror(err)));
  }
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    const int err = errno;
    close(fd);
    return absl::InternalError(absl::StrCat("pipe2(): ", strerror(err)));
  }
  std::unique_ptr<TcpStoreServer> server(
      new TcpStoreServer(options, fd, ntohs(addr.sin_port), pipe_fds[0]));
  server->wake_write_fd_ = pipe_fds[1];
  server->accept_thread_ = std::thread([s = server.get()] { s->AcceptLoop(); });
  return server;
}

TcpStoreServer::TcpStoreServer(const Options& options, int listen_fd, int port,
                               int wake_fd)
    : options_(options),
      listen_fd_(listen_fd),
      port_(port),
      wake_read_fd_(wake_fd),
      wake_write_fd_(-1) {}

TcpStoreServer::~TcpStoreServer() {
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    for (int fd : conn_fds_) shutdown(fd, SHUT_RDWR);
    cv_.SignalAll();
  }
  const char byte = 0;
  (void)!write(wake_write_fd_, &byte, 1);
  accept_thread_.join();
  {
    absl::MutexLock lock(&mu_);
    threads.swap(conn_threads_);
  }
  for (std::thread& t : threads) t.join();
  absl::MutexLock lock(&mu_);
  for (int fd : conn_fds_) close(fd);
  close(listen_fd_);
  close(wake_read_fd_);
  close(wake_write_fd_);
}

void TcpStoreServer::AcceptLoop() {
  while (true) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_read_fd_, POLLIN, 0}};
    const int r = poll(fds, 2, -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 || (fds[1].revents & POLLIN)) return;
    if (!(fds[0].revents & POLLIN)) continue;
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    SetNoDelay(fd);
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      close(fd);
      return;
    }
    conn_fds_.push_back(fd);
    conn_threads_.emplace_back([this, fd] { Serve(fd); });
  }
}

std::string TcpStoreServer::Join(const std::string& group, int rank,
                                 int world_size) {
  absl::MutexLock lock(&mu_);
  std::string error;
  if (group != options_.group_name) {
    error = absl::StrCat("rank ", rank, " asked for group \"", group,
                         "\" but the master at port ", port_, " hosts \"",
                         options_.group_name, "\"");
  } else if (world_size != options_.world_size) {
    error = absl::StrCat("rank ", rank, " has world_size ", world_size,
                         " but the master (rank 0) has world_size ",
                         options_.world_size);
  } else if (rank < 1 || rank >= options_.world_size) {
    error = absl::StrCat("rank ", rank, " is outside [1, ", options_.world_size,
                         ") (rank 0 is the trainer; engines use rank_offset >= 1)");
  } else if (!joined_.insert(rank).second) {
    error = absl::StrCat("rank ", rank, " already joined group \"",
                         options_.group_name, "\"");
  }
  if (!error.empty()) rejected_.push_back(error);
  cv_.SignalAll();
  return error;
}

void TcpStoreServer::Serve(int fd) {
  const std::string peer = absl::StrCat("rendezvous client (fd ", fd, ")");
  const absl::Time inf = absl::InfiniteFuture();
  while (true) {
    unsigned char op = 0;
    if (!RecvAll(fd, &op, 1, inf, peer).ok()) return;
    if (op == kJoin) {
      absl::StatusOr<std::string> group = RecvString(fd, inf, peer);
      absl::StatusOr<std::string> rank_s = RecvString(fd, inf, peer);
      absl::StatusOr<std::string> world_s = RecvString(fd, inf, peer);
      if (!group.ok() || !rank_s.ok() || !world_s.ok()) return;
      int rank = -1, world = -1;
      if (!absl::SimpleAtoi(*rank_s, &rank) || !absl::SimpleAtoi(*world_s, &world)) {
        SendReply(fd, absl::StatusCode::kInvalidArgument, "malformed join", peer)
            .IgnoreError();
        return;
      }
      const std::string error = Join(*group, rank, world);
      if (!SendReply(fd,
                     error.empty() ? absl::StatusCode::kOk
                                   : absl::StatusCode::kInvalidArgument,
                     error, peer)
               .ok() ||
          !error.empty()) {
        return;
      }
    } else if (op == kSet) {
      absl::StatusOr<std::string> key = RecvString(fd, inf, peer);
      absl::StatusOr<std::string> value = RecvString(fd, inf, peer);
      if (!key.ok() || !value.ok()) return;
      Set(*key, *value).IgnoreError();
      if (!SendReply(fd, absl::StatusCode::kOk, "", peer).ok()) return;
    } else if (op == kGet) {
      absl::StatusOr<std::string> key = RecvString(fd, inf, peer);
      absl::StatusOr<std::string> timeout_s = RecvString(fd, inf, peer);
      if (!key.ok() || !timeout_s.ok()) return;
      int64_t timeout_ms = 0;
      if (!absl::SimpleAtoi(*timeout_s, &timeout_ms)) return;
      absl::StatusOr<std::string> value =
          Get(*key, absl::Now() + absl::Milliseconds(timeout_ms));
      if (!SendReply(fd, value.status().code(),
                     value.ok() ? *value : std::string(value.status().message()),
                     peer)
               .ok()) {
        return;
      }
    } else {
      return;  // unknown op: drop the connection
    }
  }
}

absl::Status TcpStoreServer::WaitForJoins(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  while (static_cast<int>(joined_.size()) < options_.world_size - 1) {
    if (stopping_) return absl::CancelledError("rendezvous server stopped");
    if (cv_.WaitWithDeadline(&mu_, deadline) &&
        static_cast<int>(joined_.size()) < options_.world_size - 1) {
      std::vector<int> missing;
      for (int r = 1; r < options_.world_size; ++r) {
        if (!joined_.count(r)) missing.push_back(r);
      }
      std::string msg = absl::StrCat(
          "group \"", options_.group_name, "\": ranks [",
          absl::StrJoin(missing, ", "), "] of world_size ", options_.world_size,
          " never joined the rendezvous at port ", port_);
      if (!rejected_.empty()) {
        absl::StrAppend(&msg, "; rejected joins: ", absl::StrJoin(rejected_, "; "));
      }
      return absl::DeadlineExceededError(msg);
    }
  }
  return absl::OkStatus();
}

absl::Status TcpStoreServer::Set(const std::string& key,
                                 const std::string& value) {
  absl::MutexLock lock(&mu_);
  kv_[key] = value;
  cv_.SignalAll();
  return absl::OkStatus();
}

absl::StatusOr<std::string> TcpStoreServer::Get(const std::string& key,
                                                absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  while (true) {
    auto it = kv_.find(key);
    if (it != kv_.end()) return it->second;
    if (stopping_) return absl::CancelledError("rendezvous server stopped");
    if (cv_.WaitWithDeadline(&mu_, deadline) && !kv_.count(key)) {
      return absl::DeadlineExceededError(absl::StrCat(
          "rendezvous key \"", key, "\" of group \"", options_.group_name,
          "\" was not set before the deadline"));
    }
  }
}

// --- Client -----------------------------------------------------------------

absl::StatusOr<std::unique_ptr<TcpStoreClient>> TcpStoreClient::Connect(
    const Options& options) {
  const std::string peer =
      absl::StrCat(options.master_address, ":", options.master_port);
  absl::StatusOr<std::string> ip = ResolveIpv4(options.master_address);
  if (!ip.ok()) return ip.status();
  // The master may not be listening yet: retried until the init deadline.
  absl::StatusOr<int> connected = ConnectWithRetry(
      *ip, options.master_port, options.deadline,
      absl::StrCat("the rendezvous master of group \"", options.group_name, "\""));
  if (!connected.ok()) return connected.status();
  const int fd = *connected;
  std::unique_ptr<TcpStoreClient> client(new TcpStoreClient(fd, LocalIpv4(fd), peer));

  const unsigned char op = kJoin;
  absl::Status st = SendAll(fd, &op, 1, options.deadline, peer);
  if (st.ok()) st = SendString(fd, options.group_name, options.deadline, peer);
  if (st.ok()) st = SendString(fd, absl::StrCat(options.rank), options.deadline, peer);
  if (st.ok()) {
    st = SendString(fd, absl::StrCat(options.world_size), options.deadline, peer);
  }
  if (!st.ok()) return st;
  absl::StatusOr<std::string> reply = RecvReply(fd, options.deadline, peer);
  if (!reply.ok()) {
    if (absl::IsInvalidArgument(reply.status())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "rendezvous master ", peer, " rejected the join: ",
          reply.status().message()));
    }
    return reply.status();
  }
  return client;
}

TcpStoreClient::~TcpStoreClient() { close(fd_); }

bool TcpStoreClient::PeerClosed() const { return SocketPeerClosed(fd_); }

absl::Status TcpStoreClient::Set(const std::string& key,
                                 const std::string& value) {
  absl::MutexLock lock(&mu_);
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  const unsigned char op = kSet;
  absl::Status st = SendAll(fd_, &op, 1, deadline, peer_);
  if (st.ok()) st = SendString(fd_, key, deadline, peer_);
  if (st.ok()) st = SendString(fd_, value, deadline, peer_);
  if (!st.ok()) return st;
  return RecvReply(fd_, deadline, peer_).status();
}

absl::StatusOr<std::string> TcpStoreClient::Get(const std::string& key,
                                                absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  const int64_t timeout_ms =
      std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now()));
  const absl::Time io_deadline = deadline + kReplySlack;
  const unsigned char op = kGet;
  absl::Status st = SendAll(fd_, &op, 1, io_deadline, peer_);
  if (st.ok()) st = SendString(fd_, key, io_deadline, peer_);
  if (st.ok()) st = SendString(fd_, absl::StrCat(timeout_ms), io_deadline, peer_);
  if (!st.ok()) return st;
  return RecvReply(fd_, io_deadline, peer_);
}

}  // namespace weight_sync
}  // namespace colo
