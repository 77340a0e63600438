// A minimal HTTP/1.1 GET over loopback for tests of the metrics endpoints.
#ifndef COLO_TESTS_UTIL_HTTP_GET_H_
#define COLO_TESTS_UTIL_HTTP_GET_H_

#include <string>

#include "absl/status/statusor.h"

namespace colo::test_util {

// Connects to 127.0.0.1:port, sends GET `path`, and returns the whole response
// (status line, headers and body). UNAVAILABLE when the connection fails;
// socket timeouts bound every read and write (5 s).
absl::StatusOr<std::string> HttpGet(int port, const std::string& path);

// The body of the response (after the blank line); INTERNAL if there is none.
absl::StatusOr<std::string> HttpGetBody(int port, const std::string& path);

}  // namespace colo::test_util

#endif  // COLO_TESTS_UTIL_HTTP_GET_H_
