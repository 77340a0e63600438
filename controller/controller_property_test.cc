// Randomized sequences of trainer calls, retries, Recover and injected
// engine errors against ControllerImpl with fake engines. After every call
// the engines' memory must match the node's phase, and a replayed call must
// not touch any engine. Seed: COLO_PROPERTY_SEED (printed); length:
// COLO_PROPERTY_OPS (default 400).
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "controller/controller_impl.h"
#include "controller/testing/fake_engine.h"
#include "gtest/gtest.h"

namespace colo {
namespace controller {
namespace {

int64_t EnvOr(const char* name, int64_t fallback) {
  const char* value = std::getenv(name);
  return value == nullptr ? fallback : std::atoll(value);
}

TEST(ControllerPropertyTest, PhaseAlwaysMatchesEngineMemory) {
  const uint64_t seed = static_cast<uint64_t>(EnvOr("COLO_PROPERTY_SEED", 20261123));
  const int64_t ops = EnvOr("COLO_PROPERTY_OPS", 400);
  std::cout << "seed " << seed << ", " << ops << " ops\n";
  std::mt19937_64 rng(seed);

  std::vector<std::unique_ptr<FakeEngine>> engines;
  std::vector<std::unique_ptr<EngineClient>> clients;
  for (int i = 0; i < 3; ++i) {
    FakeEngine::Options options;
    options.address = "e" + std::to_string(i) + ":1";
    engines.push_back(std::make_unique<FakeEngine>(options));
    clients.push_back(std::make_unique<FakeEngineClient>(engines.back().get()));
  }
  ControllerImpl::Options options;
  options.health_interval = absl::ZeroDuration();
  auto created = ControllerImpl::Create(options, std::move(clients), nullptr);
  ASSERT_TRUE(created.ok()) << created.status();
  ControllerImpl& impl = **created;

  const char* kMethods[] = {"PauseGeneration", "ReleaseTags", "ResumeTags", "ContinueGeneration",
                            "GetMemoryInfo"};
  int64_t step = 0;
  int transitions_ok = 0, replays = 0, failures = 0;
  for (int64_t op = 0; op < ops; ++op) {
    const auto before = impl.Snapshot(nullptr);
    size_t calls_before = 0;
    for (auto& e : engines) calls_before += e->calls().size();
    if (rng() % 10 == 0) {
      engines[rng() % engines.size()]->FailNext(kMethods[rng() % 5],
                                                absl::InternalError("injected"));
    }
    // A FAILED node is mostly recovered at once (as an operator would).
    const int choice =
        before.phase() == ::colo::v1::FAILED && rng() % 2 == 0 ? 8 : static_cast<int>(rng() % 9);
    // Mostly the call the cycle expects, sometimes a retry or a wrong one.
    const int64_t s = rng() % 4 == 0 ? step : step + 1;
    std::string what;
    absl::StatusOr<::colo::v1::TransitionResponse> result;
    switch (choice) {
      case 0:
      case 1: {
        ::colo::v1::PrepareTrainingRequest r;
        r.set_step(s);
        r.set_pause_mode(rng() % 2 ? "abort" : "retract");
        what = "PrepareTraining";
        result = impl.PrepareTraining(r);
        break;
      }
      case 2:
      case 3: {
        ::colo::v1::BeginWeightSyncRequest r;
        r.set_step(before.step());
        what = "BeginWeightSync";
        auto begun = impl.BeginWeightSync(r);
        if (begun.ok()) {
          ::colo::v1::TransitionResponse t;
          *t.mutable_state() = begun->state();
          result = t;
        } else {
          result = begun.status();
        }
        break;
      }
      case 4:
      case 5: {
        ::colo::v1::FinishWeightSyncRequest r;
        r.set_step(before.step());
        r.set_trainer_weights_freed(rng() % 8 != 0);
        what = "FinishWeightSync";
        result = impl.FinishWeightSync(r);
        break;
      }
      case 6: {
        ::colo::v1::PauseForUpdateRequest r;
        r.set_step(s);
        what = "PauseForUpdate";
        result = impl.PauseForUpdate(r);
        break;
      }
      case 7: {
        ::colo::v1::ResumeAfterUpdateRequest r;
        r.set_step(before.step());
        what = "ResumeAfterUpdate";
        result = impl.ResumeAfterUpdate(r);
        break;
      }
      default:
        what = "Recover";
        result = impl.Recover();
        break;
    }
    const auto after = impl.Snapshot(nullptr);
    step = after.step();
    SCOPED_TRACE(testing::Message()
                 << "op " << op << " " << what << " in " << PhaseName(before.phase()) << " -> "
                 << PhaseName(after.phase()) << ": "
                 << (result.ok() ? "OK" : result.status().ToString()));
    if (result.ok()) {
      ++transitions_ok;
      if (result->replayed()) {
        ++replays;
        size_t calls_after = 0;
        for (auto& e : engines) calls_after += e->calls().size();
        EXPECT_EQ(calls_after, calls_before) << "a replayed call touched an engine";
        EXPECT_EQ(after.phase(), before.phase());
      }
    } else if (after.phase() == ::colo::v1::FAILED) {
      ++failures;
    }
    if (before.phase() != after.phase() && after.phase() != ::colo::v1::FAILED) {
      // The composite effect of one call (it passes through transient phases).
      using ::colo::v1::PAUSED_FOR_UPDATE;
      using ::colo::v1::ROLLOUT;
      using ::colo::v1::TRAINING;
      using ::colo::v1::WEIGHT_SYNC;
      const Phase from = before.phase(), to = after.phase();
      const bool expected =
          (what == "PrepareTraining" && from == ROLLOUT && to == TRAINING) ||
          (what == "BeginWeightSync" && from == TRAINING && to == WEIGHT_SYNC) ||
          (what == "FinishWeightSync" && from == WEIGHT_SYNC && to == ROLLOUT) ||
          (what == "PauseForUpdate" && from == ROLLOUT && to == PAUSED_FOR_UPDATE) ||
          (what == "ResumeAfterUpdate" && from == PAUSED_FOR_UPDATE && to == ROLLOUT) ||
          (what == "Recover" && to == ROLLOUT);
      EXPECT_TRUE(expected);
      EXPECT_TRUE(result.ok());
    }
    for (auto& e : engines) {
      SCOPED_TRACE(e->address());
      switch (after.phase()) {
        case ::colo::v1::ROLLOUT:
          EXPECT_TRUE(e->tag_resident("weights") && e->tag_resident("kv_cache") &&
                      e->tag_resident("cuda_graph"));
          EXPECT_FALSE(e->paused());
          break;
        case ::colo::v1::TRAINING:
          EXPECT_FALSE(e->tag_resident("weights") || e->tag_resident("kv_cache") ||
                       e->tag_resident("cuda_graph"));
          EXPECT_TRUE(e->paused());
          break;
        case ::colo::v1::WEIGHT_SYNC:
          EXPECT_TRUE(e->tag_resident("weights"));
          EXPECT_FALSE(e->tag_resident("kv_cache") || e->tag_resident("cuda_graph"));
          break;
        case ::colo::v1::PAUSED_FOR_UPDATE:
          EXPECT_TRUE(e->tag_resident("weights") && e->tag_resident("kv_cache"));
          EXPECT_TRUE(e->paused());
          break;
        case ::colo::v1::FAILED:
          EXPECT_FALSE(after.reason().empty());
          break;
        default:
          ADD_FAILURE() << "transient phase " << PhaseName(after.phase()) << " after a call";
      }
    }
    if (HasFailure()) break;
  }
  std::cout << transitions_ok << " calls OK (" << replays << " replayed), " << failures
            << " left the node FAILED\n";
  EXPECT_GT(transitions_ok, ops / 10);
  EXPECT_GT(replays, 0);
}

}  // namespace
}  // namespace controller
}  // namespace colo
