#include "weight_sync/socket_io.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"

namespace colo {
namespace weight_sync {
namespace {

// Polls `fd` for `events` until the deadline. OK when ready.
absl::Status WaitReady(int fd, short events, absl::Time deadline,
                       const std::string& peer, const char* what) {
  while (true) {
    int timeout_ms = -1;
    if (deadline != absl::InfiniteFuture()) {
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) {
        return absl::DeadlineExceededError(
            absl::StrCat("timed out ", what, " ", peer));
      }
      timeout_ms = static_cast<int>(
          std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, 1 << 30));
    }
    pollfd p{fd, events, 0};
    const int r = poll(&p, 1, timeout_ms);
    if (r > 0) return absl::OkStatus();
    if (r < 0 && errno != EINTR) {
      return absl::UnavailableError(
          absl::StrCat("poll() ", what, " ", peer, ": ", strerror(errno)));
    }
  }
}

}  // namespace

absl::Status SendAll(int fd, const void* data, size_t n, absl::Time deadline,
                     const std::string& peer) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    absl::Status st = WaitReady(fd, POLLOUT, deadline, peer, "sending to");
    if (!st.ok()) return st;
    const ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      return absl::UnavailableError(
          absl::StrCat("send() to ", peer, ": ", strerror(errno)));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return absl::OkStatus();
}

absl::Status RecvAll(int fd, void* data, size_t n, absl::Time deadline,
                     const std::string& peer) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    absl::Status st = WaitReady(fd, POLLIN, deadline, peer, "receiving from");
    if (!st.ok()) return st;
    const ssize_t r = recv(fd, p, n, MSG_DONTWAIT);
    if (r == 0) {
      return absl::UnavailableError(
          absl::StrCat("connection closed by ", peer));
    }
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      return absl::UnavailableError(
          absl::StrCat("recv() from ", peer, ": ", strerror(errno)));
    }
    p += r;
    n -= static_cast<size_t>(r);
  }
  return absl::OkStatus();
}

absl::Status SendString(int fd, const std::string& s, absl::Time deadline,
                        const std::string& peer) {
  const uint32_t len = static_cast<uint32_t>(s.size());
  unsigned char hdr[4] = {static_cast<unsigned char>(len),
                          static_cast<unsigned char>(len >> 8),
                          static_cast<unsigned char>(len >> 16),
                          static_cast<unsigned char>(len >> 24)};
  absl::Status st = SendAll(fd, hdr, 4, deadline, peer);
  if (!st.ok()) return st;
  return SendAll(fd, s.data(), s.size(), deadline, peer);
}

absl::StatusOr<std::string> RecvString(int fd, absl::Time deadline,
                                       const std::string& peer) {
  unsigned char hdr[4];
  absl::Status st = RecvAll(fd, hdr, 4, deadline, peer);
  if (!st.ok()) return st;
  const uint32_t len = hdr[0] | (hdr[1] << 8) | (hdr[2] << 16) |
                       (static_cast<uint32_t>(hdr[3]) << 24);
  constexpr uint32_t kMaxLen = 64u << 20;
  if (len > kMaxLen) {
    return absl::InvalidArgumentError(
        absl::StrCat("message of ", len, " bytes from ", peer, " exceeds ",
                     kMaxLen, " (not a colo rendezvous peer?)"));
  }
  std::string s(len, '\0');
  st = RecvAll(fd, s.data(), len, deadline, peer);
  if (!st.ok()) return st;
  return s;
}

void PutU64Le(char* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(v >> (8 * i));
}

uint64_t GetU64Le(const void* in) {
  const unsigned char* b = static_cast<const unsigned char*>(in);
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | b[i];
  return v;
}

absl::StatusOr<std::string> ResolveIpv4(const std::string& host) {
  if (host.empty() || host == "0.0.0.0") return std::string("0.0.0.0");
  addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0 || res == nullptr) {
    return absl::UnavailableError(absl::StrCat(
        "cannot resolve \"", host, "\" to an IPv4 address: ", gai_strerror(rc)));
  }
  char buf[INET_ADDRSTRLEN];
  const auto* sin = reinterpret_cast<const sockaddr_in*>(res->ai_addr);
  inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf));
  freeaddrinfo(res);
  return std::string(buf);
}

namespace {

// One non-blocking connect attempt bounded by `deadline`; returns the fd.
absl::StatusOr<int> ConnectOnce(const sockaddr_in& addr, absl::Time deadline,
                                const std::string& peer) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("socket(): ", strerror(errno)));
  }
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0 &&
      errno != EINPROGRESS) {
    const int err = errno;
    close(fd);
    return absl::UnavailableError(
        absl::StrCat("connect() to ", peer, ": ", strerror(err)));
  }
  const absl::Duration left = deadline - absl::Now();
  pollfd p{fd, POLLOUT, 0};
  const int r = poll(&p, 1, static_cast<int>(std::clamp<int64_t>(
                                absl::ToInt64Milliseconds(left), 0, 1 << 30)));
  int err = 0;
  socklen_t len = sizeof(err);
  if (r <= 0) {
    close(fd);
    return absl::UnavailableError(absl::StrCat("connect() to ", peer, ": no answer"));
  }
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) {
    close(fd);
    return absl::UnavailableError(
        absl::StrCat("connect() to ", peer, ": ", strerror(err)));
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

}  // namespace

absl::StatusOr<int> ConnectWithRetry(const std::string& ipv4, int port,
                                     absl::Time deadline, const std::string& what) {
  sockaddr_in addr;
  memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, ipv4.c_str(), &addr.sin_addr) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", ipv4, "\" is not an IPv4 address (", what, ")"));
  }
  const std::string peer = absl::StrCat(ipv4, ":", port);
  absl::Duration backoff = absl::Milliseconds(10);
  while (true) {
    absl::StatusOr<int> r = ConnectOnce(addr, deadline, peer);
    if (r.ok()) return r;
    const absl::Time now = absl::Now();
    if (now >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "could not reach ", what, " at ", peer, " before the deadline: ",
          r.status().message()));
    }
    absl::SleepFor(std::min(backoff, deadline - now));
    backoff = std::min(backoff * 2, absl::Milliseconds(250));
  }
}

bool SocketPeerClosed(int fd) {
  if (fd < 0) return true;
  pollfd p{fd, static_cast<short>(POLLIN | POLLRDHUP), 0};
  if (poll(&p, 1, 0) <= 0) return false;
  return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

std::string LocalIpv4(int fd) {
  sockaddr_in local;
  socklen_t len = sizeof(local);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0 ||
      local.sin_family != AF_INET) {
    return "";
  }
  char buf[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &local.sin_addr, buf, sizeof(buf));
  return buf;
}

}  // namespace weight_sync
}  // namespace colo
