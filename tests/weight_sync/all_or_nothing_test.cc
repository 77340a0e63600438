// All-or-nothing weight updates against real colo-engine processes:
//   - bad specs (wrong shape, unknown name, unsupported dtype) are rejected
//     with INVALID_ARGUMENT listing every offender before a byte moves, the
//     old weights keep serving and the group stays usable;
//   - a sender SIGKILLed mid-broadcast makes the engines' update return
//     ABORTED within the transfer deadline; they keep serving the old
//     weights; the group can be destroyed and a new group + update works.
#include <signal.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/status/status_macros.h"
#include "tests/util/status_matchers.h"
#include "tests/weight_sync/weight_sync_fixture.h"
#include "weight_sync/sender.h"

namespace colo::test_util {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr int64_t kBucketBytes = 16 << 10;  // ~27 buckets for the tiny model

class AllOrNothingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(ckpt_, MakeCheckpoints());
    for (auto* e : {&e1_, &e2_}) {
      ASSERT_OK_AND_ASSIGN(*e, StartEngine(ckpt_.a, kVersionA));
    }
    ASSERT_OK_AND_ASSIGN(outputs_a_, GreedyOutputs(*e1_));
    ASSERT_OK_AND_ASSIGN(checksums_a_, WeightChecksums(*e1_));
    ASSERT_OK_AND_ASSIGN(ckpt_b_, engine::SafetensorsCheckpoint::Open(ckpt_.b));
    ASSERT_OK_AND_ASSIGN(tensors_b_, weight_sync::TensorsFromCheckpoint(*ckpt_b_));
    ASSERT_OK_AND_ASSIGN(outputs_b_, OfflineOutputs(ckpt_.b));
    ASSERT_NE(outputs_a_.tokens, outputs_b_);
  }

  // Greedy tokens of B from an engine started on B (the reference).
  absl::StatusOr<std::vector<std::vector<int32_t>>> OfflineOutputs(const std::string& dir) {
    ASSIGN_OR_RETURN(auto ref, StartEngine(dir, kVersionB));
    ASSIGN_OR_RETURN(Outputs out, GreedyOutputs(*ref));
    return out.tokens;
  }

  // Both engines still serve checkpoint A, bit for bit.
  void ExpectServingA() {
    for (TestEngine* e : {e1_.get(), e2_.get()}) {
      SCOPED_TRACE(e->address());
      ASSERT_OK_AND_ASSIGN(Outputs out, GreedyOutputs(*e));
      EXPECT_EQ(out.tokens, outputs_a_.tokens);
      EXPECT_THAT(out.versions, ::testing::Each(std::string(kVersionA)));
      ASSERT_OK_AND_ASSIGN(auto info, e->Info());
      EXPECT_EQ(info.weight_version(), kVersionA);
      ASSERT_OK_AND_ASSIGN(Checksums sums, WeightChecksums(*e));
      EXPECT_EQ(sums.crc, checksums_a_.crc);
    }
  }

  // Runs one update over `transport` (this process = rank 0, sending B)
  // with `request` on both engines; returns the engines' statuses.
  std::vector<absl::Status> UpdateBoth(weight_sync::Transport* transport,
                                       const v1::UpdateWeightsFromDistributedRequest& request,
                                       absl::Status* sender_status) {
    std::vector<absl::Status> replies(2);
    std::vector<std::thread> threads;
    TestEngine* engines[2] = {e1_.get(), e2_.get()};
    for (int i = 0; i < 2; ++i) {
      threads.emplace_back([&, i] {
        replies[i] = UpdateFromDistributed(*engines[i], request).status();
      });
    }
    weight_sync::SendOptions so;
    so.transport = transport;
    so.bucket_bytes = kBucketBytes;
    *sender_status = weight_sync::SendUpdate(so, tensors_b_).status();
    for (std::thread& t : threads) t.join();
    return replies;
  }

  Checkpoints ckpt_;
  std::unique_ptr<TestEngine> e1_, e2_;
  Outputs outputs_a_;
  Checksums checksums_a_;
  std::unique_ptr<engine::SafetensorsCheckpoint> ckpt_b_;
  std::vector<weight_sync::SendTensor> tensors_b_;
  std::vector<std::vector<int32_t>> outputs_b_;
};

TEST_F(AllOrNothingTest, BadSpecsAreRejectedBeforeAnyTransfer) {
  ASSERT_OK_AND_ASSIGN(auto transport, FormGroup({e1_.get(), e2_.get()}, "g_bad_specs",
                                                 absl::Seconds(30), absl::Seconds(30)));
  const v1::UpdateWeightsFromDistributedRequest good =
      DistributedRequest(tensors_b_, "g_bad_specs", kVersionB, kBucketBytes);
  ASSERT_GE(good.names_size(), 3);
  const std::string shape_name = good.names(0);
  const std::string dtype_name = good.names(2);

  v1::UpdateWeightsFromDistributedRequest wrong_shape = good;
  wrong_shape.mutable_shapes(0)->set_dims(0, good.shapes(0).dims(0) + 1);
  v1::UpdateWeightsFromDistributedRequest unknown_name = good;
  unknown_name.set_names(1, "model.layers.7.not_a_weight");
  v1::UpdateWeightsFromDistributedRequest wrong_dtype = good;
  wrong_dtype.set_dtypes(2, "int8");
  v1::UpdateWeightsFromDistributedRequest all_three = wrong_shape;
  all_three.set_names(1, "model.layers.7.not_a_weight");
  all_three.set_dtypes(2, "int8");

  struct Case {
    const char* what;
    const v1::UpdateWeightsFromDistributedRequest* request;
    std::vector<std::string> offenders;
  };
  const Case cases[] = {
      {"wrong shape", &wrong_shape, {shape_name}},
      {"unknown name", &unknown_name, {"model.layers.7.not_a_weight"}},
      {"wrong dtype", &wrong_dtype, {dtype_name}},
      {"all three", &all_three, {shape_name, "model.layers.7.not_a_weight", dtype_name}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    absl::Status sender;
    std::vector<absl::Status> replies = UpdateBoth(transport.get(), *c.request, &sender);
    for (const absl::Status& r : replies) {
      EXPECT_THAT(r, StatusIs(absl::StatusCode::kInvalidArgument));
      for (const std::string& name : c.offenders) {
        EXPECT_THAT(std::string(r.message()), HasSubstr(absl::StrCat("\"", name, "\"")));
      }
    }
    // Rank 0 learns from the ready vote that nothing may be sent.
    EXPECT_THAT(sender, StatusIs(absl::StatusCode::kAborted,
                                 HasSubstr("before any weight was sent")));
    EXPECT_FALSE(transport->broken());
  }
  ExpectServingA();

  // Nothing was half-sent: the same group carries a good update.
  absl::Status sender;
  std::vector<absl::Status> replies = UpdateBoth(transport.get(), good, &sender);
  EXPECT_OK(sender);
  for (const absl::Status& r : replies) EXPECT_OK(r);
  for (TestEngine* e : {e1_.get(), e2_.get()}) {
    ASSERT_OK_AND_ASSIGN(Outputs out, GreedyOutputs(*e));
    EXPECT_EQ(out.tokens, outputs_b_);
    EXPECT_THAT(out.versions, ::testing::Each(std::string(kVersionB)));
    EXPECT_OK(DestroyGroup(*e, "g_bad_specs"));
  }
}

// The rank-0 sender runs in its own process and SIGKILLs itself after 3 of
// ~27 buckets; the test process makes the engine RPCs and sees ABORTED.
TEST_F(AllOrNothingTest, SenderKilledMidBroadcastAbortsWithinTransferDeadline) {
  const absl::Duration kTransferTimeout = absl::Seconds(3);
  const std::string port_file = absl::StrCat(MakeTempDir("rank0_"), "/port");
  ASSERT_OK_AND_ASSIGN(
      auto sender,
      ChildProcess::Spawn(RunfilePath("tests/weight_sync/rank0_sender"),
                          {absl::StrCat("--checkpoint=", ckpt_.b), "--group_name=g_kill",
                           "--world_size=3", absl::StrCat("--port_file=", port_file),
                           absl::StrCat("--bucket_bytes=", kBucketBytes),
                           "--transfer_timeout_ms=3000", "--kill_after_buckets=3"},
                          "rank0_sender"));
  ASSERT_OK_AND_ASSIGN(int port, WaitForPortFile(port_file, *sender, absl::Seconds(30)));

  TestEngine* engines[2] = {e1_.get(), e2_.get()};
  std::vector<absl::Status> init(2);
  {
    std::vector<std::thread> threads;
    for (int i = 0; i < 2; ++i) {
      threads.emplace_back([&, i] {
        init[i] = InitGroup(*engines[i], GroupRequest("g_kill", port, 1 + i, 3, absl::Seconds(30),
                                                      kTransferTimeout))
                      .status();
      });
    }
    for (std::thread& t : threads) t.join();
  }
  ASSERT_OK(init[0]);
  ASSERT_OK(init[1]);

  const v1::UpdateWeightsFromDistributedRequest request =
      DistributedRequest(tensors_b_, "g_kill", kVersionB, kBucketBytes);
  std::vector<absl::Status> replies(2);
  std::vector<absl::Time> replied_at(2);
  {
    std::vector<std::thread> threads;
    for (int i = 0; i < 2; ++i) {
      threads.emplace_back([&, i] {
        replies[i] = UpdateFromDistributed(*engines[i], request, absl::Seconds(60)).status();
        replied_at[i] = absl::Now();
      });
    }
    ASSERT_OK_AND_ASSIGN(int status, sender->Wait(absl::Seconds(60)));
    for (std::thread& t : threads) t.join();
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "wait status " << status << ": " << sender->LogTail();
  }
  EXPECT_THAT(sender->LogTail(), HasSubstr("SIGKILL after 3 buckets"));
  ASSERT_TRUE(sender->exit_time().has_value());
  for (int i = 0; i < 2; ++i) {
    SCOPED_TRACE(engines[i]->address());
    EXPECT_THAT(replies[i], StatusIs(absl::StatusCode::kAborted,
                                     HasSubstr("the engine destroyed weight-update group \"g_kill\"")));
    // Within the transfer deadline of the collective that lost its peer
    // (plus slack for a loaded 2-core machine); never a hang.
    EXPECT_LT(replied_at[i] - *sender->exit_time(), kTransferTimeout + absl::Seconds(5))
        << replies[i];
  }
  ExpectServingA();

  // The engines destroyed the dead group themselves; the same name forms a
  // new group at once and an update succeeds.
  for (TestEngine* e : engines) {
    EXPECT_THAT(DestroyGroup(*e, "g_kill"), StatusIs(absl::StatusCode::kNotFound));
  }
  ASSERT_OK_AND_ASSIGN(auto transport, FormGroup({e1_.get(), e2_.get()}, "g_kill",
                                                 absl::Seconds(30), absl::Seconds(30)));
  absl::Status sent;
  std::vector<absl::Status> ok = UpdateBoth(
      transport.get(), DistributedRequest(tensors_b_, "g_kill", kVersionB, kBucketBytes), &sent);
  EXPECT_OK(sent);
  for (const absl::Status& r : ok) EXPECT_OK(r);
  for (TestEngine* e : engines) {
    ASSERT_OK_AND_ASSIGN(Outputs out, GreedyOutputs(*e));
    EXPECT_EQ(out.tokens, outputs_b_);
    EXPECT_THAT(out.versions, ::testing::Each(std::string(kVersionB)));
  }
}

// A NaN in new weights is INVALID_ARGUMENT naming the tensor and the first
// bad element on every path (disk, gRPC stream, colo broadcast); nothing is
// applied and A keeps serving.
TEST_F(AllOrNothingTest, NanIsRefusedOnEveryPathNamingTheElement) {
  // Checkpoint C = B with model.norm.weight[5] = NaN (and [9] = +inf).
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = std::string(tmp != nullptr ? tmp : "/tmp") + "/ckpt_nan";
  ASSERT_EQ(std::system(("mkdir -p '" + dir + "'").c_str()), 0);
  {
    engine::SafetensorsWriter w;
    for (const auto& [name, view] : ckpt_b_->tensors()) {
      std::string bytes(reinterpret_cast<const char*>(view->data), view->bytes);
      if (name == "model.norm.weight") {
        ASSERT_EQ(view->dtype, engine::TensorDtype::kF32);
        const float nan = std::nanf(""), inf = std::numeric_limits<float>::infinity();
        std::memcpy(bytes.data() + 5 * 4, &nan, 4);
        std::memcpy(bytes.data() + 9 * 4, &inf, 4);
      }
      ASSERT_OK(w.AddRaw(name, std::string(engine::TensorDtypeName(view->dtype)), view->shape,
                         std::move(bytes)));
    }
    ASSERT_OK(w.Write(dir + "/model.safetensors"));
    std::ifstream src(ckpt_.b + "/config.json");
    std::ofstream(dir + "/config.json") << src.rdbuf();
  }
  ASSERT_OK_AND_ASSIGN(auto c, engine::SafetensorsCheckpoint::Open(dir));
  const auto named = ::testing::HasSubstr(
      "tensor \"model.norm.weight\": element 5 (flat, row-major) is NaN");
  EXPECT_THAT(UpdateFromDisk(*e1_, dir, "nan"),
              StatusIs(absl::StatusCode::kInvalidArgument, named));
  EXPECT_THAT(UpdateFromTensor(*e1_, CheckpointChunks(*c, 4096, "nan")),
              StatusIs(absl::StatusCode::kInvalidArgument, named));
  // Colo's broadcast: the engines vote not to commit; the sender sees ABORTED.
  ASSERT_OK_AND_ASSIGN(std::vector<weight_sync::SendTensor> tensors_c,
                       weight_sync::TensorsFromCheckpoint(*c));
  ASSERT_OK_AND_ASSIGN(auto transport, FormGroup({e1_.get(), e2_.get()}, "g_nan",
                                                 absl::Seconds(30), absl::Seconds(30)));
  std::vector<absl::Status> replies(2);
  std::vector<std::thread> threads;
  TestEngine* engines[2] = {e1_.get(), e2_.get()};
  const v1::UpdateWeightsFromDistributedRequest request =
      DistributedRequest(tensors_c, "g_nan", "nan", kBucketBytes);
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] { replies[i] = UpdateFromDistributed(*engines[i], request).status(); });
  }
  weight_sync::SendOptions so;
  so.transport = transport.get();
  so.bucket_bytes = kBucketBytes;
  EXPECT_THAT(weight_sync::SendUpdate(so, tensors_c).status(),
              StatusIs(absl::StatusCode::kAborted));
  for (std::thread& t : threads) t.join();
  for (const absl::Status& r : replies) {
    EXPECT_THAT(r, StatusIs(absl::StatusCode::kInvalidArgument, named));
  }
  ExpectServingA();
  // The group was not broken by a refused update: B goes through on it.
  absl::Status sent;
  std::vector<absl::Status> ok = UpdateBoth(
      transport.get(), DistributedRequest(tensors_b_, "g_nan", kVersionB, kBucketBytes), &sent);
  EXPECT_OK(sent);
  for (const absl::Status& r : ok) EXPECT_OK(r);
}

// The same fault through the real CLI (--debug_exit_after_buckets): the
// engines keep serving A and destroy the dead group themselves once their
// update fails; the next CLI run succeeds without any cleanup.
TEST_F(AllOrNothingTest, KilledCliLeavesOldWeightsAndNextCliRunSucceeds) {
  const std::string engines = absl::StrCat(e1_->address(), ",", e2_->address());
  const std::vector<std::string> common = {
      absl::StrCat("--engines=", engines), absl::StrCat("--checkpoint=", ckpt_.b),
      absl::StrCat("--weight_version=", kVersionB), "--master_port=0",
      absl::StrCat("--bucket_bytes=", kBucketBytes), "--init_timeout_ms=30000",
      "--transfer_timeout_ms=3000"};
  std::vector<std::string> args = common;
  args.push_back("--debug_exit_after_buckets=3");
  ASSERT_OK_AND_ASSIGN(auto cli, ChildProcess::Spawn(RunfilePath("weight_sync/colo-weight-sender"),
                                                     args, "colo-weight-sender"));
  ASSERT_OK_AND_ASSIGN(int status, cli->Wait(absl::Seconds(60)));
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "wait status " << status << ": " << cli->LogTail();
  ExpectServingA();
  // The killed CLI's update RPCs end on the engines within the transfer
  // deadline (3 s); the engines then drop the group.
  for (TestEngine* e : {e1_.get(), e2_.get()}) {
    EXPECT_OK(WaitGroupGone(*e, "weight_update_group", absl::Seconds(30)));
  }

  ASSERT_OK_AND_ASSIGN(auto again, ChildProcess::Spawn(RunfilePath("weight_sync/colo-weight-sender"),
                                                       common, "colo-weight-sender"));
  ASSERT_OK_AND_ASSIGN(status, again->Wait(absl::Seconds(60)));
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << again->LogTail();
  for (TestEngine* e : {e1_.get(), e2_.get()}) {
    ASSERT_OK_AND_ASSIGN(Outputs out, GreedyOutputs(*e));
    EXPECT_EQ(out.tokens, outputs_b_);
    EXPECT_THAT(out.versions, ::testing::Each(std::string(kVersionB)));
  }
}

}  // namespace
}  // namespace colo::test_util
