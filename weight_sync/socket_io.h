// Small deadline-aware helpers over blocking TCP sockets (used by the
// rendezvous store). Every error names the peer and errno.
#ifndef COLO_WEIGHT_SYNC_SOCKET_IO_H_
#define COLO_WEIGHT_SYNC_SOCKET_IO_H_

#include <cstddef>
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

// Resolves an IPv4 address ("" = any). UNAVAILABLE naming the host.
absl::StatusOr<std::string> ResolveIpv4(const std::string& host);

}  // namespace weight_sync
}  // namespace colo

#endif  // COLO_WEIGHT_SYNC_SOCKET_IO_H_
