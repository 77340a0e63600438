#include "controller/controller_impl.h"

#include <unistd.h>


#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "controller/testing/fake_engine.h"
#include "controller/testing/journal_bytes.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace controller {
namespace {

using ::colo::v1::FAILED;
using ::colo::v1::PAUSED_FOR_UPDATE;
using ::colo::v1::ROLLOUT;
using ::colo::v1::TRAINING;
using ::colo::v1::WEIGHT_SYNC;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

::colo::v1::PrepareTrainingRequest Prepare(int64_t step, const std::string& mode = "") {
  ::colo::v1::PrepareTrainingRequest r;
  r.set_step(step);
  r.set_pause_mode(mode);
  return r;
}
::colo::v1::BeginWeightSyncRequest Begin(int64_t step) {
  ::colo::v1::BeginWeightSyncRequest r;
  r.set_step(step);
  return r;
}
::colo::v1::FinishWeightSyncRequest Finish(int64_t step, bool freed = true) {
  ::colo::v1::FinishWeightSyncRequest r;
  r.set_step(step);
  r.set_trainer_weights_freed(freed);
  return r;
}

class ControllerImplTest : public ::testing::Test {
 protected:
  void AddEngine(FakeEngine::Options options) {
    engines_.push_back(std::make_unique<FakeEngine>(options));
  }

  absl::StatusOr<std::unique_ptr<ControllerImpl>> Make(ControllerImpl::Options options = {},
                                                       std::string journal_path = "") {
    if (engines_.empty()) {
      AddEngine({.address = "e0:1"});
      AddEngine({.address = "e1:1"});
    }
    std::vector<std::unique_ptr<EngineClient>> clients;
    for (auto& e : engines_) clients.push_back(std::make_unique<FakeEngineClient>(e.get()));
    std::unique_ptr<Journal> journal;
    if (!journal_path.empty()) {
      auto opened = Journal::Open({.path = journal_path});
      if (!opened.ok()) return opened.status();
      journal = std::move(*opened);
    }
    if (options.health_interval == absl::Seconds(1)) options.health_interval = absl::ZeroDuration();
    return ControllerImpl::Create(options, std::move(clients), std::move(journal));
  }

  static std::string TempJournal(const std::string& name) {
    std::string path = ::testing::TempDir() + "/" + name;
    ::unlink(path.c_str());
    return path;
  }

  // Waits (bounded) until the node reaches `phase`.
  static bool WaitForPhase(ControllerImpl& impl, ::colo::v1::Phase phase) {
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    uint64_t version = 0;
    while (absl::Now() < deadline) {
      if (impl.Snapshot(&version).phase() == phase) return true;
      impl.WaitForChange(version, deadline);
    }
    return false;
  }

  std::vector<std::unique_ptr<FakeEngine>> engines_;
};

// Engines in the trainer's IPC domain take the same-device handoff; the
// others form the broadcast group with ranks 1.. and a world size that
// counts only them.
TEST_F(ControllerImplTest, BeginWeightSyncPicksIpcForEnginesInTheTrainersDomain) {
  AddEngine({.address = "e0:1"});
  AddEngine({.address = "e1:1"});
  AddEngine({.address = "e2:1"});
  engines_[0]->SetIpcDomain("boot-a/ipc:[1]");
  engines_[1]->SetIpcDomain("boot-b/ipc:[2]");
  engines_[2]->SetIpcDomain("boot-a/ipc:[1]");
  ASSERT_OK_AND_ASSIGN(auto impl, Make());
  ASSERT_OK(impl->PrepareTraining(Prepare(1, "abort")));
  ::colo::v1::BeginWeightSyncRequest begin = Begin(1);
  begin.set_trainer_ipc_domain("boot-a/ipc:[1]");
  ASSERT_OK_AND_ASSIGN(auto begun, impl->BeginWeightSync(begin));
  ASSERT_EQ(begun.engines_size(), 3);
  EXPECT_EQ(begun.engines(0).weight_path(), "ipc");
  EXPECT_EQ(begun.engines(0).rank(), 0);
  EXPECT_EQ(begun.engines(1).weight_path(), "broadcast");
  EXPECT_EQ(begun.engines(1).rank(), 1);
  EXPECT_EQ(begun.engines(1).ipc_domain(), "boot-b/ipc:[2]");
  EXPECT_EQ(begun.engines(2).weight_path(), "ipc");
  EXPECT_EQ(begun.group().world_size(), 2);
  // A replay answers the same way.
  ASSERT_OK_AND_ASSIGN(auto again, impl->BeginWeightSync(begin));
  EXPECT_EQ(again.engines(2).weight_path(), "ipc");
  EXPECT_EQ(again.group().world_size(), 2);
  // Without a trainer domain every engine is in the group, as before.
  ASSERT_OK_AND_ASSIGN(auto plain, impl->BeginWeightSync(Begin(1)));
  EXPECT_EQ(plain.engines(2).weight_path(), "broadcast");
  EXPECT_EQ(plain.engines(2).rank(), 3);
  EXPECT_EQ(plain.group().world_size(), 4);
}

TEST_F(ControllerImplTest, FullColocatedCycle) {
  ASSERT_OK_AND_ASSIGN(auto impl, Make());
  EXPECT_EQ(impl->Snapshot(nullptr).phase(), ROLLOUT);
  for (auto& e : engines_) e->ClearCalls();

  ASSERT_OK_AND_ASSIGN(auto prepared, impl->PrepareTraining(Prepare(7, "abort")));
  EXPECT_FALSE(prepared.replayed());
  EXPECT_EQ(prepared.state().phase(), TRAINING);
  EXPECT_EQ(prepared.state().step(), 7);
  for (auto& e : engines_) {
    EXPECT_THAT(e->calls(),
                ElementsAre("PauseGeneration(abort)", "GetMemoryInfo",
                            "ReleaseTags(weights,kv_cache,cuda_graph)", "GetMemoryInfo",
                            "GetServerInfo"));
    EXPECT_FALSE(e->tag_resident("weights"));
    EXPECT_FALSE(e->tag_resident("kv_cache"));
    EXPECT_FALSE(e->tag_resident("cuda_graph"));
  }
  // Per-engine memory after the release is recorded.
  ASSERT_EQ(prepared.state().engines_size(), 2);
  EXPECT_EQ(prepared.state().engines(0).memory().tags_size(), 3);

  ASSERT_OK_AND_ASSIGN(auto begun, impl->BeginWeightSync(Begin(7)));
  EXPECT_EQ(begun.state().phase(), WEIGHT_SYNC);
  EXPECT_EQ(begun.group().world_size(), 3);
  EXPECT_EQ(begun.group().backend(), "gloo");
  ASSERT_EQ(begun.engines_size(), 2);
  EXPECT_EQ(begun.engines(0).address(), "e0:1");
  EXPECT_EQ(begun.engines(0).rank(), 1);
  EXPECT_EQ(begun.engines(1).rank(), 2);
  for (auto& e : engines_) {
    // Two-stage resume: weights only.
    EXPECT_TRUE(e->tag_resident("weights"));
    EXPECT_FALSE(e->tag_resident("kv_cache"));
    e->ClearCalls();
  }

  ASSERT_OK_AND_ASSIGN(auto finished, impl->FinishWeightSync(Finish(7)));
  EXPECT_EQ(finished.state().phase(), ROLLOUT);
  for (auto& e : engines_) {
    EXPECT_THAT(e->calls(), ElementsAre("ResumeTags(kv_cache,cuda_graph)", "GetMemoryInfo",
                                        "ContinueGeneration(empty)", "GetServerInfo"));
    EXPECT_TRUE(e->tag_resident("kv_cache"));
    EXPECT_FALSE(e->paused());
  }
  // ROLLOUT, RELEASING, TRAINING, WEIGHTS_RESUMING, WEIGHT_SYNC, KV_RESUMING.
  ASSERT_EQ(finished.state().recent_phases_size(), 6);
  EXPECT_EQ(finished.state().recent_phases(1).phase(), ::colo::v1::RELEASING);
  EXPECT_EQ(finished.state().recent_phases(5).phase(), ::colo::v1::KV_RESUMING);
  EXPECT_EQ(finished.state().recent_phases(5).step(), 7);
  EXPECT_EQ(impl->verification_failures(), 0);
}

TEST_F(ControllerImplTest, OutOfOrderCallsNameBothPhases) {
  ASSERT_OK_AND_ASSIGN(auto impl, Make());
  EXPECT_THAT(impl->FinishWeightSync(Finish(1)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("FinishWeightSync needs phase WEIGHT_SYNC, node is in ROLLOUT")));
  EXPECT_THAT(impl->BeginWeightSync(Begin(0)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("BeginWeightSync needs phase TRAINING, node is in ROLLOUT")));
  EXPECT_THAT(impl->PrepareTraining(Prepare(1, "sideways")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("sideways")));
  EXPECT_THAT(impl->PrepareTraining(Prepare(-1)), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(impl->Snapshot(nullptr).phase(), ROLLOUT);
}

TEST_F(ControllerImplTest, FinishNeedsTrainerWeightsFreed) {
  ASSERT_OK_AND_ASSIGN(auto impl, Make());
  ASSERT_OK(impl->PrepareTraining(Prepare(1)));
  ASSERT_OK(impl->BeginWeightSync(Begin(1)));
  EXPECT_THAT(impl->FinishWeightSync(Finish(1, /*freed=*/false)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("trainer_weights_freed")));
  EXPECT_EQ(impl->Snapshot(nullptr).phase(), WEIGHT_SYNC);
  EXPECT_FALSE(engines_[0]->tag_resident("kv_cache"));
  EXPECT_OK(impl->FinishWeightSync(Finish(1)));
}

TEST_F(ControllerImplTest, RetriesOfACompletedStepAreReplayed) {
  ASSERT_OK_AND_ASSIGN(auto impl, Make());
  ASSERT_OK(impl->PrepareTraining(Prepare(3)));
  engines_[0]->ClearCalls();
  ASSERT_OK_AND_ASSIGN(auto again, impl->PrepareTraining(Prepare(3)));
  EXPECT_TRUE(again.replayed());
  EXPECT_EQ(again.state().phase(), TRAINING);
  EXPECT_TRUE(engines_[0]->calls().empty());

  ASSERT_OK(impl->BeginWeightSync(Begin(3)));
  ASSERT_OK_AND_ASSIGN(auto begun_again, impl->BeginWeightSync(Begin(3)));
  EXPECT_EQ(begun_again.group().world_size(), 3);
  EXPECT_EQ(begun_again.state().phase(), WEIGHT_SYNC);
  ASSERT_OK(impl->FinishWeightSync(Finish(3)));
  ASSERT_OK_AND_ASSIGN(auto finished_again, impl->FinishWeightSync(Finish(3)));
  EXPECT_TRUE(finished_again.replayed());

  // Stale and mismatched steps.
  EXPECT_THAT(impl->PrepareTraining(Prepare(2)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("older")));
  ASSERT_OK(impl->PrepareTraining(Prepare(4)));
  EXPECT_THAT(impl->BeginWeightSync(Begin(5)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("does not match")));
}

TEST_F(ControllerImplTest, LyingEngineFailsNamingTheTag) {
  AddEngine({.address = "honest:1"});
  AddEngine({.address = "liar:1"});
  engines_[1]->SetLyingTag("kv_cache", /*hide_in_memory_info=*/false);
  ASSERT_OK_AND_ASSIGN(auto impl, Make());
  EXPECT_THAT(impl->PrepareTraining(Prepare(1)),
              StatusIs(absl::StatusCode::kAborted,
                       AllOf(HasSubstr("liar:1"), HasSubstr("tag kv_cache still has"))));
  auto state = impl->Snapshot(nullptr);
  EXPECT_EQ(state.phase(), FAILED);
  EXPECT_THAT(state.reason(), AllOf(HasSubstr("liar:1"), HasSubstr("kv_cache")));
  EXPECT_EQ(impl->verification_failures(), 1);
}

TEST_F(ControllerImplTest, LyingMemoryInfoIsCaughtByDeviceNumbers) {
  AddEngine({.address = "liar:1", .kv_cache_bytes = int64_t{40} << 30});
  engines_[0]->SetLyingTag("kv_cache", /*hide_in_memory_info=*/true);
  ASSERT_OK_AND_ASSIGN(auto impl, Make());
  EXPECT_THAT(impl->PrepareTraining(Prepare(1)),
              StatusIs(absl::StatusCode::kAborted,
                       AllOf(HasSubstr("liar:1"), HasSubstr("kv_cache (42949672960 bytes)"),
                             HasSubstr("device free memory changed by only"))));
  EXPECT_EQ(impl->Snapshot(nullptr).phase(), FAILED);
}

TEST_F(ControllerImplTest, CpuEngineIsVerifiedByRss) {
  AddEngine({.address = "cpu:1",
             .device_kind = "cpu",
             .device_total_bytes = int64_t{64} << 30,
             .weights_bytes = 1 << 20,
             .kv_cache_bytes = 4 << 20,
             .cuda_graph_bytes = 0});
  ASSERT_OK_AND_ASSIGN(auto impl, Make());
  ASSERT_OK(impl->PrepareTraining(Prepare(1)));
  engines_[0]->SetLyingTag("weights", /*hide_in_memory_info=*/true);
  ASSERT_OK(impl->BeginWeightSync(Begin(1)));
  ASSERT_OK(impl->FinishWeightSync(Finish(1)));
  EXPECT_THAT(impl->PrepareTraining(Prepare(2)),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("process RSS changed by only")));
}

TEST_F(ControllerImplTest, UnimplementedEngineFailsCleanlyAndRecovers) {
  ASSERT_OK_AND_ASSIGN(auto impl, Make());
  engines_[1]->FailNext("ReleaseTags", absl::UnimplementedError("ReleaseTags not built yet"));
  EXPECT_THAT(impl->PrepareTraining(Prepare(1)),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("not built yet")));
  auto state = impl->Snapshot(nullptr);
  EXPECT_EQ(state.phase(), FAILED);
  EXPECT_THAT(state.reason(),
              AllOf(HasSubstr("PrepareTraining step 1 failed"), HasSubstr("not built yet")));
  // Trainer calls name the FAILED reason.
  EXPECT_THAT(impl->PrepareTraining(Prepare(1)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not built yet")));

  // Engine 0 released everything, engine 1 is paused: Recover brings both back.
  ASSERT_OK_AND_ASSIGN(auto recovered, impl->Recover());
  EXPECT_FALSE(recovered.replayed());
  EXPECT_EQ(recovered.state().phase(), ROLLOUT);
  EXPECT_TRUE(recovered.state().reason().empty());
  for (auto& e : engines_) {
    EXPECT_TRUE(e->tag_resident("weights"));
    EXPECT_TRUE(e->tag_resident("kv_cache"));
    EXPECT_FALSE(e->paused());
  }
  ASSERT_OK_AND_ASSIGN(auto again, impl->Recover());
  EXPECT_TRUE(again.replayed());
  // The same step can now be retried.
  EXPECT_OK(impl->PrepareTraining(Prepare(1)));
}

TEST_F(ControllerImplTest, RecoverStaysFailedWhileAnEngineIsDown) {
  ASSERT_OK_AND_ASSIGN(auto impl, Make());
  engines_[0]->SetUnavailable(true);
  EXPECT_THAT(impl->PrepareTraining(Prepare(1)), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(impl->Recover(), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("stays FAILED")));
  EXPECT_EQ(impl->Snapshot(nullptr).phase(), FAILED);
  engines_[0]->SetUnavailable(false);
  EXPECT_OK(impl->Recover());
}

TEST_F(ControllerImplTest, RecoverAbandonsACycle) {
  ASSERT_OK_AND_ASSIGN(auto impl, Make());
  ASSERT_OK(impl->PrepareTraining(Prepare(1)));
  // The trainer died in TRAINING; the operator brings the engines back.
  ASSERT_OK_AND_ASSIGN(auto recovered, impl->Recover());
  EXPECT_EQ(recovered.state().phase(), ROLLOUT);
  ASSERT_GE(recovered.state().recent_phases_size(), 2);
  EXPECT_EQ(recovered.state().recent_phases().rbegin()->phase(), FAILED);
  for (auto& e : engines_) {
    EXPECT_TRUE(e->tag_resident("weights"));
    EXPECT_FALSE(e->paused());
  }
  EXPECT_THAT(impl->BeginWeightSync(Begin(1)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("node is in ROLLOUT")));
  // The abandoned step runs again rather than replaying its old release.
  ASSERT_OK_AND_ASSIGN(auto again, impl->PrepareTraining(Prepare(1)));
  EXPECT_FALSE(again.replayed());
  EXPECT_EQ(again.state().phase(), TRAINING);
}

TEST_F(ControllerImplTest, PauseForUpdateKeepsMemory) {
  ASSERT_OK_AND_ASSIGN(auto impl, Make());
  for (auto& e : engines_) e->ClearCalls();
  ::colo::v1::PauseForUpdateRequest pause;
  pause.set_step(2);
  ASSERT_OK_AND_ASSIGN(auto paused, impl->PauseForUpdate(pause));
  EXPECT_EQ(paused.state().phase(), PAUSED_FOR_UPDATE);
  EXPECT_THAT(engines_[0]->calls(), ElementsAre("PauseGeneration(in_place)"));
  ASSERT_OK_AND_ASSIGN(auto replay, impl->PauseForUpdate(pause));
  EXPECT_TRUE(replay.replayed());
  ::colo::v1::ResumeAfterUpdateRequest resume;
  resume.set_step(2);
  ASSERT_OK_AND_ASSIGN(auto resumed, impl->ResumeAfterUpdate(resume));
  EXPECT_EQ(resumed.state().phase(), ROLLOUT);
  EXPECT_FALSE(engines_[0]->paused());
  EXPECT_TRUE(engines_[0]->tag_resident("kv_cache"));
}

TEST_F(ControllerImplTest, JournalSurvivesRestart) {
  const std::string path = TempJournal("impl_journal_restart");
  {
    ASSERT_OK_AND_ASSIGN(auto impl, Make({}, path));
    ASSERT_OK(impl->PrepareTraining(Prepare(11)));
  }
  ASSERT_OK_AND_ASSIGN(auto impl, Make({}, path));
  auto state = impl->Snapshot(nullptr);
  EXPECT_EQ(state.phase(), TRAINING);
  EXPECT_EQ(state.step(), 11);
  for (auto& e : engines_) e->ClearCalls();
  ASSERT_OK_AND_ASSIGN(auto replay, impl->PrepareTraining(Prepare(11)));
  EXPECT_TRUE(replay.replayed());
  EXPECT_OK(impl->BeginWeightSync(Begin(11)));
}

TEST_F(ControllerImplTest, RestartInWeightsResumingFinishesTheResume) {
  const std::string path = TempJournal("impl_journal_weights_resuming");
  AddEngine({.address = "e0:1"});
  // The engine is where the crashed controller left it: paused, released.
  ASSERT_OK(engines_[0]->PauseGeneration("retract").status());
  ASSERT_OK(engines_[0]->ReleaseTags({}).status());
  {
    ASSERT_OK_AND_ASSIGN(auto journal, Journal::Open({.path = path}));
    ::colo::v1::JournalRecord r;
    r.set_step(5);
    r.set_phase(::colo::v1::RELEASING);
    r.set_op("PrepareTraining");
    ASSERT_OK(journal->Append(r));
    r.set_phase(TRAINING);
    r.set_completed(true);
    ASSERT_OK(journal->Append(r));
    r.set_phase(::colo::v1::WEIGHTS_RESUMING);
    r.set_op("BeginWeightSync");
    r.set_completed(false);
    ASSERT_OK(journal->Append(r));
  }
  ASSERT_OK_AND_ASSIGN(auto impl, Make({}, path));
  auto state = impl->Snapshot(nullptr);
  EXPECT_EQ(state.phase(), WEIGHT_SYNC);
  EXPECT_THAT(state.reason(), HasSubstr("after a controller restart"));
  EXPECT_TRUE(engines_[0]->tag_resident("weights"));
  EXPECT_FALSE(engines_[0]->tag_resident("kv_cache"));
  // The trainer's retry of the interrupted call is answered as replayed.
  ASSERT_OK_AND_ASSIGN(auto begun, impl->BeginWeightSync(Begin(5)));
  EXPECT_EQ(begun.group().world_size(), 2);
  ASSERT_OK_AND_ASSIGN(auto finished, impl->FinishWeightSync(Finish(5)));
  EXPECT_EQ(finished.state().phase(), ROLLOUT);
}

TEST_F(ControllerImplTest, RestartInReleasingFinishesTheRelease) {
  const std::string path = TempJournal("impl_journal_releasing");
  AddEngine({.address = "e0:1"});
  {
    ASSERT_OK_AND_ASSIGN(auto journal, Journal::Open({.path = path}));
    ::colo::v1::JournalRecord r;
    r.set_step(2);
    r.set_phase(::colo::v1::RELEASING);
    r.set_op("PrepareTraining");
    r.set_pause_mode("abort");
    ASSERT_OK(journal->Append(r));
  }
  ASSERT_OK_AND_ASSIGN(auto impl, Make({}, path));
  EXPECT_EQ(impl->Snapshot(nullptr).phase(), TRAINING);
  EXPECT_THAT(engines_[0]->calls(), ::testing::Contains("PauseGeneration(abort)"));
  EXPECT_FALSE(engines_[0]->tag_resident("kv_cache"));
  ASSERT_OK_AND_ASSIGN(auto replay, impl->PrepareTraining(Prepare(2, "abort")));
  EXPECT_TRUE(replay.replayed());
}

TEST_F(ControllerImplTest, RestartRecoveryFailureLeavesNodeFailed) {
  const std::string path = TempJournal("impl_journal_kv_resuming");
  AddEngine({.address = "down:1"});
  engines_[0]->SetUnavailable(true);
  {
    ASSERT_OK_AND_ASSIGN(auto journal, Journal::Open({.path = path}));
    ::colo::v1::JournalRecord r;
    r.set_step(9);
    r.set_phase(::colo::v1::KV_RESUMING);
    r.set_op("FinishWeightSync");
    ASSERT_OK(journal->Append(r));
  }
  ASSERT_OK_AND_ASSIGN(auto impl, Make({}, path));
  auto state = impl->Snapshot(nullptr);
  EXPECT_EQ(state.phase(), FAILED);
  EXPECT_THAT(state.reason(), AllOf(HasSubstr("KV_RESUMING"), HasSubstr("down:1")));
}

TEST_F(ControllerImplTest, RestartInTrainingWithResidentEngineFails) {
  const std::string path = TempJournal("impl_journal_training_mismatch");
  AddEngine({.address = "restarted:1"});
  {
    ASSERT_OK_AND_ASSIGN(auto journal, Journal::Open({.path = path}));
    ::colo::v1::JournalRecord r;
    r.set_step(3);
    r.set_phase(TRAINING);
    r.set_op("PrepareTraining");
    r.set_completed(true);
    ASSERT_OK(journal->Append(r));
  }
  // The engine holds everything (it restarted while the controller was down).
  ASSERT_OK_AND_ASSIGN(auto impl, Make({}, path));
  auto state = impl->Snapshot(nullptr);
  EXPECT_EQ(state.phase(), FAILED);
  EXPECT_THAT(state.reason(), AllOf(HasSubstr("restarted:1"), HasSubstr("tag cuda_graph")));
  ASSERT_OK(impl->Recover());
}

// Engines where a crashed controller left them mid-cycle: paused (retract)
// with every tag released.
void PauseAndReleaseAll(std::vector<std::unique_ptr<FakeEngine>>& engines) {
  for (auto& e : engines) {
    ASSERT_OK(e->PauseGeneration("retract").status());
    ASSERT_OK(e->ReleaseTags({}).status());
  }
}

TEST_F(ControllerImplTest, FreshStartWithServingEnginesIsRollout) {
  const std::string path = TempJournal("impl_fresh_serving");
  ASSERT_OK_AND_ASSIGN(auto impl, Make({}, path));
  EXPECT_EQ(impl->Snapshot(nullptr).phase(), ROLLOUT);
  EXPECT_EQ(impl->Snapshot(nullptr).reason(), "");
}

TEST_F(ControllerImplTest, FreshStartWhileEnginesAreReleasedFailsAndRecovers) {
  AddEngine({.address = "e0:1"});
  AddEngine({.address = "e1:1"});
  PauseAndReleaseAll(engines_);
  for (const std::string& path : {std::string(), TempJournal("impl_fresh_released")}) {
    SCOPED_TRACE(path.empty() ? "no journal" : "new journal");
    ASSERT_OK_AND_ASSIGN(auto impl, Make({}, path));
    auto state = impl->Snapshot(nullptr);
    // Not ROLLOUT at step 0 while the engines are released.
    ASSERT_EQ(state.phase(), FAILED);
    EXPECT_THAT(state.reason(),
                AllOf(HasSubstr("started without a journal history"),
                      HasSubstr(path.empty() ? "no --journal" : path),
                      HasSubstr("engine e0:1 reports paused (retract) with "),
                      HasSubstr("coloctl recover")));
    // Nothing was done to the engines before the operator's Recover.
    for (auto& e : engines_) EXPECT_FALSE(e->tag_resident("weights"));
  }
  ASSERT_OK_AND_ASSIGN(auto impl, Make({}, TempJournal("impl_fresh_released_2")));
  ASSERT_OK_AND_ASSIGN(auto recovered, impl->Recover());
  EXPECT_EQ(recovered.state().phase(), ROLLOUT);
  for (auto& e : engines_) {
    EXPECT_TRUE(e->tag_resident("kv_cache"));
    EXPECT_FALSE(e->paused());
  }
}

TEST_F(ControllerImplTest, DamagedJournalStartsFailedNamingTheDamageAndTheEngines) {
  const std::string path = TempJournal("impl_journal_damaged");
  {
    ASSERT_OK_AND_ASSIGN(auto impl, Make({}, path));
    ASSERT_OK(impl->PrepareTraining(Prepare(1)));
    ASSERT_OK(impl->BeginWeightSync(Begin(1)));
    ASSERT_OK(impl->FinishWeightSync(Finish(1)));
    ASSERT_OK(impl->PrepareTraining(Prepare(2)));
  }
  // Flip a byte in the third record (of 8).
  std::string data = ReadFileBytes(path);
  const auto frames = JournalRecordFrames(data);
  ASSERT_EQ(frames.size(), 8u);
  const size_t at = frames[2].first;
  data[at + 10] = static_cast<char>(data[at + 10] ^ 1);
  WriteFileBytes(path, data);
  for (auto& e : engines_) e->ClearCalls();

  ASSERT_OK_AND_ASSIGN(auto impl, Make({}, path));
  auto state = impl->Snapshot(nullptr);
  ASSERT_EQ(state.phase(), FAILED);
  EXPECT_EQ(state.step(), 2);
  EXPECT_THAT(state.reason(),
              AllOf(HasSubstr(absl::StrCat("offset ", at)), HasSubstr("7 valid records"),
                    HasSubstr("e0:1: paused (retract), released "),
                    HasSubstr("coloctl recover")));
  // Only asked, never told: the engines are as the crash left them.
  for (auto& e : engines_) EXPECT_THAT(e->calls(), ElementsAre("GetServerInfo"));
  ASSERT_OK(impl->Recover());
  ASSERT_OK(impl->PrepareTraining(Prepare(2)));
}

TEST_F(ControllerImplTest, RestartInRolloutWithAPausedEngineFails) {
  const std::string path = TempJournal("impl_journal_rollout_paused");
  {
    ASSERT_OK_AND_ASSIGN(auto impl, Make({}, path));
    ASSERT_OK(impl->PrepareTraining(Prepare(1)));
    ASSERT_OK(impl->BeginWeightSync(Begin(1)));
    ASSERT_OK(impl->FinishWeightSync(Finish(1)));
  }
  ASSERT_OK(engines_[1]->PauseGeneration("in_place").status());
  ASSERT_OK_AND_ASSIGN(auto impl, Make({}, path));
  auto state = impl->Snapshot(nullptr);
  ASSERT_EQ(state.phase(), FAILED);
  EXPECT_THAT(state.reason(), AllOf(HasSubstr("after a controller restart in ROLLOUT at step 1"),
                                    HasSubstr("e1:1 reports paused (in_place)")));
  ASSERT_OK(impl->Recover());
  EXPECT_FALSE(engines_[1]->paused());
}

TEST_F(ControllerImplTest, ShutdownCancelsATransitionBlockedOnAHungEngine) {
  const std::string path = TempJournal("impl_shutdown_hung");
  ASSERT_OK_AND_ASSIGN(auto impl, Make({}, path));
  engines_[1]->SetHang(true);
  absl::StatusOr<::colo::v1::TransitionResponse> result;
  std::thread trainer([&] { result = impl->PrepareTraining(Prepare(4)); });
  engines_[1]->WaitUntilHanging();
  impl->Shutdown();
  trainer.join();
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kUnavailable,
                               AllOf(HasSubstr("shutting down"), HasSubstr("RELEASING"))));
  // Not FAILED: the journal still says RELEASING for the next controller.
  EXPECT_EQ(impl->Snapshot(nullptr).phase(), ::colo::v1::RELEASING);
  impl.reset();
  engines_[1]->SetHang(false);
  ASSERT_OK_AND_ASSIGN(auto journal, Journal::Open({.path = path}));
  ASSERT_FALSE(journal->replayed().empty());
  EXPECT_EQ(journal->replayed().back().phase(), ::colo::v1::RELEASING);
  journal.reset();
  ASSERT_OK_AND_ASSIGN(impl, Make({}, path));
  EXPECT_EQ(impl->Snapshot(nullptr).phase(), TRAINING);
}

TEST_F(ControllerImplTest, UnansweredProbesMakeAnEngineStaleBeforeLost) {
  ControllerImpl::Options options;
  options.health_interval = absl::Milliseconds(5);
  options.health_failures_to_lose = 1000000;
  options.health_stale_after = absl::Hours(1);
  ASSERT_OK_AND_ASSIGN(auto impl, Make(options));
  auto health_of = [&](int i) { return impl->Snapshot(nullptr).engines(i).health(); };
  auto wait_for = [&](int i, const std::string& health) {
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    uint64_t version = 0;
    while (absl::Now() < deadline) {
      if (impl->Snapshot(&version).engines(i).health() == health) return true;
      impl->WaitForChange(version, deadline);
    }
    return false;
  };
  ASSERT_TRUE(wait_for(1, "healthy"));
  const int64_t last_ok = impl->Snapshot(nullptr).engines(1).last_ok_us();
  EXPECT_GT(last_ok, 0);
  engines_[1]->SetUnavailable(true);
  ASSERT_TRUE(wait_for(1, "stale")) << health_of(1);
  auto state = impl->Snapshot(nullptr);
  EXPECT_TRUE(state.engines(1).healthy());
  EXPECT_GT(state.engines(1).failed_probes(), 0);
  EXPECT_EQ(state.engines(0).health(), "healthy");
  EXPECT_EQ(state.phase(), ROLLOUT);
  engines_[1]->SetUnavailable(false);
  ASSERT_TRUE(wait_for(1, "healthy")) << health_of(1);
  EXPECT_GT(impl->Snapshot(nullptr).engines(1).last_ok_us(), last_ok);
}

TEST_F(ControllerImplTest, RestartedEngineFailsTheNodeEvenWhenNoProbeFailed) {
  ControllerImpl::Options options;
  options.health_interval = absl::Milliseconds(5);
  ASSERT_OK_AND_ASSIGN(auto impl, Make(options));
  ASSERT_OK(impl->PrepareTraining(Prepare(1)));
  ASSERT_OK(impl->BeginWeightSync(Begin(1)));
  ASSERT_OK(impl->FinishWeightSync(Finish(1)));
  // The engine process came back before two probes failed: only its
  // instance_id tells.
  engines_[1]->Restart();
  ASSERT_TRUE(WaitForPhase(*impl, FAILED));
  auto state = impl->Snapshot(nullptr);
  EXPECT_THAT(state.reason(), AllOf(HasSubstr("engine e1:1 restarted"), HasSubstr("coloctl recover")));
  ASSERT_OK(impl->Recover());
  EXPECT_EQ(impl->Snapshot(nullptr).phase(), ROLLOUT);
  // Recover does not count the new instance as another restart.
  ASSERT_OK(impl->PrepareTraining(Prepare(2)));
}

TEST_F(ControllerImplTest, LostEngineFailsTheNode) {
  ControllerImpl::Options options;
  options.health_interval = absl::Milliseconds(5);
  ASSERT_OK_AND_ASSIGN(auto impl, Make(options));
  engines_[1]->SetUnavailable(true);
  ASSERT_TRUE(WaitForPhase(*impl, FAILED));
  auto state = impl->Snapshot(nullptr);
  EXPECT_THAT(state.reason(), AllOf(HasSubstr("engine e1:1 lost"), HasSubstr("is down")));
  EXPECT_FALSE(state.engines(1).healthy());
  EXPECT_TRUE(state.engines(0).healthy());
  EXPECT_THAT(impl->PrepareTraining(Prepare(1)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("e1:1 lost")));
}

TEST_F(ControllerImplTest, PendingCallGetsUnavailableWhenAnEngineIsLost) {
  ControllerImpl::Options options;
  options.health_interval = absl::Milliseconds(5);
  ASSERT_OK_AND_ASSIGN(auto impl, Make(options));
  engines_[0]->SetHang(true);
  absl::StatusOr<::colo::v1::TransitionResponse> result;
  std::thread trainer([&] { result = impl->PrepareTraining(Prepare(1)); });
  trainer.join();
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("e0:1 lost")));
  EXPECT_EQ(impl->Snapshot(nullptr).phase(), FAILED);
  engines_[0]->SetHang(false);
}

TEST_F(ControllerImplTest, WaitForChangeWakesOnShutdown) {
  ASSERT_OK_AND_ASSIGN(auto impl, Make());
  uint64_t version = 0;
  impl->Snapshot(&version);
  bool alive = true;
  std::thread watcher([&] { alive = impl->WaitForChange(version, absl::InfiniteFuture()); });
  impl->Shutdown();
  watcher.join();
  EXPECT_FALSE(alive);
}

TEST_F(ControllerImplTest, GetStateWithMemoryAndFanOuts) {
  ASSERT_OK_AND_ASSIGN(auto impl, Make());
  auto state = impl->GetState(/*include_memory=*/true);
  ASSERT_EQ(state.engines_size(), 2);
  EXPECT_EQ(state.engines(0).memory().device().kind(), "cuda");
  EXPECT_EQ(state.engines(0).engine_state(), "serving");

  auto released = impl->ReleaseTags({"kv_cache"});
  ASSERT_EQ(released.results_size(), 2);
  // Release while serving: the engines refuse.
  EXPECT_EQ(released.results(0).code(), static_cast<int>(absl::StatusCode::kFailedPrecondition));
  auto paused = impl->PauseGeneration("retract");
  EXPECT_EQ(paused.results(1).code(), 0);
  released = impl->ReleaseTags({"kv_cache"});
  EXPECT_EQ(released.results(0).code(), 0);
  EXPECT_EQ(released.results(0).release().tags(0).bytes(), int64_t{40} << 30);
  EXPECT_FALSE(engines_[1]->tag_resident("kv_cache"));
  auto resumed = impl->ResumeTags({"kv_cache"});
  EXPECT_EQ(resumed.results(1).code(), 0);
  auto continued = impl->ContinueGeneration(true);
  EXPECT_EQ(continued.results(0).code(), 0);
  EXPECT_FALSE(engines_[0]->paused());
  auto listed = impl->ListEngines();
  ASSERT_EQ(listed.engines_size(), 2);
  EXPECT_EQ(listed.engines(1).address(), "e1:1");
}

}  // namespace
}  // namespace controller
}  // namespace colo
