// The receiver and the broadcast sender over real Gloo groups on 127.0.0.1,
// one thread per rank, each engine rank with its own ModelWeights + sink.
#include "weight_sync/receiver.h"

#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "engine/model/model_config.h"
#include "engine/model/test_env.h"
#include "engine/model/tiny_model.h"
#include "engine/model/weight_update_sink.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"
#include "weight_sync/broadcast_sender.h"
#include "weight_sync/bucket_plan.h"
#include "weight_sync/tcp_store.h"
#include "weight_sync/update_protocol.h"

namespace colo {
namespace weight_sync {
namespace {

using ::testing::HasSubstr;

constexpr size_t kBucketBytes = 4096;

struct Engine {
  engine::ModelTestEnv env;
  std::unique_ptr<engine::ModelWeights> weights;
  std::unique_ptr<engine::ModelWeightUpdateSink> sink;
  std::unique_ptr<Transport> transport;

  Engine() {
    engine::TinyModelOptions o;
    o.layers = 2;
    o.hidden = 32;
    o.vocab = 64;
    weights = engine::ModelWeights::Allocate(engine::TinyModelConfig(o).value(),
                                             env.pool.get())
                  .value();
    sink = engine::ModelWeightUpdateSink::Create({weights.get(), env.allocator.get()})
               .value();
  }
  absl::StatusOr<UpdateTimings> Receive(const std::vector<TensorSpec>& specs,
                                        int* commits) {
    ReceiverOptions o;
    o.transport = transport.get();
    o.sink = sink.get();
    o.staging = env.allocator.get();
    o.run_commit = [commits](const std::function<absl::Status()>& fn) {
      ++*commits;
      return fn();
    };
    return ReceiveUpdate(o, specs, kBucketBytes);
  }
  // The sum of every weight (a cheap fingerprint).
  double Sum() const {
    double s = 0;
    for (const auto& w : weights->List()) {
      for (int64_t i = 0; i < w.NumElements(); ++i) s += w.data[i];
    }
    return s;
  }
};

// The tensors of a new checkpoint: bf16 for 2-D tensors, f32 otherwise.
struct Update {
  std::vector<TensorSpec> specs;
  std::vector<std::vector<char>> data;
  std::vector<SendTensor> Tensors() const {
    std::vector<SendTensor> out;
    for (size_t i = 0; i < specs.size(); ++i) out.push_back({specs[i], data[i].data()});
    return out;
  }
};

Update MakeUpdate(const engine::ModelWeights& w, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1, 1);
  Update u;
  for (const auto& info : w.List()) {
    TensorSpec s;
    s.name = info.name;
    s.shape = info.shape;
    s.dtype = info.shape.size() == 2 ? TensorDtype::kBF16 : TensorDtype::kF32;
    std::vector<char> bytes(s.Bytes());
    for (int64_t i = 0; i < s.NumElements(); ++i) {
      const float v = dist(rng);
      if (s.dtype == TensorDtype::kBF16) {
        const uint16_t b = engine::FloatToBf16(v);
        std::memcpy(bytes.data() + 2 * i, &b, 2);
      } else {
        std::memcpy(bytes.data() + 4 * i, &v, 4);
      }
    }
    u.specs.push_back(s);
    u.data.push_back(std::move(bytes));
  }
  return u;
}

// Expects the engine's weights to hold exactly `u` converted to float32.
void ExpectHolds(const Engine& e, const Update& u) {
  for (size_t i = 0; i < u.specs.size(); ++i) {
    const auto info = e.weights->Find(u.specs[i].name).value();
    std::vector<float> expected(info.NumElements());
    ASSERT_OK(engine::ConvertToFloat(u.specs[i].dtype, u.data[i].data(),
                                     info.NumElements(), expected.data()));
    ASSERT_EQ(std::memcmp(expected.data(), info.data, expected.size() * 4), 0)
        << u.specs[i].name;
  }
}

// A group: rank 0 (sender) + `engines` engine ranks, formed on threads.
std::unique_ptr<Transport> FormGroup(std::vector<Engine>& engines,
                                     absl::Duration transfer_timeout) {
  const int world = 1 + engines.size();
  TcpStoreServer::Options so;
  so.group_name = "g";
  so.world_size = world;
  auto server = std::move(TcpStoreServer::Start(so)).value();
  const int port = server->port();
  auto options = [&](int rank) {
    TransportOptions o;
    o.group_name = "g";
    o.master_port = port;
    o.rank = rank;
    o.world_size = world;
    o.init_timeout = absl::Seconds(20);
    o.transfer_timeout = transfer_timeout;
    return o;
  };
  std::vector<std::thread> threads;
  for (size_t i = 0; i < engines.size(); ++i) {
    threads.emplace_back([&, i] {
      engines[i].transport = std::move(CreateTransport(options(1 + i))).value();
    });
  }
  auto sender = std::move(CreateTransport(options(0), std::move(server))).value();
  for (auto& t : threads) t.join();
  return sender;
}

TEST(ReceiverTest, TwoEnginesCommitTheSameUpdate) {
  std::vector<Engine> engines(2);
  auto sender = FormGroup(engines, absl::Seconds(20));
  const Update u = MakeUpdate(*engines[0].weights, 1);
  std::vector<absl::StatusOr<UpdateTimings>> results(2, absl::UnknownError(""));
  int commits[2] = {0, 0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] { results[i] = engines[i].Receive(u.specs, &commits[i]); });
  }
  SendOptions so;
  so.transport = sender.get();
  so.bucket_bytes = kBucketBytes;
  absl::StatusOr<SendReport> sent = SendUpdate(so, u.Tensors());
  for (auto& t : threads) t.join();
  ASSERT_OK(sent.status());
  EXPECT_GT(sent->buckets, 10);
  for (int i = 0; i < 2; ++i) {
    ASSERT_OK(results[i].status());
    EXPECT_EQ(commits[i], 1);
    EXPECT_EQ(results[i]->tensors, static_cast<int64_t>(u.specs.size()));
    EXPECT_EQ(results[i]->bytes, sent->bytes);
    ExpectHolds(engines[i], u);
    EXPECT_EQ(engines[i].env.allocator->Stats().allocated_bytes, 0u);
  }
}

TEST(ReceiverTest, BadSpecsRejectedBeforeTransferAndGroupStaysUsable) {
  std::vector<Engine> engines(2);
  auto sender = FormGroup(engines, absl::Seconds(20));
  const double before = engines[0].Sum();
  Update bad = MakeUpdate(*engines[0].weights, 2);
  bad.specs[0].shape[0] += 1;  // wrong shape
  bad.data[0].resize(bad.specs[0].Bytes());
  bad.specs[1].name = "model.no_such_tensor";  // unknown name
  bad.specs[2].dtype = TensorDtype::kOther;     // wrong dtype
  // The sender cannot plan a kOther tensor; send it as f32 bytes instead so
  // the engines see the bad dtype only in their own request.
  std::vector<TensorSpec> engine_specs = bad.specs;
  bad.specs[2].dtype = TensorDtype::kF32;
  bad.data[2].resize(bad.specs[2].Bytes());

  std::vector<absl::StatusOr<UpdateTimings>> results(2, absl::UnknownError(""));
  int commits[2] = {0, 0};
  std::vector<std::thread> threads;
  // Engine 0 gets the bad specs; engine 1 the sender's (valid for it except
  // the unknown name and shape, so it rejects too).
  threads.emplace_back([&] { results[0] = engines[0].Receive(engine_specs, &commits[0]); });
  threads.emplace_back([&] { results[1] = engines[1].Receive(bad.specs, &commits[1]); });
  SendOptions so;
  so.transport = sender.get();
  so.bucket_bytes = kBucketBytes;
  absl::StatusOr<SendReport> sent = SendUpdate(so, bad.Tensors());
  for (auto& t : threads) t.join();
  EXPECT_THAT(sent, StatusIs(absl::StatusCode::kAborted, HasSubstr("rejected")));
  EXPECT_THAT(results[0], StatusIs(absl::StatusCode::kInvalidArgument,
                                   ::testing::AllOf(HasSubstr("no_such_tensor"),
                                                    HasSubstr("shape"),
                                                    HasSubstr("unsupported dtype"))));
  EXPECT_THAT(results[1], StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(commits[0] + commits[1], 0);
  EXPECT_EQ(engines[0].Sum(), before);
  EXPECT_FALSE(sender->broken());

  // Same group, a good update now.
  const Update good = MakeUpdate(*engines[0].weights, 3);
  threads.clear();
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] { results[i] = engines[i].Receive(good.specs, &commits[i]); });
  }
  sent = SendUpdate(so, good.Tensors());
  for (auto& t : threads) t.join();
  ASSERT_OK(sent.status());
  for (int i = 0; i < 2; ++i) {
    ASSERT_OK(results[i].status());
    ExpectHolds(engines[i], good);
  }
}

TEST(ReceiverTest, PlanMismatchIsRejected) {
  std::vector<Engine> engines(1);
  auto sender = FormGroup(engines, absl::Seconds(20));
  Update u = MakeUpdate(*engines[0].weights, 4);
  absl::StatusOr<UpdateTimings> result = absl::UnknownError("");
  int commits = 0;
  std::thread th([&] { result = engines[0].Receive(u.specs, &commits); });
  SendOptions so;
  so.transport = sender.get();
  so.bucket_bytes = kBucketBytes * 2;  // engine plans with kBucketBytes
  EXPECT_THAT(SendUpdate(so, u.Tensors()), StatusIs(absl::StatusCode::kAborted));
  th.join();
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bucket plan")));
}

TEST(ReceiverTest, SenderDyingMidBroadcastAbortsAndANewGroupWorks) {
  std::vector<Engine> engines(2);
  const absl::Duration timeout = absl::Seconds(3);
  auto sender = FormGroup(engines, timeout);
  const double before = engines[0].Sum();
  const Update u = MakeUpdate(*engines[0].weights, 5);
  std::vector<absl::StatusOr<UpdateTimings>> results(2, absl::UnknownError(""));
  int commits[2] = {0, 0};
  std::vector<std::thread> threads;
  const absl::Time start = absl::Now();
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] { results[i] = engines[i].Receive(u.specs, &commits[i]); });
  }
  // A sender that sends the header, votes, sends two transfers and dies.
  ASSERT_OK_AND_ASSIGN(BucketPlan plan, MakeBucketPlan(u.specs, kBucketBytes));
  const std::vector<Transfer> transfers = PlanTransfers(plan, /*whole_buckets=*/false);
  ASSERT_GT(transfers.size(), 2u);
  UpdateHeader h;
  h.plan_hash = plan.hash;
  h.num_buckets = plan.buckets.size();
  h.tensor_bytes = plan.tensor_bytes;
  ASSERT_OK(sender->Broadcast(&h, sizeof(h), 0));
  ASSERT_THAT(sender->AllReduceMin(1), ::testing::Eq(absl::StatusOr<int32_t>(1)));
  std::vector<char> junk(kBucketBytes, 7);
  ASSERT_OK(sender->Broadcast(junk.data(), transfers[0].bytes, 0));
  ASSERT_OK(sender->Broadcast(junk.data(), transfers[1].bytes, 0));
  sender.reset();  // the trainer process is gone
  for (auto& t : threads) t.join();
  const absl::Duration took = absl::Now() - start;
  for (int i = 0; i < 2; ++i) {
    EXPECT_THAT(results[i], StatusIs(absl::StatusCode::kAborted, HasSubstr("transfer failed")));
    EXPECT_EQ(commits[i], 0);
    EXPECT_TRUE(engines[i].transport->broken());
    EXPECT_EQ(engines[i].env.allocator->Stats().allocated_bytes, 0u);
  }
  EXPECT_LT(took, timeout + absl::Seconds(2));
  EXPECT_EQ(engines[0].Sum(), before);  // old weights intact

  // Destroy the broken group, form a new one, update.
  for (auto& e : engines) e.transport.reset();
  sender = FormGroup(engines, timeout);
  threads.clear();
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] { results[i] = engines[i].Receive(u.specs, &commits[i]); });
  }
  SendOptions so;
  so.transport = sender.get();
  so.bucket_bytes = kBucketBytes;
  absl::StatusOr<SendReport> sent = SendUpdate(so, u.Tensors());
  for (auto& t : threads) t.join();
  ASSERT_OK(sent.status());
  for (int i = 0; i < 2; ++i) {
    ASSERT_OK(results[i].status());
    ExpectHolds(engines[i], u);
  }
}

}  // namespace
}  // namespace weight_sync
}  // namespace colo
