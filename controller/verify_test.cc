#include "controller/verify.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace controller {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr int64_t kGiB = int64_t{1} << 30;

void AddTag(::colo::v1::MemoryInfo* info, const std::string& tag, int64_t resident) {
  auto* t = info->add_tags();
  t->set_tag(tag);
  t->set_reserved_bytes(10 * kGiB);
  t->set_resident_bytes(resident);
  t->set_state(resident > 0 ? ::colo::v1::TAG_STATE_RESIDENT : ::colo::v1::TAG_STATE_RELEASED);
}

// A GPU engine with weights 4 GiB and kv_cache 8 GiB, honestly released.
ReleaseEvidence HonestGpuRelease() {
  ReleaseEvidence e;
  e.address = "10.0.0.1:5000";
  e.tags = {"weights", "kv_cache"};
  e.before.mutable_device()->set_kind("cuda");
  AddTag(&e.before, "weights", 4 * kGiB);
  AddTag(&e.before, "kv_cache", 8 * kGiB);
  e.after.mutable_device()->set_kind("cuda");
  AddTag(&e.after, "weights", 0);
  AddTag(&e.after, "kv_cache", 0);
  auto* w = e.release.add_tags();
  w->set_tag("weights");
  w->set_bytes(4 * kGiB);
  auto* k = e.release.add_tags();
  k->set_tag("kv_cache");
  k->set_bytes(8 * kGiB);
  e.release.set_device_free_bytes_before(10 * kGiB);
  e.release.set_device_free_bytes_after(22 * kGiB);
  return e;
}

TEST(VerifyTest, HonestReleasePasses) {
  ReleaseEvidence e = HonestGpuRelease();
  EXPECT_EQ(ObservedFreedBytes(e), 12 * kGiB);
  EXPECT_EQ(ExpectedFreedBytes(e, "kv_cache"), 8 * kGiB);
  EXPECT_OK(VerifyRelease(e, 0.95));
}

TEST(VerifyTest, ShortfallNamesTheTagThatWasKept) {
  ReleaseEvidence e = HonestGpuRelease();
  // Only the weights came back: the kv_cache pool (8 GiB) was kept.
  e.release.set_device_free_bytes_after(10 * kGiB + 4 * kGiB + 1000);
  EXPECT_THAT(VerifyRelease(e, 0.95),
              StatusIs(absl::StatusCode::kAborted,
                       HasSubstr("bytes match tag kv_cache (8589934592 bytes)")));
  // A shortfall no single tag explains names none.
  e.release.set_device_free_bytes_after(10 * kGiB + 6 * kGiB);
  EXPECT_THAT(VerifyRelease(e, 0.95),
              StatusIs(absl::StatusCode::kAborted,
                       testing::Not(HasSubstr("bytes match tag"))));
}

TEST(VerifyTest, SlightlyShortOfTheFractionStillPasses) {
  ReleaseEvidence e = HonestGpuRelease();
  e.release.set_device_free_bytes_after(10 * kGiB + static_cast<int64_t>(0.96 * 12 * kGiB));
  EXPECT_OK(VerifyRelease(e, 0.95));
  e.release.set_device_free_bytes_after(10 * kGiB + static_cast<int64_t>(0.94 * 12 * kGiB));
  EXPECT_THAT(VerifyRelease(e, 0.95), StatusIs(absl::StatusCode::kAborted));
}

TEST(VerifyTest, LyingDeviceNumbersNameEngineTagsAndBytes) {
  ReleaseEvidence e = HonestGpuRelease();
  // The engine says it freed 12 GiB but the device got back 4 GiB.
  e.release.set_device_free_bytes_after(14 * kGiB);
  EXPECT_THAT(VerifyRelease(e, 0.95),
              StatusIs(absl::StatusCode::kAborted,
                       AllOf(HasSubstr("10.0.0.1:5000"), HasSubstr("kv_cache (8589934592 bytes)"),
                             HasSubstr("weights (4294967296 bytes)"),
                             HasSubstr("changed by only 4294967296 bytes"))));
}

TEST(VerifyTest, TagStillResidentIsNamed) {
  ReleaseEvidence e = HonestGpuRelease();
  // The SWA pool bug: kv_cache reported released but still holds memory.
  e.after.mutable_tags(1)->set_resident_bytes(3 * kGiB);
  EXPECT_THAT(VerifyRelease(e, 0.95),
              StatusIs(absl::StatusCode::kAborted,
                       AllOf(HasSubstr("tag kv_cache still has 3221225472 resident bytes"),
                             HasSubstr("10.0.0.1:5000"))));
}

TEST(VerifyTest, UnderReportedReleaseIsNamed) {
  ReleaseEvidence e = HonestGpuRelease();
  // kv_cache held 8 GiB; the release reports 5 GiB and the device agrees.
  e.release.mutable_tags(1)->set_bytes(5 * kGiB);
  e.release.set_device_free_bytes_after(19 * kGiB);
  EXPECT_THAT(VerifyRelease(e, 0.95),
              StatusIs(absl::StatusCode::kAborted,
                       HasSubstr("tag kv_cache held 8589934592 resident bytes but the release "
                                 "reported only 5368709120")));
}

TEST(VerifyTest, CpuUsesProcessRss) {
  ReleaseEvidence e = HonestGpuRelease();
  e.before.mutable_device()->set_kind("cpu");
  e.after.mutable_device()->set_kind("cpu");
  // MemAvailable is noisy on a shared host: the RSS drop is what counts.
  e.release.set_device_free_bytes_before(0);
  e.release.set_device_free_bytes_after(0);
  e.release.set_process_resident_bytes_before(13 * kGiB);
  e.release.set_process_resident_bytes_after(1 * kGiB);
  EXPECT_OK(VerifyRelease(e, 0.95));
  e.release.set_process_resident_bytes_after(9 * kGiB);
  EXPECT_THAT(VerifyRelease(e, 0.95),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("process RSS changed by only")));
}

// The weights (4 GiB) were released with a host backup.
void WithWeightsBackup(ReleaseEvidence* e) {
  e->before.mutable_tags(0)->set_host_backup(true);
  e->after.mutable_tags(0)->set_host_backup(true);
  e->after.mutable_tags(0)->set_host_backup_bytes(4 * kGiB);
  e->release.mutable_tags(0)->set_backup_bytes(4 * kGiB);
}

TEST(VerifyTest, CpuHostBackupStaysInRssAndIsExcluded) {
  ReleaseEvidence e = HonestGpuRelease();
  e.before.mutable_device()->set_kind("cpu");
  e.after.mutable_device()->set_kind("cpu");
  WithWeightsBackup(&e);
  // RSS drops by the KV cache only: the weights' bytes moved to the backup.
  e.release.set_process_resident_bytes_before(13 * kGiB);
  e.release.set_process_resident_bytes_after(5 * kGiB);
  EXPECT_EQ(HostBackupBytes(e, "weights"), 4 * kGiB);
  EXPECT_EQ(HostBackupBytes(e, "kv_cache"), 0);
  EXPECT_EQ(DeviceExpectedFreedBytes(e), 8 * kGiB);
  EXPECT_OK(VerifyRelease(e, 0.95));
  // A kept KV cache is still caught, and the message says what was excluded.
  e.release.set_process_resident_bytes_after(13 * kGiB - kGiB / 10);
  EXPECT_THAT(VerifyRelease(e, 0.95),
              StatusIs(absl::StatusCode::kAborted,
                       AllOf(HasSubstr("host backups of 4294967296 bytes stay in the process"),
                             HasSubstr("bytes match tag kv_cache"))));
}

TEST(VerifyTest, GpuHostBackupDoesNotCountAgainstDeviceFreeMemory) {
  ReleaseEvidence e = HonestGpuRelease();
  WithWeightsBackup(&e);
  // The backup is host memory: the device must get all 12 GiB back.
  EXPECT_EQ(DeviceExpectedFreedBytes(e), 12 * kGiB);
  EXPECT_OK(VerifyRelease(e, 0.95));
  e.release.set_device_free_bytes_after(10 * kGiB + 8 * kGiB);
  EXPECT_THAT(VerifyRelease(e, 0.95), StatusIs(absl::StatusCode::kAborted,
                                              HasSubstr("bytes match tag weights")));
}

TEST(VerifyTest, BackupBytesOfATagWithoutHostBackupAreNotTrusted) {
  ReleaseEvidence e = HonestGpuRelease();
  e.before.mutable_device()->set_kind("cpu");
  e.after.mutable_device()->set_kind("cpu");
  // Claims a backup of kv_cache, but the tag is not configured with one.
  e.release.mutable_tags(1)->set_backup_bytes(8 * kGiB);
  EXPECT_EQ(HostBackupBytes(e, "kv_cache"), 0);
  e.release.set_process_resident_bytes_before(13 * kGiB);
  e.release.set_process_resident_bytes_after(9 * kGiB);
  EXPECT_THAT(VerifyRelease(e, 0.95), StatusIs(absl::StatusCode::kAborted));
  // And a backup larger than the tag counts only up to the tag's size.
  WithWeightsBackup(&e);
  e.release.mutable_tags(0)->set_backup_bytes(100 * kGiB);
  EXPECT_EQ(HostBackupBytes(e, "weights"), 4 * kGiB);
}

TEST(VerifyTest, NoOpReleaseOfAlreadyReleasedTagsPasses) {
  ReleaseEvidence e;
  e.address = "a:1";
  e.tags = {"weights"};
  AddTag(&e.before, "weights", 0);
  AddTag(&e.after, "weights", 0);
  auto* w = e.release.add_tags();
  w->set_tag("weights");
  w->set_no_op(true);
  EXPECT_OK(VerifyRelease(e, 0.95));
}

TEST(VerifyTest, MissingTagAfterReleaseFails) {
  ReleaseEvidence e = HonestGpuRelease();
  e.after.mutable_tags()->RemoveLast();
  EXPECT_THAT(VerifyRelease(e, 0.95),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("tag kv_cache is missing")));
}

TEST(VerifyTest, ResumedTagsMustBeResident) {
  ::colo::v1::MemoryInfo after;
  AddTag(&after, "weights", 4 * kGiB);
  AddTag(&after, "kv_cache", 0);
  EXPECT_OK(VerifyResumed("a:1", {"weights"}, after));
  EXPECT_THAT(VerifyResumed("a:1", {"weights", "kv_cache"}, after),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("tag kv_cache is not resident")));
}

}  // namespace
}  // namespace controller
}  // namespace colo
