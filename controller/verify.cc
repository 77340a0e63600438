#include "controller/verify.h"

#include <algorithm>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace colo {
namespace controller {
namespace {

const ::colo::v1::TagMemory* FindTag(const ::colo::v1::MemoryInfo& info, const std::string& tag) {
  for (const auto& t : info.tags()) {
    if (t.tag() == tag) return &t;
  }
  return nullptr;
}

int64_t ReportedReleased(const ::colo::v1::ReleaseTagsResponse& release, const std::string& tag) {
  int64_t bytes = 0;
  for (const auto& t : release.tags()) {
    if (t.tag() == tag) bytes += t.bytes();
  }
  return bytes;
}

bool HasHostBackup(const ReleaseEvidence& e, const std::string& tag) {
  const ::colo::v1::TagMemory* before = FindTag(e.before, tag);
  const ::colo::v1::TagMemory* after = FindTag(e.after, tag);
  return (before != nullptr && before->host_backup()) || (after != nullptr && after->host_backup());
}

std::string DeviceKind(const ReleaseEvidence& e) {
  if (!e.after.device().kind().empty()) return e.after.device().kind();
  return e.before.device().kind();
}

// Names the tag whose size explains `missing` bytes (within 10% of the
// tag's bytes): the pool that was most likely kept. Empty when none does.
std::string Culprit(const ReleaseEvidence& evidence, int64_t missing) {
  std::string best;
  int64_t best_bytes = 0;
  int64_t best_error = 0;
  const bool cpu = DeviceKind(evidence) == "cpu";
  for (const std::string& tag : evidence.tags) {
    const int64_t bytes =
        ExpectedFreedBytes(evidence, tag) - (cpu ? HostBackupBytes(evidence, tag) : 0);
    if (bytes <= 0) continue;
    const int64_t error = std::abs(missing - bytes);
    if (10 * error > bytes) continue;
    if (best.empty() || error < best_error) {
      best = tag;
      best_bytes = bytes;
      best_error = error;
    }
  }
  if (best.empty()) return "";
  return absl::StrCat("; the missing ", missing, " bytes match tag ", best, " (", best_bytes,
                      " bytes): its memory was most likely not freed");
}

}  // namespace

int64_t ExpectedFreedBytes(const ReleaseEvidence& evidence, const std::string& tag) {
  const ::colo::v1::TagMemory* before = FindTag(evidence.before, tag);
  const int64_t held = before == nullptr ? 0 : before->resident_bytes();
  return std::max(held, ReportedReleased(evidence.release, tag));
}

int64_t HostBackupBytes(const ReleaseEvidence& evidence, const std::string& tag) {
  if (!HasHostBackup(evidence, tag)) return 0;
  int64_t backup = 0;
  for (const auto& t : evidence.release.tags()) {
    if (t.tag() == tag) backup += t.backup_bytes();
  }
  const ::colo::v1::TagMemory* after = FindTag(evidence.after, tag);
  if (after != nullptr) backup = std::max(backup, after->host_backup_bytes());
  return std::clamp<int64_t>(backup, 0, ExpectedFreedBytes(evidence, tag));
}

int64_t DeviceExpectedFreedBytes(const ReleaseEvidence& evidence) {
  const bool cpu = DeviceKind(evidence) == "cpu";
  int64_t expected = 0;
  for (const std::string& tag : evidence.tags) {
    expected += ExpectedFreedBytes(evidence, tag);
    if (cpu) expected -= HostBackupBytes(evidence, tag);
  }
  return expected;
}

int64_t ObservedFreedBytes(const ReleaseEvidence& evidence) {
  const auto& r = evidence.release;
  if (DeviceKind(evidence) == "cpu") {
    return r.process_resident_bytes_before() - r.process_resident_bytes_after();
  }
  return r.device_free_bytes_after() - r.device_free_bytes_before();
}

absl::Status VerifyRelease(const ReleaseEvidence& evidence, double fraction) {
  const std::string& engine = evidence.address;
  // 1. Each tag must hold nothing afterwards, by the engine's own account.
  for (const std::string& tag : evidence.tags) {
    const ::colo::v1::TagMemory* after = FindTag(evidence.after, tag);
    if (after == nullptr) {
      // A tag the engine does not have (e.g. no cuda_graph on CPU) is fine
      // when it held nothing before either.
      if (FindTag(evidence.before, tag) == nullptr &&
          ReportedReleased(evidence.release, tag) == 0) {
        continue;
      }
      return absl::AbortedError(absl::StrCat("release verification failed on engine ", engine,
                                             ": tag ", tag,
                                             " is missing from GetMemoryInfo after release"));
    }
    if (after->resident_bytes() != 0) {
      return absl::AbortedError(absl::StrCat("release verification failed on engine ", engine,
                                             ": tag ", tag, " still has ", after->resident_bytes(),
                                             " resident bytes after release (",
                                             ::colo::v1::TagState_Name(after->state()), ")"));
    }
  }
  // 2. The release must account for what each tag held.
  for (const std::string& tag : evidence.tags) {
    const ::colo::v1::TagMemory* before = FindTag(evidence.before, tag);
    if (before == nullptr) continue;
    const int64_t reported = ReportedReleased(evidence.release, tag);
    if (static_cast<double>(reported) < fraction * static_cast<double>(before->resident_bytes())) {
      return absl::AbortedError(absl::StrCat("release verification failed on engine ", engine,
                                             ": tag ", tag, " held ", before->resident_bytes(),
                                             " resident bytes but the release reported only ",
                                             reported, " bytes"));
    }
  }
  // 3. The device must have got the bytes back (on the CPU backend less
  // the host backups, which stay in the process).
  const bool cpu = DeviceKind(evidence) == "cpu";
  const int64_t expected = DeviceExpectedFreedBytes(evidence);
  std::vector<std::string> parts;
  int64_t kept_in_backup = 0;
  for (const std::string& tag : evidence.tags) {
    const int64_t bytes = ExpectedFreedBytes(evidence, tag);
    if (bytes == 0) continue;
    const int64_t backup = HostBackupBytes(evidence, tag);
    if (cpu) kept_in_backup += backup;
    parts.push_back(backup == 0 ? absl::StrCat(tag, " (", bytes, " bytes)")
                                : absl::StrCat(tag, " (", bytes, " bytes, ", backup,
                                               " of them in a host backup)"));
  }
  const int64_t observed = ObservedFreedBytes(evidence);
  if (static_cast<double>(observed) < fraction * static_cast<double>(expected)) {
    const auto& r = evidence.release;
    return absl::AbortedError(absl::StrCat(
        "release verification failed on engine ", engine, ": releasing ",
        absl::StrJoin(parts, ", "), " should free ", expected, " bytes",
        kept_in_backup > 0
            ? absl::StrCat(" (host backups of ", kept_in_backup, " bytes stay in the process)")
            : "",
        " but ", cpu ? "process RSS" : "device free memory", " changed by only ", observed,
        " bytes (", cpu ? r.process_resident_bytes_before() : r.device_free_bytes_before(), " -> ",
        cpu ? r.process_resident_bytes_after() : r.device_free_bytes_after(), "; need >= ",
        static_cast<int64_t>(fraction * static_cast<double>(expected)), ")",
        Culprit(evidence, expected - observed)));
  }
  return absl::OkStatus();
}

absl::Status VerifyResumed(const std::string& address, const std::vector<std::string>& tags,
                           const ::colo::v1::MemoryInfo& after) {
  for (const std::string& tag : tags) {
    const ::colo::v1::TagMemory* t = FindTag(after, tag);
    if (t == nullptr) continue;  // The engine has no such pool.
    if (t->state() == ::colo::v1::TAG_STATE_RELEASED) {
      return absl::AbortedError(absl::StrCat("resume verification failed on engine ", address,
                                             ": tag ", tag, " is not resident after resume (",
                                             t->resident_bytes(), " of ", t->reserved_bytes(),
                                             " bytes)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace controller
}  // namespace colo
