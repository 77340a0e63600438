#include "proto/logging/logging.h"

#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>

namespace colo {
namespace {

std::atomic<int> min_severity{0};

char SeverityLetter(logging_internal::Severity severity) {
  switch (severity) {
    case logging_internal::Severity::kInfo:
      return 'I';
    case logging_internal::Severity::kWarning:
      return 'W';
    case logging_internal::Severity::kError:
      return 'E';
    case logging_internal::Severity::kFatal:
      return 'F';
  }
  return '?';
}

const char* Basename(const char* path) {
  const char* slash = std::strrchr(path, '/');
  return slash == nullptr ? path : slash + 1;
}

}  // namespace

void SetMinLogSeverity(logging_internal::Severity severity) {
  min_severity.store(static_cast<int>(severity));
}

namespace logging_internal {

LogMessage::LogMessage(Severity severity, const char* file, int line)
    : severity_(severity) {
  timeval tv;
  gettimeofday(&tv, nullptr);
  tm local;
  localtime_r(&tv.tv_sec, &local);
  char prefix[96];
  std::snprintf(prefix, sizeof(prefix), "%c%02d%02d %02d:%02d:%02d.%06ld %ld %s:%d] ",
                SeverityLetter(severity), local.tm_mon + 1, local.tm_mday,
                local.tm_hour, local.tm_min, local.tm_sec,
                static_cast<long>(tv.tv_usec),
                static_cast<long>(syscall(SYS_gettid)), Basename(file), line);
  stream_ << prefix;
}

LogMessage::~LogMessage() {
  if (static_cast<int>(severity_) >= min_severity.load() ||
      severity_ == Severity::kFatal) {
    stream_ << '\n';
    const std::string text = stream_.str();
    // One write per line keeps concurrent messages from interleaving.
    ssize_t ignored = ::write(STDERR_FILENO, text.data(), text.size());
    (void)ignored;
  }
  if (severity_ == Severity::kFatal) std::abort();
}

}  // namespace logging_internal
}  // namespace colo
