// Small deadline-aware helpers over blocking TCP sockets (used by the
// rendezvous store). Every error names the peer and errno.
#ifndef COLO_WEIGHT_SYNC_SOCKET_IO_H_
#define COLO_WEIGHT_SYNC_SOCKET_IO_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace colo {
namespace weight_sync {

// Writes all `n` bytes. DEADLINE_EXCEEDED at the deadline; UNAVAILABLE when
// the peer closed or the socket failed.
absl::Status SendAll(int fd, const void* data, size_t n, absl::Time deadline,
                     const std::string& peer);
// Reads exactly `n` bytes. Same codes as SendAll.
absl::Status RecvAll(int fd, void* data, size_t n, absl::Time deadline,
                     const std::string& peer);

// Length-prefixed (u32 little endian) strings.
absl::Status SendString(int fd, const std::string& s, absl::Time deadline,
                        const std::string& peer);
absl::StatusOr<std::string> RecvString(int fd, absl::Time deadline,
                                       const std::string& peer);

// Little-endian u64 encoding of the torch store and gloo wire formats.
void PutU64Le(char* out, uint64_t v);
uint64_t GetU64Le(const void* in);

// Resolves an IPv4 address ("" = any). UNAVAILABLE naming the host.
absl::StatusOr<std::string> ResolveIpv4(const std::string& host);

// Connects a blocking TCP socket (TCP_NODELAY, close-on-exec) to ipv4:port,
// retrying refused or unanswered attempts with a capped backoff until the
// deadline: the peer may not be listening yet. DEADLINE_EXCEEDED naming
// `what` and the last error when the deadline passes.
absl::StatusOr<int> ConnectWithRetry(const std::string& ipv4, int port,
                                     absl::Time deadline, const std::string& what);

// True when the peer of a connected socket closed or reset it (poll with
// POLLRDHUP, no wait; pending data is not consumed).
bool SocketPeerClosed(int fd);

// The local IPv4 address of a connected socket ("" when unknown).
std::string LocalIpv4(int fd);

}  // namespace weight_sync
}  // namespace colo

#endif  // COLO_WEIGHT_SYNC_SOCKET_IO_H_
