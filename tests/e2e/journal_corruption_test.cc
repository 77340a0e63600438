// A damaged controller journal never becomes a silent wrong state (issue 18).
// Each case runs real cycles on a node (two CPU engines, a controller with
// --journal, the demo trainer), SIGKILLs the controller with the node
// mid-cycle (TRAINING: every engine paused with all tags released), damages
// the journal, restarts the controller on the same port and journal, and
// checks the rule controller/journal.h documents for that damage:
//   - torn tail (crash mid-append): the valid prefix is replayed, the
//     interrupted transition finished (as before);
//   - a flipped byte in the middle: no valid record is lost (the file is kept
//     as <journal>.corrupt-*, the valid records are rewritten), the node
//     starts FAILED naming the file and offset;
//   - a truncated header, an empty file, no journal at all: FAILED naming
//     the journal and what the engines report (they are released, so
//     claiming ROLLOUT at step 0 would contradict them);
//   - garbage (not a colo journal) or another node's journal: the controller
//     refuses to start, naming the file and what to do, and leaves it as is.
// Each FAILED case then recovers as an operator would (`coloctl recover`,
// weights from disk where an engine needs them) and the trainer redoes its
// step as a full cycle.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
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
#include "tests/e2e/e2e_fixture.h"
#include "tests/util/status_matchers.h"

namespace colo::test_util {
namespace {

using ::colo::controller::demo::DemoTrainer;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

using ::colo::controller::JournalRecordFrames;
using ::colo::controller::ReadFileBytes;
using ::colo::controller::WriteFileBytes;

// Files in the journal's directory whose name starts with "journal.corrupt".
std::vector<std::string> QuarantinedCopies(const E2ENode& node) {
  CommandResult ls = RunCommand(absl::StrCat("ls -1 ", node.dir()));
  std::vector<std::string> out;
  std::istringstream lines(ls.output);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("journal.corrupt", 0) == 0) out.push_back(node.dir() + "/" + line);
  }
  return out;
}

class JournalCorruptionTest : public ::testing::Test {
 protected:
  // Runs full cycles 1 .. step-1, then PrepareTraining(step): the node is in
  // TRAINING at `step`; then SIGKILLs the controller.
  void StartInTrainingAndKillController(int64_t step) {
    ASSERT_OK_AND_ASSIGN(model_, E2EModel());
    ASSERT_OK_AND_ASSIGN(node_, E2ENode::Start(model_, NodeOptions()));
    ASSERT_OK_AND_ASSIGN(trainer_, DemoTrainer::Create(node_->TrainerOptions()));
    for (int64_t s = 1; s < step; ++s) ASSERT_OK(trainer_->RunCycle(s).status());
    ASSERT_OK(trainer_->PrepareTraining(step).status());
    node_->KillController();
  }

  // The last committed weights: (checkpoint dir, weight_version).
  std::pair<std::string, std::string> Committed(int64_t step) const {
    if (step <= 1) return {model_, "0"};
    return {trainer_->CheckpointDir(step - 1), absl::StrCat(step - 1)};
  }

  colo::v1::NodeState State() {
    absl::StatusOr<colo::v1::NodeState> state = GetNodeState(node_->stub(), false);
    EXPECT_OK(state.status());
    return state.ok() ? *state : colo::v1::NodeState();
  }

  // The node is FAILED: recover as an operator would, then the trainer redoes
  // `step` as a full cycle and both engines serve its weights.
  void RecoverAndRedo(int64_t step) {
    auto [dir, version] = Committed(step);
    ASSERT_OK(RecoverNode(*node_, dir, version));
    ASSERT_EQ(State().phase(), colo::v1::ROLLOUT);
    ASSERT_OK(trainer_->RunCycle(step).status());
    ASSERT_OK_AND_ASSIGN(auto rollout, trainer_->Rollout());
    for (const auto& e : rollout.engines) {
      for (const auto& v : e.weight_versions) EXPECT_EQ(v, absl::StrCat(step)) << e.engine;
    }
    EXPECT_EQ(State().phase(), colo::v1::ROLLOUT);
  }

  std::string model_;
  std::unique_ptr<E2ENode> node_;
  std::unique_ptr<DemoTrainer> trainer_;
};

TEST_F(JournalCorruptionTest, TornTailIsDroppedAndTheTransitionFinished) {
  StartInTrainingAndKillController(2);
  const std::string data = ReadFileBytes(node_->journal());
  const auto frames = JournalRecordFrames(data);
  ASSERT_GE(frames.size(), 2u);
  // A crash in the middle of appending the last record (TRAINING, step 2).
  const auto& last = frames.back();
  WriteFileBytes(node_->journal(), data.substr(0, last.first + last.second / 2));
  ASSERT_OK(node_->RestartController());
  colo::v1::NodeState state = State();
  EXPECT_EQ(state.phase(), colo::v1::TRAINING) << state.reason();
  EXPECT_EQ(state.step(), 2);
  EXPECT_TRUE(QuarantinedCopies(*node_).empty());
  // The trainer goes on with its cycle.
  ASSERT_OK(trainer_->Train(2).status());
  ASSERT_OK_AND_ASSIGN(auto group, trainer_->BeginWeightSync(2));
  std::vector<weight_sync::EngineUpdateResult> updates;
  ASSERT_OK(trainer_->Broadcast(2, group, &updates).status());
  ASSERT_OK_AND_ASSIGN(auto finished, trainer_->FinishWeightSync(2));
  EXPECT_EQ(finished.state().phase(), colo::v1::ROLLOUT);
}

TEST_F(JournalCorruptionTest, FlippedByteInTheMiddleKeepsTheValidRecordsAndFails) {
  StartInTrainingAndKillController(3);
  const std::string original = ReadFileBytes(node_->journal());
  const auto frames = JournalRecordFrames(original);
  ASSERT_EQ(frames.size(), 14u) << "2 cycles of 6 records + PrepareTraining(3)";
  // Record 8 of 14 (step 2's TRAINING): one byte of its payload flipped.
  std::string damaged = original;
  const size_t at = frames[7].first + 8 + 2;
  damaged[at] = static_cast<char>(damaged[at] ^ 0x40);
  WriteFileBytes(node_->journal(), damaged);

  ASSERT_OK(node_->RestartController());
  colo::v1::NodeState state = State();
  ASSERT_EQ(state.phase(), colo::v1::FAILED) << state.reason();
  EXPECT_EQ(state.step(), 3) << "the last valid record is step 3's";
  EXPECT_THAT(state.reason(),
              AllOf(HasSubstr(node_->journal()), HasSubstr(absl::StrCat("offset ", frames[7].first)),
                    HasSubstr("coloctl recover")));
  // Nothing valid was deleted: the damaged file is kept as it was, and the
  // journal still holds the 13 valid records (plus the FAILED one).
  const std::vector<std::string> copies = QuarantinedCopies(*node_);
  ASSERT_EQ(copies.size(), 1u);
  EXPECT_EQ(ReadFileBytes(copies[0]), damaged);
  EXPECT_THAT(state.reason(), HasSubstr(copies[0]));
  EXPECT_GE(JournalRecordFrames(ReadFileBytes(node_->journal())).size(), 14u);

  // The trainer, on step 3, is told to recover (not "step 2 is older").
  EXPECT_THAT(trainer_->BeginWeightSync(3),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("node is in FAILED")));
  RecoverAndRedo(3);
  // A restart now replays the rewritten journal cleanly.
  ASSERT_OK(node_->RestartController());
  EXPECT_EQ(State().phase(), colo::v1::ROLLOUT);
  EXPECT_EQ(State().step(), 3);
}

TEST_F(JournalCorruptionTest, TruncatedHeaderFailsNamingTheJournal) {
  StartInTrainingAndKillController(2);
  WriteFileBytes(node_->journal(), ReadFileBytes(node_->journal()).substr(0, 5));
  ASSERT_OK(node_->RestartController());
  colo::v1::NodeState state = State();
  ASSERT_EQ(state.phase(), colo::v1::FAILED) << state.reason();
  EXPECT_THAT(state.reason(), AllOf(HasSubstr(node_->journal()), HasSubstr("paused"),
                                    HasSubstr("coloctl recover")));
  EXPECT_EQ(QuarantinedCopies(*node_).size(), 1u);
  RecoverAndRedo(2);
}

TEST_F(JournalCorruptionTest, EmptyJournalFailsNamingTheJournal) {
  StartInTrainingAndKillController(2);
  WriteFileBytes(node_->journal(), "");
  ASSERT_OK(node_->RestartController());
  colo::v1::NodeState state = State();
  ASSERT_EQ(state.phase(), colo::v1::FAILED) << state.reason();
  EXPECT_THAT(state.reason(),
              AllOf(HasSubstr(node_->journal()), HasSubstr("empty"), HasSubstr("paused")));
  RecoverAndRedo(2);
}

TEST_F(JournalCorruptionTest, NoJournalWhileEnginesAreReleasedFails) {
  StartInTrainingAndKillController(2);
  ASSERT_EQ(::unlink(node_->journal().c_str()), 0);
  ASSERT_OK(node_->RestartController());
  colo::v1::NodeState state = State();
  ASSERT_EQ(state.phase(), colo::v1::FAILED) << state.reason();
  // The reason says what the engines report, which ROLLOUT would contradict.
  EXPECT_THAT(state.reason(),
              AllOf(HasSubstr("paused (retract) with "), HasSubstr("weights"),
                    HasSubstr("kv_cache"), HasSubstr("released"), HasSubstr("coloctl recover")));
  RecoverAndRedo(2);
}

TEST_F(JournalCorruptionTest, GarbageIsRefusedAndLeftUntouched) {
  StartInTrainingAndKillController(2);
  std::mt19937 rng(18);
  std::string garbage(704, '\0');
  for (char& c : garbage) c = static_cast<char>(rng());
  WriteFileBytes(node_->journal(), garbage);
  absl::Status restarted = node_->RestartController();
  EXPECT_THAT(restarted, StatusIs(absl::StatusCode::kInternal,
                                  AllOf(HasSubstr(node_->journal()),
                                        HasSubstr("not a colo journal"))));
  EXPECT_EQ(ReadFileBytes(node_->journal()), garbage) << "a file it does not recognise is left as is";
  // The operator moves it away, as the message says; the controller then
  // starts without history and, as the engines are mid-cycle, FAILED.
  ASSERT_EQ(::rename(node_->journal().c_str(), (node_->journal() + ".bad").c_str()), 0);
  ASSERT_OK(node_->RestartController());
  ASSERT_EQ(State().phase(), colo::v1::FAILED) << State().reason();
  RecoverAndRedo(2);
}

TEST_F(JournalCorruptionTest, AnotherNodesJournalIsRefused) {
  ASSERT_OK_AND_ASSIGN(model_, E2EModel());
  NodeOptions options;
  options.controller_flags = {"--node_id=node-a"};
  ASSERT_OK_AND_ASSIGN(node_, E2ENode::Start(model_, options));
  ASSERT_OK_AND_ASSIGN(trainer_, DemoTrainer::Create(node_->TrainerOptions()));
  ASSERT_OK(trainer_->RunCycle(1).status());
  node_->KillController();
  const std::string before = ReadFileBytes(node_->journal());
  // The same file under a controller configured as another node.
  node_->set_controller_flags({"--node_id=node-b"});
  absl::Status restarted = node_->RestartController();
  EXPECT_THAT(restarted, StatusIs(absl::StatusCode::kInternal,
                                  AllOf(HasSubstr(node_->journal()), HasSubstr("node-a"),
                                        HasSubstr("node-b"))));
  EXPECT_EQ(ReadFileBytes(node_->journal()), before);
  // Under its own identity the journal replays: ROLLOUT at step 1.
  node_->set_controller_flags({"--node_id=node-a"});
  ASSERT_OK(node_->RestartController());
  EXPECT_EQ(State().phase(), colo::v1::ROLLOUT);
  EXPECT_EQ(State().step(), 1);
}

}  // namespace
}  // namespace colo::test_util
