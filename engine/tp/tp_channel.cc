#include "engine/tp/tp_channel.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "weight_sync/socket_io.h"

namespace colo {
namespace engine {
namespace {

absl::StatusOr<sockaddr_in> Address(const std::string& host, int port) {
  absl::StatusOr<std::string> ip = weight_sync::ResolveIpv4(host);
  if (!ip.ok()) return ip.status();
  sockaddr_in addr;
  std::memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, ip->c_str(), &addr.sin_addr);
  return addr;
}

void SetNoDelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

}  // namespace

absl::Status ParseHostPort(const std::string& value, const char* flag, std::string* host,
                           int* port) {
  const size_t colon = value.rfind(':');
  int p = -1;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(value.substr(colon + 1), &p) || p < 0 || p > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " must be HOST:PORT (port in [0, 65535]), got '", value, "'"));
  }
  *host = value.substr(0, colon);
  *port = p;
  return absl::OkStatus();
}

TpConnection::TpConnection(int fd, std::string peer) : fd_(fd), peer_(std::move(peer)) {
  SetNoDelay(fd_);
}

TpConnection::~TpConnection() { close(fd_); }

absl::StatusOr<std::unique_ptr<TpConnection>> TpConnection::Connect(const std::string& host,
                                                                     int port,
                                                                     absl::Time deadline) {
  const std::string peer = absl::StrCat(host, ":", port);
  absl::StatusOr<sockaddr_in> addr = Address(host, port);
  if (!addr.ok()) return addr.status();
  absl::Duration backoff = absl::Milliseconds(10);
  std::string last = "no attempt";
  while (true) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return absl::UnavailableError(absl::StrCat("socket(): ", strerror(errno)));
    if (connect(fd, reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr)) == 0) {
      return std::make_unique<TpConnection>(fd, peer);
    }
    last = strerror(errno);
    close(fd);
    const absl::Time now = absl::Now();
    if (now >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("could not connect to the tensor-parallel leader (rank 0) at ", peer,
                       " in time: ", last));
    }
    absl::SleepFor(std::min(backoff, deadline - now));
    backoff = std::min(backoff * 2, absl::Milliseconds(250));
  }
}

absl::Status TpConnection::Send(const google::protobuf::Message& message, absl::Time deadline) {
  std::string bytes;
  if (!message.SerializeToString(&bytes)) {
    return absl::InternalError(absl::StrCat("cannot serialize a ", message.GetTypeName()));
  }
  absl::MutexLock lock(&send_mu_);
  return weight_sync::SendString(fd_, bytes, deadline, peer_);
}

absl::Status TpConnection::Receive(google::protobuf::Message* message, absl::Time deadline) {
  absl::StatusOr<std::string> bytes = weight_sync::RecvString(fd_, deadline, peer_);
  if (!bytes.ok()) return bytes.status();
  if (!message->ParseFromString(*bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat("a ", message->GetTypeName(), " frame from ", peer_, " does not parse"));
  }
  return absl::OkStatus();
}

void TpConnection::Shutdown() { shutdown(fd_, SHUT_RDWR); }

std::string TpConnection::local_address() const {
  sockaddr_in local;
  socklen_t len = sizeof(local);
  if (getsockname(fd_, reinterpret_cast<sockaddr*>(&local), &len) != 0) return "";
  char buf[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &local.sin_addr, buf, sizeof(buf));
  return buf;
}

absl::StatusOr<std::unique_ptr<TpListener>> TpListener::Create(const std::string& host, int port) {
  absl::StatusOr<sockaddr_in> addr = Address(host, port);
  if (!addr.ok()) return addr.status();
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("socket(): ", strerror(errno)));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr)) != 0 ||
      listen(fd, 64) != 0) {
    const int err = errno;
    close(fd);
    return absl::UnavailableError(absl::StrCat("--tp_master: cannot listen on ", host, ":", port,
                                               ": ", strerror(err)));
  }
  sockaddr_in bound;
  socklen_t len = sizeof(bound);
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  return std::unique_ptr<TpListener>(new TpListener(fd, ntohs(bound.sin_port)));
}

TpListener::~TpListener() { close(fd_); }

absl::StatusOr<std::unique_ptr<TpConnection>> TpListener::Accept(absl::Time deadline) {
  while (true) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError("no tensor-parallel rank connected in time");
    }
    pollfd p{fd_, POLLIN, 0};
    const int n = poll(&p, 1, static_cast<int>(std::min<int64_t>(
                                  absl::ToInt64Milliseconds(left) + 1, 1000)));
    if (n < 0 && errno != EINTR) {
      return absl::UnavailableError(absl::StrCat("poll(listen): ", strerror(errno)));
    }
    if (n <= 0) continue;
    sockaddr_in peer;
    socklen_t len = sizeof(peer);
    const int fd = accept4(fd_, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED) continue;
      return absl::UnavailableError(absl::StrCat("accept(): ", strerror(errno)));
    }
    char buf[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &peer.sin_addr, buf, sizeof(buf));
    return std::make_unique<TpConnection>(fd, absl::StrCat(buf, ":", ntohs(peer.sin_port)));
  }
}

}  // namespace engine
}  // namespace colo
