// TLS server credentials from the --tls_cert / --tls_key PEM files, checked
// before the server is built: gRPC only reports a bad pair as a failed
// listen ("cannot listen ... address in use?"), which sends the operator
// after the wrong problem.
#ifndef COLO_PROTO_SERVER_TLS_H_
#define COLO_PROTO_SERVER_TLS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/security/server_credentials.h"

namespace colo {

// Reads and checks the pair, then builds SSL server credentials. Errors, each
// naming the flag and the file: NOT_FOUND when a file cannot be read;
// INVALID_ARGUMENT when the certificate file holds no PEM certificate, the
// key file no PEM private key, or the key does not belong to the
// certificate ("--tls_key '...' does not match the certificate in
// --tls_cert '...'").
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerTlsCredentials(
    const std::string& cert_path, const std::string& key_path);

}  // namespace colo

#endif  // COLO_PROTO_SERVER_TLS_H_
