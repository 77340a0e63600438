#include "controller/journal.h"

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace controller {
namespace {

using ::colo::v1::JournalRecord;

std::string TempPath(const std::string& name) {
  std::string path = ::testing::TempDir() + "/" + name;
  ::unlink(path.c_str());
  return path;
}

JournalRecord Record(::colo::v1::Phase phase, int64_t step, const std::string& op) {
  JournalRecord record;
  record.set_phase(phase);
  record.set_step(step);
  record.set_op(op);
  return record;
}

int64_t FileSize(const std::string& path) {
  struct stat st;
  EXPECT_EQ(::stat(path.c_str(), &st), 0);
  return st.st_size;
}

TEST(JournalTest, Crc32cKnownValue) {
  // The standard CRC-32C check value.
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
}

TEST(JournalTest, AppendThenReplay) {
  const std::string path = TempPath("journal_replay");
  {
    ASSERT_OK_AND_ASSIGN(auto journal, Journal::Open({.path = path}));
    EXPECT_TRUE(journal->replayed().empty());
    ASSERT_OK(journal->Append(Record(::colo::v1::RELEASING, 3, "PrepareTraining")));
    ASSERT_OK(journal->Append(Record(::colo::v1::TRAINING, 3, "PrepareTraining")));
  }
  ASSERT_OK_AND_ASSIGN(auto journal, Journal::Open({.path = path}));
  ASSERT_EQ(journal->replayed().size(), 2u);
  EXPECT_EQ(journal->replayed()[0].seq(), 1);
  EXPECT_EQ(journal->replayed()[1].seq(), 2);
  EXPECT_EQ(journal->replayed()[1].phase(), ::colo::v1::TRAINING);
  EXPECT_EQ(journal->replayed()[1].step(), 3);
  EXPECT_EQ(journal->dropped_bytes(), 0);
  // Appending after a replay continues the sequence.
  ASSERT_OK(journal->Append(Record(::colo::v1::WEIGHTS_RESUMING, 3, "BeginWeightSync")));
  journal.reset();
  ASSERT_OK_AND_ASSIGN(journal, Journal::Open({.path = path}));
  ASSERT_EQ(journal->replayed().size(), 3u);
  EXPECT_EQ(journal->replayed()[2].seq(), 3);
}

TEST(JournalTest, TornLastRecordIsDropped) {
  const std::string path = TempPath("journal_torn");
  int64_t good_size = 0;
  {
    ASSERT_OK_AND_ASSIGN(auto journal, Journal::Open({.path = path}));
    ASSERT_OK(journal->Append(Record(::colo::v1::RELEASING, 1, "PrepareTraining")));
    good_size = FileSize(path);
    ASSERT_OK(journal->Append(Record(::colo::v1::TRAINING, 1, "PrepareTraining")));
  }
  const int64_t full_size = FileSize(path);
  ASSERT_GT(full_size, good_size + 8);
  // Every possible tear point inside the second record.
  for (int64_t cut = good_size + 1; cut < full_size; ++cut) {
    ASSERT_EQ(::truncate(path.c_str(), cut), 0);
    ASSERT_OK_AND_ASSIGN(auto journal, Journal::Open({.path = path}));
    ASSERT_EQ(journal->replayed().size(), 1u) << "cut at " << cut;
    EXPECT_EQ(journal->replayed()[0].phase(), ::colo::v1::RELEASING);
    EXPECT_EQ(journal->dropped_bytes(), cut - good_size);
    EXPECT_EQ(FileSize(path), good_size);
    // Re-append the record for the next iteration.
    ASSERT_OK(journal->Append(Record(::colo::v1::TRAINING, 1, "PrepareTraining")));
    EXPECT_EQ(FileSize(path), full_size);
  }
}

TEST(JournalTest, CorruptPayloadFailsCrc) {
  const std::string path = TempPath("journal_crc");
  int64_t good_size = 0;
  {
    ASSERT_OK_AND_ASSIGN(auto journal, Journal::Open({.path = path}));
    ASSERT_OK(journal->Append(Record(::colo::v1::RELEASING, 1, "PrepareTraining")));
    good_size = FileSize(path);
    ASSERT_OK(journal->Append(Record(::colo::v1::TRAINING, 1, "PrepareTraining")));
  }
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(FileSize(path) - 2);
    f.put('\x7f');
  }
  ASSERT_OK_AND_ASSIGN(auto journal, Journal::Open({.path = path}));
  EXPECT_EQ(journal->replayed().size(), 1u);
  EXPECT_EQ(FileSize(path), good_size);
}

TEST(JournalTest, CompactsLongJournals) {
  const std::string path = TempPath("journal_compact");
  {
    ASSERT_OK_AND_ASSIGN(auto journal, Journal::Open({.path = path}));
    for (int i = 0; i < 20; ++i) {
      ASSERT_OK(journal->Append(Record(::colo::v1::ROLLOUT, i, "ResumeAfterUpdate")));
    }
  }
  {
    ASSERT_OK_AND_ASSIGN(auto journal, Journal::Open({.path = path, .compact_after_records = 10}));
    EXPECT_EQ(journal->replayed().size(), 20u);
    ASSERT_OK(journal->Append(Record(::colo::v1::RELEASING, 20, "PrepareTraining")));
  }
  ASSERT_OK_AND_ASSIGN(auto journal, Journal::Open({.path = path}));
  ASSERT_EQ(journal->replayed().size(), 2u);
  EXPECT_EQ(journal->replayed()[0].step(), 19);
  EXPECT_EQ(journal->replayed()[1].step(), 20);
  EXPECT_EQ(journal->replayed()[1].seq(), 21);
}

TEST(JournalTest, UnwritablePathIsInternal) {
  EXPECT_THAT(Journal::Open({.path = "/nonexistent-dir/journal"}),
              StatusIs(absl::StatusCode::kInternal, ::testing::HasSubstr("nonexistent-dir")));
}

}  // namespace
}  // namespace controller
}  // namespace colo
