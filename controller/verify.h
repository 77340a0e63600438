// Checks that a memory transition of one engine did what the engine said.
// Pure functions over the engine's reports; no I/O.
#ifndef COLO_CONTROLLER_VERIFY_H_
#define COLO_CONTROLLER_VERIFY_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "colo/v1/common.pb.h"
#include "colo/v1/engine.pb.h"

namespace colo {
namespace controller {

// What the controller observed around one ReleaseTags call.
struct ReleaseEvidence {
  std::string address;
  // Tags the controller asked to release.
  std::vector<std::string> tags;
  // GetMemoryInfo before the release.
  ::colo::v1::MemoryInfo before;
  ::colo::v1::ReleaseTagsResponse release;
  // GetMemoryInfo after the release.
  ::colo::v1::MemoryInfo after;
};

// Expected bytes freed for one tag: the larger of what the release reported
// and what the tag held before (so an engine cannot under-report a pool).
int64_t ExpectedFreedBytes(const ReleaseEvidence& evidence, const std::string& tag);

// Bytes the device actually got back: the drop of the process RSS for a
// "cpu" device, the rise of device free bytes otherwise (from the release
// response's before/after figures).
int64_t ObservedFreedBytes(const ReleaseEvidence& evidence);

// Bytes of `tag` the release copied to a host backup (a tag with
// host_backup set, e.g. colo-engine --weights_host_backup): the larger of
// the release's backup_bytes and the tag's host_backup_bytes afterwards,
// capped at ExpectedFreedBytes. 0 for a tag without host backup.
int64_t HostBackupBytes(const ReleaseEvidence& evidence, const std::string& tag);

// Bytes the device must get back: the sum of ExpectedFreedBytes over the
// tags, less their HostBackupBytes on a "cpu" device (host RSS is the
// device there, and the backup stays in it). On a GPU the backup is host
// memory and does not lower device free memory: nothing is subtracted.
int64_t DeviceExpectedFreedBytes(const ReleaseEvidence& evidence);

// OK when, for every requested tag, the engine reports 0 resident bytes
// afterwards and a release of at least `fraction` of what the tag held, and
// the device got back at least `fraction` of DeviceExpectedFreedBytes.
// Otherwise ABORTED with a message naming the engine, the tag(s) and the
// bytes.
absl::Status VerifyRelease(const ReleaseEvidence& evidence, double fraction);

// OK when every tag in `tags` is resident in `after` (GetMemoryInfo after a
// resume); else ABORTED naming the engine and the tag.
absl::Status VerifyResumed(const std::string& address, const std::vector<std::string>& tags,
                           const ::colo::v1::MemoryInfo& after);

}  // namespace controller
}  // namespace colo

#endif  // COLO_CONTROLLER_VERIFY_H_
