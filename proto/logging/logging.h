// Minimal logging to stderr (Debian's Abseil 20220623 predates absl/log).
//
//   COLO_LOG(INFO) << "released " << bytes << " bytes";
//   COLO_CHECK(ptr != nullptr) << "programmer invariant";   // aborts
//
// Each message is one line: "I1123 13:45:01.123456 tid file.cc:42] text".
// COLO_CHECK is for broken programmer invariants only, never request data.
// Thread-safe.
#ifndef COLO_PROTO_LOGGING_LOGGING_H_
#define COLO_PROTO_LOGGING_LOGGING_H_

#include <sstream>

namespace colo {
namespace logging_internal {

enum class Severity { kInfo, kWarning, kError, kFatal };

class LogMessage {
 public:
  LogMessage(Severity severity, const char* file, int line);
  ~LogMessage();
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;

  std::ostream& stream() { return stream_; }

 private:
  Severity severity_;
  std::ostringstream stream_;
};

// Swallows the stream expression of a disabled check.
struct Voidify {
  void operator&(std::ostream&) {}
};

constexpr Severity kINFO = Severity::kInfo;
constexpr Severity kWARNING = Severity::kWarning;
constexpr Severity kERROR = Severity::kError;
constexpr Severity kFATAL = Severity::kFatal;

}  // namespace logging_internal

// Minimum severity printed (default INFO); set from --v style flags or tests.
void SetMinLogSeverity(logging_internal::Severity severity);

}  // namespace colo

#define COLO_LOG(severity)                                             \
  ::colo::logging_internal::LogMessage(                                \
      ::colo::logging_internal::k##severity, __FILE__, __LINE__)       \
      .stream()

#define COLO_CHECK(cond)                                                  \
  (cond) ? (void)0                                                        \
         : ::colo::logging_internal::Voidify() &                          \
               ::colo::logging_internal::LogMessage(                      \
                   ::colo::logging_internal::kFATAL, __FILE__, __LINE__)  \
                   .stream()                                              \
                   << "Check failed: " #cond " "

#endif  // COLO_PROTO_LOGGING_LOGGING_H_
