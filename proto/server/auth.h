// Bearer-token authentication shared by colo servers (controller, engine) and
// their clients.
//
// Servers: a non-loopback --host must come with --auth_token_file
// (CheckBindSecurity); mutating RPCs call TokenChecker::Check with the call's
// metadata and return its status (UNAUTHENTICATED on a missing or wrong
// `authorization: Bearer <token>` header). Clients attach the header with
// AddBearerToken.
#ifndef COLO_PROTO_SERVER_AUTH_H_
#define COLO_PROTO_SERVER_AUTH_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpcpp/client_context.h"
#include "grpcpp/server_context.h"

namespace colo {

// Reads a token file: its content with surrounding whitespace trimmed.
// NOT_FOUND when the file cannot be read, INVALID_ARGUMENT when it is empty
// or the token contains whitespace.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

// True for "localhost", 127.0.0.0/8 and ::1.
bool IsLoopbackHost(absl::string_view host);

// FAILED_PRECONDITION when `host` is not loopback and `has_token` is false.
absl::Status CheckBindSecurity(absl::string_view host, bool has_token);

// Checks `authorization: Bearer <token>` metadata. Thread-safe (immutable
// after construction). An empty token disables checking (every call passes).
class TokenChecker {
 public:
  explicit TokenChecker(std::string token) : token_(std::move(token)) {}

  bool enabled() const { return !token_.empty(); }

  // Checks one `authorization` header value. UNAUTHENTICATED when it is not
  // "Bearer <token>" for the configured token (constant-time compare).
  absl::Status CheckHeader(absl::string_view value) const;
  // Same for a call; `context` may be null only when checking is disabled.
  absl::Status Check(const grpc::ServerContext* context) const;

 private:
  const std::string token_;
};

// Adds `authorization: Bearer <token>` to an outgoing call (no-op for an
// empty token).
void AddBearerToken(grpc::ClientContext* context, absl::string_view token);

}  // namespace colo

#endif  // COLO_PROTO_SERVER_AUTH_H_
