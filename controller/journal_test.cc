#include "controller/journal.h"

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "controller/testing/journal_bytes.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace controller {
namespace {

using ::colo::v1::JournalRecord;
using ::testing::AllOf;
using ::testing::HasSubstr;

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

// A journal with `n` records (steps 1, 1, 2, 2, ...).
std::string WriteJournal(const std::string& name, int n, const Journal::Options& base = {}) {
  const std::string path = TempPath(name);
  Journal::Options options = base;
  options.path = path;
  auto journal = Journal::Open(options);
  EXPECT_OK(journal.status());
  for (int i = 0; i < n; ++i) {
    EXPECT_OK((*journal)->Append(
        Record(i % 2 == 0 ? ::colo::v1::RELEASING : ::colo::v1::TRAINING, 1 + i / 2, "PrepareTraining")));
  }
  return path;
}

TEST(JournalTest, NewJournalHasAHeaderNamingTheNode) {
  const std::string path = TempPath("journal_header");
  ASSERT_OK_AND_ASSIGN(auto journal,
                       Journal::Open({.path = path, .node_id = "n1", .engines = {"a:1", "b:2"}}));
  EXPECT_EQ(journal->report().recovery, Journal::Recovery::kCreated);
  EXPECT_FALSE(journal->report().lost_history);
  EXPECT_NE(journal->header().journal_id(), 0u);
  EXPECT_EQ(journal->header().node_id(), "n1");
  ASSERT_OK(journal->Append(Record(::colo::v1::RELEASING, 1, "PrepareTraining")));
  const uint64_t id = journal->header().journal_id();
  journal.reset();
  const std::string data = ReadFileBytes(path);
  EXPECT_EQ(data.substr(0, 8), "COLOJRN2");
  ASSERT_OK_AND_ASSIGN(journal,
                       Journal::Open({.path = path, .node_id = "n1", .engines = {"a:1", "b:2"}}));
  EXPECT_EQ(journal->report().recovery, Journal::Recovery::kClean);
  ASSERT_EQ(journal->replayed().size(), 1u);
  EXPECT_EQ(journal->replayed()[0].journal_id(), id);
  EXPECT_EQ(journal->header().journal_id(), id);
}

TEST(JournalTest, AnotherNodesJournalIsRefusedAndLeftAsIs) {
  const std::string path =
      WriteJournal("journal_other_node", 3, {.node_id = "node-a", .engines = {"a:1", "b:2"}});
  const std::string before = ReadFileBytes(path);
  EXPECT_THAT(Journal::Open({.path = path, .node_id = "node-b", .engines = {"a:1", "b:2"}}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr(path), HasSubstr("belongs to another node"),
                             HasSubstr("node-a"), HasSubstr("node-b"))));
  // Another engine order is another node too.
  EXPECT_THAT(Journal::Open({.path = path, .node_id = "node-a", .engines = {"b:2", "a:1"}}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("[b:2,a:1]")));
  EXPECT_EQ(ReadFileBytes(path), before);
  ASSERT_OK_AND_ASSIGN(auto journal,
                       Journal::Open({.path = path, .node_id = "node-a", .engines = {"a:1", "b:2"}}));
  EXPECT_EQ(journal->replayed().size(), 3u);
}

TEST(JournalTest, FlippedByteInTheMiddleKeepsEveryValidRecord) {
  const std::string path = WriteJournal("journal_flip", 14);
  std::string data = ReadFileBytes(path);
  const auto frames = JournalRecordFrames(data);
  ASSERT_EQ(frames.size(), 14u);
  for (const size_t at : {frames[7].first + 8 + 3, frames[7].first + 1}) {
    SCOPED_TRACE(at == frames[7].first + 1 ? "length field" : "payload");
    const std::string path2 = TempPath("journal_flip_" + std::to_string(at));
    std::string damaged = data;
    damaged[at] = static_cast<char>(damaged[at] ^ 0x20);
    WriteFileBytes(path2, damaged);
    ASSERT_OK_AND_ASSIGN(auto journal, Journal::Open({.path = path2}));
    const Journal::Report& report = journal->report();
    EXPECT_EQ(report.recovery, Journal::Recovery::kCorrupt);
    EXPECT_TRUE(report.lost_history);
    ASSERT_EQ(journal->replayed().size(), 13u);
    EXPECT_EQ(journal->replayed()[6].seq(), 7);
    EXPECT_EQ(journal->replayed()[7].seq(), 9);
    EXPECT_EQ(journal->replayed().back().seq(), 14);
    EXPECT_THAT(report.message,
                AllOf(HasSubstr(path2), HasSubstr(absl::StrCat("offset ", frames[7].first)),
                      HasSubstr("13 valid records were kept"), HasSubstr(report.quarantine_path)));
    EXPECT_EQ(ReadFileBytes(report.quarantine_path), damaged);
    // Appending continues after the last valid record; a reopen is clean.
    ASSERT_OK(journal->Append(Record(::colo::v1::FAILED, 7, "JournalRecovery")));
    journal.reset();
    ASSERT_OK_AND_ASSIGN(journal, Journal::Open({.path = path2}));
    EXPECT_EQ(journal->report().recovery, Journal::Recovery::kClean);
    ASSERT_EQ(journal->replayed().size(), 14u);
    EXPECT_EQ(journal->replayed().back().seq(), 14) << "renumbered when rewritten";
  }
}

TEST(JournalTest, RecordsOfAnotherJournalSplicedInAreNotReplayed) {
  const std::string ours = WriteJournal("journal_ours", 6);
  const std::string theirs = WriteJournal("journal_theirs", 4);
  const std::string a = ReadFileBytes(ours);
  const std::string b = ReadFileBytes(theirs);
  const auto fa = JournalRecordFrames(a);
  const auto fb = JournalRecordFrames(b);
  // Their records 2..3 between our records 3 and 4.
  const std::string spliced = a.substr(0, fa[3].first) +
                              b.substr(fb[1].first, fb[3].first - fb[1].first) +
                              a.substr(fa[3].first);
  WriteFileBytes(ours, spliced);
  ASSERT_OK_AND_ASSIGN(auto journal, Journal::Open({.path = ours}));
  EXPECT_EQ(journal->report().recovery, Journal::Recovery::kCorrupt);
  EXPECT_THAT(journal->report().message, HasSubstr("a record of another journal"));
  ASSERT_EQ(journal->replayed().size(), 6u);
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(journal->replayed()[i].seq(), static_cast<int64_t>(i + 1));
}

TEST(JournalTest, ForeignRecordsAtTheEndAreCorruptionNotATornTail) {
  const std::string ours = WriteJournal("journal_ours_tail", 3);
  const std::string theirs = WriteJournal("journal_theirs_tail", 2);
  const std::string b = ReadFileBytes(theirs);
  WriteFileBytes(ours, ReadFileBytes(ours) + b.substr(JournalRecordFrames(b)[0].first));
  ASSERT_OK_AND_ASSIGN(auto journal, Journal::Open({.path = ours}));
  EXPECT_EQ(journal->report().recovery, Journal::Recovery::kCorrupt);
  EXPECT_EQ(journal->replayed().size(), 3u);
  EXPECT_FALSE(journal->report().quarantine_path.empty());
}

TEST(JournalTest, DuplicatedRecordIsCorruption) {
  const std::string path = WriteJournal("journal_dup", 4);
  const std::string data = ReadFileBytes(path);
  const auto f = JournalRecordFrames(data);
  WriteFileBytes(path, data.substr(0, f[2].first) + data.substr(f[1].first, f[1].second) +
                      data.substr(f[2].first));
  ASSERT_OK_AND_ASSIGN(auto journal, Journal::Open({.path = path}));
  EXPECT_EQ(journal->report().recovery, Journal::Recovery::kCorrupt);
  EXPECT_THAT(journal->report().message, HasSubstr("record seq 2 where seq 3 was due"));
  EXPECT_EQ(journal->replayed().size(), 4u);
}

TEST(JournalTest, ZeroFilledTailIsTorn) {
  const std::string path = WriteJournal("journal_zeros", 3);
  WriteFileBytes(path, ReadFileBytes(path) + std::string(4096, '\0'));
  ASSERT_OK_AND_ASSIGN(auto journal, Journal::Open({.path = path}));
  EXPECT_EQ(journal->report().recovery, Journal::Recovery::kTornTail);
  EXPECT_FALSE(journal->report().lost_history);
  EXPECT_EQ(journal->replayed().size(), 3u);
  EXPECT_EQ(journal->dropped_bytes(), 4096);
}

TEST(JournalTest, EmptyFileStartsOverAndReportsLostHistory) {
  const std::string path = TempPath("journal_empty");
  WriteFileBytes(path, "");
  ASSERT_OK_AND_ASSIGN(auto journal, Journal::Open({.path = path}));
  EXPECT_EQ(journal->report().recovery, Journal::Recovery::kEmptyFile);
  EXPECT_TRUE(journal->report().lost_history);
  EXPECT_THAT(journal->report().message, AllOf(HasSubstr(path), HasSubstr("empty")));
  EXPECT_TRUE(journal->replayed().empty());
  EXPECT_EQ(ReadFileBytes(path).substr(0, 8), "COLOJRN2");
}

TEST(JournalTest, DamagedHeaderStartsOverKeepingTheFile) {
  const std::string path = WriteJournal("journal_header_damage", 4);
  const std::string data = ReadFileBytes(path);
  for (const std::string& damaged :
       {data.substr(0, 5), data.substr(0, 12), data.substr(0, 9) + "X" + data.substr(10)}) {
    WriteFileBytes(path, damaged);
    ASSERT_OK_AND_ASSIGN(auto journal, Journal::Open({.path = path}));
    EXPECT_EQ(journal->report().recovery, Journal::Recovery::kDamagedHeader);
    EXPECT_TRUE(journal->report().lost_history);
    EXPECT_TRUE(journal->replayed().empty());
    EXPECT_THAT(journal->report().message, HasSubstr(path));
    EXPECT_EQ(ReadFileBytes(journal->report().quarantine_path), damaged);
  }
}

TEST(JournalTest, GarbageIsRefusedAndLeftAsIs) {
  const std::string path = TempPath("journal_garbage");
  std::mt19937 rng(18);
  std::string garbage(704, '\0');
  for (char& c : garbage) c = static_cast<char>(rng());
  WriteFileBytes(path, garbage);
  EXPECT_THAT(Journal::Open({.path = path}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr(path), HasSubstr("not a colo journal"), HasSubstr("mv "))));
  EXPECT_EQ(ReadFileBytes(path), garbage);
}

TEST(JournalTest, FormatOneJournalIsMigrated) {
  // Format 1: frames from offset 0, no magic, no header, no journal ids.
  std::string legacy;
  for (int i = 1; i <= 3; ++i) {
    JournalRecord r = Record(::colo::v1::RELEASING, i, "PrepareTraining");
    r.set_seq(i);
    std::string payload;
    r.SerializeToString(&payload);
    std::string frame(8, '\0');
    for (int k = 0; k < 4; ++k) frame[k] = static_cast<char>((payload.size() >> (8 * k)) & 0xff);
    const uint32_t crc = Crc32c(payload);
    for (int k = 0; k < 4; ++k) frame[4 + k] = static_cast<char>((crc >> (8 * k)) & 0xff);
    legacy += frame + payload;
  }
  const std::string path = TempPath("journal_legacy");
  WriteFileBytes(path, legacy + "\x05\x00");  // and a torn tail
  ASSERT_OK_AND_ASSIGN(auto journal, Journal::Open({.path = path, .node_id = "n"}));
  EXPECT_EQ(journal->report().recovery, Journal::Recovery::kMigrated);
  EXPECT_FALSE(journal->report().lost_history);
  ASSERT_EQ(journal->replayed().size(), 3u);
  ASSERT_OK(journal->Append(Record(::colo::v1::TRAINING, 3, "PrepareTraining")));
  journal.reset();
  EXPECT_EQ(ReadFileBytes(path).substr(0, 8), "COLOJRN2");
  ASSERT_OK_AND_ASSIGN(journal, Journal::Open({.path = path, .node_id = "n"}));
  EXPECT_EQ(journal->report().recovery, Journal::Recovery::kClean);
  ASSERT_EQ(journal->replayed().size(), 4u);
  EXPECT_EQ(journal->replayed().back().seq(), 4);
}

TEST(JournalTest, UnwritablePathIsInternal) {
  EXPECT_THAT(Journal::Open({.path = "/nonexistent-dir/journal"}),
              StatusIs(absl::StatusCode::kInternal, ::testing::HasSubstr("nonexistent-dir")));
}

}  // namespace
}  // namespace controller
}  // namespace colo
