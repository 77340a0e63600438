// The sender against two in-process gRPC engines that run the real
// receiver + sink code (testing/weight_sync_test_engine), over Gloo on
// 127.0.0.1 with ephemeral ports.
#include "weight_sync/sender.h"

#include <memory>
#include <string>
#include <vector>

#include "engine/model/test_env.h"
#include "engine/model/tiny_model.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "proto/status/grpc_status.h"
#include "tests/util/status_matchers.h"
#include "weight_sync/sender_main_lib.h"
#include "weight_sync/testing/weight_sync_test_engine.h"

namespace colo {
namespace weight_sync {
namespace {

using ::testing::HasSubstr;

std::string WriteModel(const std::string& name, uint64_t seed) {
  const std::string dir = engine::TestDir(name);
  engine::TinyModelOptions o;
  o.layers = 2;
  o.hidden = 64;
  o.vocab = 128;
  o.dtype = TensorDtype::kBF16;
  o.seed = seed;
  EXPECT_OK(engine::WriteTinyModel(o, dir));
  return dir;
}

struct ServedEngine {
  std::unique_ptr<WeightSyncTestEngine> service;
  std::unique_ptr<grpc::Server> server;
  std::string address;
  std::unique_ptr<v1::RolloutEngine::Stub> stub;
};

ServedEngine Serve(const std::string& model_dir) {
  ServedEngine e;
  e.service = std::move(WeightSyncTestEngine::Create(model_dir)).value();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(e.service.get());
  e.server = builder.BuildAndStart();
  e.address = "127.0.0.1:" + std::to_string(port);
  e.stub = v1::RolloutEngine::NewStub(
      grpc::CreateChannel(e.address, grpc::InsecureChannelCredentials()));
  return e;
}

std::vector<uint32_t> Checksums(ServedEngine& e, std::string* version = nullptr) {
  grpc::ClientContext ctx;
  v1::GetWeightChecksumsRequest req;
  v1::GetWeightChecksumsResponse resp;
  EXPECT_TRUE(e.stub->GetWeightChecksums(&ctx, req, &resp).ok());
  std::vector<uint32_t> out;
  for (const auto& c : resp.checksums()) out.push_back(c.crc32c());
  if (version != nullptr) *version = resp.weight_version();
  return out;
}

class SenderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_a_ = WriteModel("sender_a", 1);
    dir_b_ = WriteModel("sender_b", 2);
    engines_.push_back(Serve(dir_a_));
    engines_.push_back(Serve(dir_a_));
    reference_b_ = Serve(dir_b_);
  }
  WeightSenderOptions Options(const std::string& group) {
    WeightSenderOptions o;
    for (auto& e : engines_) o.engines.push_back(e.address);
    o.group_name = group;
    o.bucket_bytes = 16 << 10;
    o.init_timeout = absl::Seconds(20);
    o.transfer_timeout = absl::Seconds(20);
    return o;
  }
  std::string dir_a_, dir_b_;
  std::vector<ServedEngine> engines_;
  ServedEngine reference_b_;
};

TEST_F(SenderTest, UpdateFromCheckpointMatchesEngineStartedOnIt) {
  const std::vector<uint32_t> a = Checksums(engines_[0]);
  const std::vector<uint32_t> b = Checksums(reference_b_);
  ASSERT_NE(a, b);
  ASSERT_OK_AND_ASSIGN(auto sender, WeightSender::Connect(Options("g1")));
  ASSERT_OK_AND_ASSIGN(auto ckpt, engine::SafetensorsCheckpoint::Open(dir_b_));
  ASSERT_OK_AND_ASSIGN(std::vector<SendTensor> tensors, TensorsFromCheckpoint(*ckpt));
  std::vector<EngineUpdateResult> results;
  ASSERT_OK_AND_ASSIGN(SendReport report, sender->Update(tensors, "B", true, &results));
  EXPECT_GT(report.buckets, 3);
  ASSERT_EQ(results.size(), 2u);
  for (const auto& r : results) {
    EXPECT_EQ(r.response.weight_version(), "B");
    EXPECT_EQ(r.response.bytes(), report.bytes);
    EXPECT_EQ(r.response.num_tensors(), static_cast<int64_t>(tensors.size()));
  }
  for (auto& e : engines_) {
    std::string version;
    EXPECT_EQ(Checksums(e, &version), b);
    EXPECT_EQ(version, "B");
    EXPECT_EQ(e.service->commits(), 1);
  }
  ASSERT_OK(sender->DestroyGroup());
}

TEST_F(SenderTest, WrongShapeIsInvalidArgumentAndNothingChanges) {
  const std::vector<uint32_t> a = Checksums(engines_[0]);
  ASSERT_OK_AND_ASSIGN(auto sender, WeightSender::Connect(Options("g2")));
  ASSERT_OK_AND_ASSIGN(auto ckpt, engine::SafetensorsCheckpoint::Open(dir_b_));
  ASSERT_OK_AND_ASSIGN(std::vector<SendTensor> tensors, TensorsFromCheckpoint(*ckpt));
  // Claim a smaller shape for one tensor (the data pointer still has enough bytes).
  tensors[0].spec.shape[0] -= 1;
  EXPECT_THAT(sender->Update(tensors, "bad", false, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(tensors[0].spec.name)));
  for (auto& e : engines_) {
    EXPECT_EQ(Checksums(e), a);
    EXPECT_EQ(e.service->commits(), 0);
  }
  // The group still works.
  tensors[0].spec.shape[0] += 1;
  ASSERT_OK(sender->Update(tensors, "B", false, nullptr).status());
  EXPECT_EQ(Checksums(engines_[1]), Checksums(reference_b_));
}

TEST_F(SenderTest, DuplicateGroupNameIsAlreadyExists) {
  ASSERT_OK_AND_ASSIGN(auto sender, WeightSender::Connect(Options("dup")));
  WeightSenderOptions o = Options("dup");
  o.init_timeout = absl::Seconds(1);
  EXPECT_THAT(WeightSender::Connect(o),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("\"dup\"")));
  ASSERT_OK(sender->DestroyGroup());
  // Destroying again: the engines no longer know it.
  EXPECT_THAT(sender->DestroyGroup(), StatusIs(absl::StatusCode::kNotFound));
  ASSERT_OK_AND_ASSIGN(auto again, WeightSender::Connect(Options("dup")));
}

TEST_F(SenderTest, TensorStreamAndDiskShareTheCommitPath) {
  ServedEngine& e = engines_[0];
  ASSERT_OK_AND_ASSIGN(auto ckpt, engine::SafetensorsCheckpoint::Open(dir_b_));
  auto stream = [&](bool skip_one_chunk, v1::UpdateWeightsResponse* resp) {
    grpc::ClientContext ctx;
    auto writer = e.stub->UpdateWeightsFromTensor(&ctx, resp);
    bool skipped = false;
    for (const auto& [name, view] : ckpt->tensors()) {
      // Three uneven chunks per tensor, last first.
      const size_t cuts[] = {0, view->bytes / 3 + 1, view->bytes / 2 + 3, view->bytes};
      for (int c = 2; c >= 0; --c) {
        if (skip_one_chunk && !skipped && c == 1) {
          skipped = true;
          continue;
        }
        v1::WeightChunk chunk;
        v1::TensorChunk* t = chunk.mutable_tensor();
        t->set_name(name);
        t->set_dtype(std::string(WireDtypeName(view->dtype)));
        for (int64_t d : view->shape) t->mutable_shape()->add_dims(d);
        t->set_offset_bytes(cuts[c]);
        t->set_data(view->data + cuts[c], cuts[c + 1] - cuts[c]);
        EXPECT_TRUE(writer->Write(chunk));
      }
    }
    v1::WeightChunk commit;
    commit.mutable_commit()->set_weight_version("B-stream");
    EXPECT_TRUE(writer->Write(commit));
    writer->WritesDone();
    return FromGrpcStatus(writer->Finish());
  };
  const std::vector<uint32_t> a = Checksums(e);
  v1::UpdateWeightsResponse resp;
  EXPECT_THAT(stream(true, &resp), StatusIs(absl::StatusCode::kInvalidArgument,
                                            HasSubstr("bytes missing")));
  EXPECT_EQ(Checksums(e), a);
  ASSERT_OK(stream(false, &resp));
  std::string version;
  EXPECT_EQ(Checksums(e, &version), Checksums(reference_b_));
  EXPECT_EQ(version, "B-stream");

  // Disk: back to A.
  grpc::ClientContext ctx;
  v1::UpdateWeightsFromDiskRequest disk;
  disk.set_model_path(dir_a_);
  disk.set_weight_version("A-disk");
  ASSERT_TRUE(e.stub->UpdateWeightsFromDisk(&ctx, disk, &resp).ok());
  EXPECT_EQ(Checksums(e, &version), a);
  EXPECT_EQ(version, "A-disk");
  grpc::ClientContext ctx2;
  disk.set_model_path(dir_a_ + "/nope");
  EXPECT_FALSE(e.stub->UpdateWeightsFromDisk(&ctx2, disk, &resp).ok());
}

TEST_F(SenderTest, CliRunUpdatesAndDestroysTheGroup) {
  SenderCliOptions o;
  o.sender = Options("cli");
  o.checkpoint = dir_b_;
  o.weight_version = "B-cli";
  ASSERT_OK(RunWeightSender(o));
  std::string version;
  EXPECT_EQ(Checksums(engines_[1], &version), Checksums(reference_b_));
  EXPECT_EQ(version, "B-cli");
  // destroy_group_after: the name is free again.
  ASSERT_OK_AND_ASSIGN(auto again, WeightSender::Connect(Options("cli")));
  o.checkpoint = dir_b_ + "/missing";
  EXPECT_THAT(RunWeightSender(o), StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace weight_sync
}  // namespace colo
