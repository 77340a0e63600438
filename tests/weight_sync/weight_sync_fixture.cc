#include "tests/weight_sync/weight_sync_fixture.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "weight_sync/sender.h"
#include "weight_sync/tcp_store.h"
#include "weight_sync/tensor_spec.h"

namespace colo::test_util {
namespace {

constexpr int kVocab = 256;
constexpr int kMaxNew = 12;

std::chrono::system_clock::time_point Deadline(absl::Duration d) {
  return absl::ToChronoTime(absl::Now() + d);
}

absl::Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

}  // namespace

engine::TinyModelOptions CheckpointOptions(uint64_t seed) {
  engine::TinyModelOptions m;
  m.layers = 2;
  m.hidden = 64;
  m.heads = 4;
  m.kv_heads = 2;
  m.vocab = kVocab;
  m.max_position = 2048;
  m.seed = seed;
  return m;
}

absl::StatusOr<Checkpoints> MakeCheckpoints() {
  Checkpoints c;
  absl::StatusOr<std::string> a = MakeTinyModel("ws_ckpt_a", CheckpointOptions(1));
  if (!a.ok()) return a.status();
  absl::StatusOr<std::string> b = MakeTinyModel("ws_ckpt_b", CheckpointOptions(2));
  if (!b.ok()) return b.status();
  c.a = *a;
  c.b = *b;
  return c;
}

absl::StatusOr<std::unique_ptr<TestEngine>> StartEngine(const std::string& model_dir,
                                                        const std::string& version) {
  return TestEngine::Start(model_dir, {"--kv_cache_bytes=8000000", "--page_size=8",
                                       "--cpu_threads=1",
                                       absl::StrCat("--weight_version=", version)});
}

absl::StatusOr<Outputs> GreedyOutputs(TestEngine& engine) {
  Outputs out;
  for (int p = 0; p < 3; ++p) {
    GenerateResult r = engine.Generate(GreedyRequest(Prompt(100 + p, 7 + 3 * p, kVocab), kMaxNew),
                                       absl::Seconds(60));
    if (!r.status.ok()) {
      return absl::Status(static_cast<absl::StatusCode>(r.status.error_code()),
                          absl::StrCat("Generate on ", engine.address(), ": ",
                                       r.status.error_message()));
    }
    out.tokens.push_back(r.tokens);
    out.versions.push_back(r.weight_version);
  }
  return out;
}

absl::StatusOr<Checksums> WeightChecksums(TestEngine& engine) {
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(absl::Seconds(60)));
  v1::GetWeightChecksumsResponse resp;
  absl::Status s = FromGrpc(engine.stub().GetWeightChecksums(&ctx, {}, &resp));
  if (!s.ok()) return s;
  Checksums c;
  for (const v1::WeightChecksum& w : resp.checksums()) c.crc[w.name()] = w.crc32c();
  c.weight_version = resp.weight_version();
  return c;
}

absl::StatusOr<v1::InitWeightsUpdateGroupResponse> InitGroup(
    TestEngine& engine, const v1::InitWeightsUpdateGroupRequest& request,
    absl::Duration timeout) {
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(timeout));
  v1::InitWeightsUpdateGroupResponse resp;
  absl::Status s = FromGrpc(engine.stub().InitWeightsUpdateGroup(&ctx, request, &resp));
  if (!s.ok()) return s;
  return resp;
}

absl::Status DestroyGroup(TestEngine& engine, const std::string& group_name) {
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(absl::Seconds(30)));
  v1::DestroyWeightsUpdateGroupRequest req;
  req.set_group_name(group_name);
  v1::DestroyWeightsUpdateGroupResponse resp;
  return FromGrpc(engine.stub().DestroyWeightsUpdateGroup(&ctx, req, &resp));
}

absl::StatusOr<v1::ListWeightsUpdateGroupsResponse> ListGroups(TestEngine& engine) {
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(absl::Seconds(30)));
  v1::ListWeightsUpdateGroupsResponse resp;
  absl::Status st = FromGrpc(
      engine.stub().ListWeightsUpdateGroups(&ctx, v1::ListWeightsUpdateGroupsRequest(), &resp));
  if (!st.ok()) return st;
  return resp;
}

absl::Status WaitGroupGone(TestEngine& engine, const std::string& group_name,
                           absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::string last = "unknown";
  while (absl::Now() < deadline) {
    absl::StatusOr<v1::ListWeightsUpdateGroupsResponse> list = ListGroups(engine);
    if (!list.ok()) return list.status();
    bool present = false;
    for (const v1::WeightsUpdateGroupInfo& g : list->groups()) {
      if (g.group_name() == group_name) {
        present = true;
        last = g.state();
      }
    }
    if (!present) return absl::OkStatus();
    absl::SleepFor(absl::Milliseconds(50));  // bounded by the deadline
  }
  return absl::DeadlineExceededError(absl::StrCat("group \"", group_name,
                                                  "\" is still listed (state ", last, ")"));
}

absl::StatusOr<v1::UpdateWeightsResponse> UpdateFromDistributed(
    TestEngine& engine, const v1::UpdateWeightsFromDistributedRequest& request,
    absl::Duration timeout) {
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(timeout));
  v1::UpdateWeightsResponse resp;
  absl::Status s = FromGrpc(engine.stub().UpdateWeightsFromDistributed(&ctx, request, &resp));
  if (!s.ok()) return s;
  return resp;
}

absl::StatusOr<v1::UpdateWeightsResponse> UpdateFromDisk(TestEngine& engine,
                                                         const std::string& model_path,
                                                         const std::string& version) {
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(absl::Seconds(60)));
  v1::UpdateWeightsFromDiskRequest req;
  req.set_model_path(model_path);
  req.set_weight_version(version);
  req.set_flush_cache(true);
  v1::UpdateWeightsResponse resp;
  absl::Status s = FromGrpc(engine.stub().UpdateWeightsFromDisk(&ctx, req, &resp));
  if (!s.ok()) return s;
  return resp;
}

absl::StatusOr<v1::UpdateWeightsResponse> UpdateFromTensor(
    TestEngine& engine, const std::vector<v1::WeightChunk>& chunks) {
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(absl::Seconds(60)));
  v1::UpdateWeightsResponse resp;
  std::unique_ptr<grpc::ClientWriter<v1::WeightChunk>> writer =
      engine.stub().UpdateWeightsFromTensor(&ctx, &resp);
  for (const v1::WeightChunk& c : chunks) {
    // A failed Write means the server already answered; Finish says why.
    if (!writer->Write(c)) break;
  }
  writer->WritesDone();
  absl::Status s = FromGrpc(writer->Finish());
  if (!s.ok()) return s;
  return resp;
}

std::vector<v1::WeightChunk> CheckpointChunks(const engine::SafetensorsCheckpoint& checkpoint,
                                              size_t chunk_bytes, const std::string& version) {
  std::vector<v1::WeightChunk> out;
  for (const auto& [name, view] : checkpoint.tensors()) {
    for (size_t off = 0; off < view->bytes; off += chunk_bytes) {
      v1::WeightChunk c;
      v1::TensorChunk* t = c.mutable_tensor();
      t->set_name(name);
      t->set_dtype(std::string(weight_sync::WireDtypeName(view->dtype)));
      for (int64_t d : view->shape) t->mutable_shape()->add_dims(d);
      t->set_offset_bytes(static_cast<int64_t>(off));
      t->set_data(reinterpret_cast<const char*>(view->data) + off,
                  std::min(chunk_bytes, view->bytes - off));
      out.push_back(std::move(c));
    }
  }
  v1::WeightChunk commit;
  commit.mutable_commit()->set_weight_version(version);
  commit.mutable_commit()->set_flush_cache(true);
  out.push_back(std::move(commit));
  return out;
}

v1::UpdateWeightsFromDistributedRequest DistributedRequest(
    const std::vector<weight_sync::SendTensor>& tensors, const std::string& group_name,
    const std::string& version, int64_t bucket_bytes) {
  v1::UpdateWeightsFromDistributedRequest req;
  for (const weight_sync::SendTensor& t : tensors) {
    req.add_names(t.spec.name);
    req.add_dtypes(std::string(weight_sync::WireDtypeName(t.spec.dtype)));
    v1::TensorShape* shape = req.add_shapes();
    for (int64_t d : t.spec.shape) shape->add_dims(d);
  }
  req.set_group_name(group_name);
  req.set_flush_cache(true);
  req.set_weight_version(version);
  req.set_bucket_bytes(bucket_bytes);
  return req;
}

v1::InitWeightsUpdateGroupRequest GroupRequest(const std::string& group_name, int port, int rank,
                                               int world_size, absl::Duration init_timeout,
                                               absl::Duration transfer_timeout) {
  v1::InitWeightsUpdateGroupRequest req;
  req.set_master_address("127.0.0.1");
  req.set_master_port(port);
  req.set_rank_offset(rank);
  req.set_world_size(world_size);
  req.set_group_name(group_name);
  req.set_backend("gloo");
  req.set_init_timeout_ms(absl::ToInt64Milliseconds(init_timeout));
  req.set_transfer_timeout_ms(absl::ToInt64Milliseconds(transfer_timeout));
  return req;
}

absl::StatusOr<std::unique_ptr<weight_sync::Transport>> FormGroup(
    const std::vector<TestEngine*>& engines, const std::string& group_name,
    absl::Duration init_timeout, absl::Duration transfer_timeout) {
  const int world = 1 + static_cast<int>(engines.size());
  weight_sync::TcpStoreServer::Options so;
  so.group_name = group_name;
  so.world_size = world;
  absl::StatusOr<std::unique_ptr<weight_sync::TcpStoreServer>> server =
      weight_sync::TcpStoreServer::Start(so);
  if (!server.ok()) return server.status();
  const int port = (*server)->port();
  std::vector<absl::Status> init(engines.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < engines.size(); ++i) {
    threads.emplace_back([&, i] {
      const int rank = 1 + static_cast<int>(i);
      absl::StatusOr<v1::InitWeightsUpdateGroupResponse> r =
          InitGroup(*engines[i],
                    GroupRequest(group_name, port, rank, world, init_timeout, transfer_timeout),
                    init_timeout + absl::Seconds(30));
      init[i] = r.status();
      if (r.ok() && r->rank() != rank) {
        init[i] = absl::InternalError(absl::StrCat("reported rank ", r->rank(), ", want ", rank));
      }
    });
  }
  weight_sync::TransportOptions to;
  to.group_name = group_name;
  to.world_size = world;
  to.rank = 0;
  to.master_port = port;
  to.init_timeout = init_timeout;
  to.transfer_timeout = transfer_timeout;
  absl::StatusOr<std::unique_ptr<weight_sync::Transport>> t =
      weight_sync::CreateTransport(to, std::move(server).value());
  for (std::thread& th : threads) th.join();
  std::vector<std::string> errors;
  for (size_t i = 0; i < engines.size(); ++i) {
    if (!init[i].ok()) {
      errors.push_back(absl::StrCat("engine ", engines[i]->address(), ": ", init[i].ToString()));
    }
  }
  if (!t.ok()) errors.push_back(absl::StrCat("rank 0: ", t.status().ToString()));
  if (!errors.empty()) {
    return absl::InternalError(absl::StrCat("FormGroup: ", absl::StrJoin(errors, "; ")));
  }
  return std::move(t).value();
}

std::vector<absl::Status> TryAllUpdates(TestEngine& engine, const std::string& dir,
                                        const engine::SafetensorsCheckpoint& checkpoint,
                                        const std::string& version) {
  std::vector<absl::Status> out;
  out.push_back(UpdateFromDisk(engine, dir, version).status());
  out.push_back(UpdateFromTensor(engine, CheckpointChunks(checkpoint, 4096, version)).status());
  absl::StatusOr<std::vector<weight_sync::SendTensor>> tensors =
      weight_sync::TensorsFromCheckpoint(checkpoint);
  out.push_back(tensors.ok() ? UpdateFromDistributed(
                                   engine, DistributedRequest(*tensors, "no_such_group", version, 0))
                                   .status()
                             : tensors.status());
  return out;
}

}  // namespace colo::test_util
