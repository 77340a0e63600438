#include "weight_sync/sender.h"

#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "proto/status/grpc_status.h"
#include "weight_sync/tcp_store.h"

namespace colo {
namespace weight_sync {
namespace {

std::chrono::system_clock::time_point RpcDeadline(absl::Duration d) {
  return absl::ToChronoTime(absl::Now() + d);
}

// Combines per-engine errors: INVALID_ARGUMENT wins (it is the cause the
// user must fix), else the first error; all are listed.
absl::Status Combine(const std::vector<std::string>& engines,
                     const std::vector<absl::Status>& statuses,
                     const absl::Status& local, const char* what) {
  std::vector<std::string> parts;
  absl::StatusCode code = absl::StatusCode::kOk;
  for (size_t i = 0; i < statuses.size(); ++i) {
    if (statuses[i].ok()) continue;
    parts.push_back(absl::StrCat("engine ", engines[i], ": ", statuses[i].ToString()));
    if (code == absl::StatusCode::kOk ||
        statuses[i].code() == absl::StatusCode::kInvalidArgument) {
      code = statuses[i].code();
    }
  }
  if (!local.ok()) {
    parts.push_back(absl::StrCat("rank 0: ", local.ToString()));
    if (code == absl::StatusCode::kOk) code = local.code();
  }
  if (parts.empty()) return absl::OkStatus();
  return absl::Status(code, absl::StrCat(what, " failed: ", absl::StrJoin(parts, "; ")));
}

}  // namespace

absl::StatusOr<std::unique_ptr<WeightSender>> WeightSender::Connect(
    const WeightSenderOptions& options) {
  if (options.engines.empty()) {
    return absl::InvalidArgumentError("no engines given");
  }
  if (!options.engine_ranks.empty() && options.engine_ranks.size() != options.engines.size()) {
    return absl::InvalidArgumentError(absl::StrCat("engine_ranks has ", options.engine_ranks.size(),
                                                   " entries for ", options.engines.size(),
                                                   " engines"));
  }
  std::vector<int> offsets;  // rank_offset of each engine
  int world = 1;
  for (size_t i = 0; i < options.engines.size(); ++i) {
    const int ranks = options.engine_ranks.empty() ? 1 : options.engine_ranks[i];
    if (ranks < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("engine_ranks[", i, "] must be >= 1, got ", ranks));
    }
    offsets.push_back(world);
    world += ranks;
  }
  TcpStoreServer::Options so;
  so.bind_address = options.master_address;
  so.port = options.master_port;
  so.group_name = options.group_name;
  so.world_size = world;
  absl::StatusOr<std::unique_ptr<TcpStoreServer>> server = TcpStoreServer::Start(so);
  if (!server.ok()) return server.status();
  const int port = (*server)->port();

  std::vector<std::unique_ptr<v1::RolloutEngine::Stub>> stubs;
  for (const std::string& e : options.engines) {
    stubs.push_back(v1::RolloutEngine::NewStub(
        grpc::CreateChannel(e, grpc::InsecureChannelCredentials())));
  }
  std::vector<absl::Status> rpc(options.engines.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < stubs.size(); ++i) {
    threads.emplace_back([&, i] {
      v1::InitWeightsUpdateGroupRequest req;
      req.set_master_address(options.master_address);
      req.set_master_port(port);
      req.set_rank_offset(offsets[i]);
      req.set_world_size(world);
      req.set_group_name(options.group_name);
      req.set_backend(options.backend);
      req.set_init_timeout_ms(absl::ToInt64Milliseconds(options.init_timeout));
      req.set_transfer_timeout_ms(absl::ToInt64Milliseconds(options.transfer_timeout));
      v1::InitWeightsUpdateGroupResponse resp;
      grpc::ClientContext ctx;
      ctx.set_deadline(RpcDeadline(options.init_timeout + options.rpc_slack));
      rpc[i] = FromGrpcStatus(stubs[i]->InitWeightsUpdateGroup(&ctx, req, &resp));
      if (rpc[i].ok() && resp.rank() != offsets[i]) {
        rpc[i] = absl::InternalError(absl::StrCat("reported rank ", resp.rank(),
                                                  ", expected ", offsets[i]));
      }
    });
  }
  TransportOptions to;
  to.backend = options.backend;
  to.group_name = options.group_name;
  to.master_address = options.master_address;
  to.master_port = port;
  to.rank = 0;
  to.world_size = world;
  to.init_timeout = options.init_timeout;
  to.transfer_timeout = options.transfer_timeout;
  absl::StatusOr<std::unique_ptr<Transport>> transport =
      CreateTransport(to, std::move(server).value());
  for (auto& t : threads) t.join();
  absl::Status st = Combine(options.engines, rpc, transport.status(),
                            "InitWeightsUpdateGroup");
  if (!st.ok()) return st;
  return std::unique_ptr<WeightSender>(
      new WeightSender(options, std::move(stubs), std::move(transport).value()));
}

WeightSender::~WeightSender() = default;

absl::StatusOr<SendReport> WeightSender::Update(
    const std::vector<SendTensor>& tensors, const std::string& weight_version,
    bool flush_cache, std::vector<EngineUpdateResult>* results) {
  v1::UpdateWeightsFromDistributedRequest req;
  for (const SendTensor& t : tensors) {
    req.add_names(t.spec.name);
    req.add_dtypes(std::string(WireDtypeName(t.spec.dtype)));
    v1::TensorShape* shape = req.add_shapes();
    for (int64_t d : t.spec.shape) shape->add_dims(d);
  }
  req.set_group_name(options_.group_name);
  req.set_flush_cache(flush_cache);
  req.set_weight_version(weight_version);
  req.set_bucket_bytes(static_cast<int64_t>(options_.bucket_bytes));

  std::vector<absl::Status> rpc(stubs_.size());
  std::vector<v1::UpdateWeightsResponse> responses(stubs_.size());
  std::vector<std::thread> threads;
  // Deadline: the ready vote, every bucket and the commit vote each may take
  // up to the transfer timeout; be generous, the collectives bound the time.
  const absl::Duration rpc_timeout =
      options_.transfer_timeout * 3 + options_.rpc_slack;
  for (size_t i = 0; i < stubs_.size(); ++i) {
    threads.emplace_back([&, i] {
      grpc::ClientContext ctx;
      ctx.set_deadline(RpcDeadline(rpc_timeout));
      rpc[i] = FromGrpcStatus(
          stubs_[i]->UpdateWeightsFromDistributed(&ctx, req, &responses[i]));
    });
  }
  SendOptions so;
  so.transport = transport_.get();
  so.bucket_bytes = options_.bucket_bytes;
  so.after_bucket_for_testing = options_.after_bucket_for_testing;
  absl::StatusOr<SendReport> report = SendUpdate(so, tensors);
  for (auto& t : threads) t.join();
  absl::Status st = Combine(options_.engines, rpc, report.status(),
                            "UpdateWeightsFromDistributed");
  if (results != nullptr) {
    results->clear();
    for (size_t i = 0; i < stubs_.size(); ++i) {
      if (rpc[i].ok()) results->push_back({options_.engines[i], responses[i]});
    }
  }
  if (!st.ok()) return st;
  return report;
}

absl::Status WeightSender::DestroyGroup() {
  std::vector<absl::Status> rpc(stubs_.size());
  for (size_t i = 0; i < stubs_.size(); ++i) {
    v1::DestroyWeightsUpdateGroupRequest req;
    req.set_group_name(options_.group_name);
    v1::DestroyWeightsUpdateGroupResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(RpcDeadline(options_.rpc_slack));
    rpc[i] = FromGrpcStatus(stubs_[i]->DestroyWeightsUpdateGroup(&ctx, req, &resp));
  }
  transport_->Close();
  return Combine(options_.engines, rpc, absl::OkStatus(), "DestroyWeightsUpdateGroup");
}

absl::StatusOr<std::vector<SendTensor>> TensorsFromCheckpoint(
    const engine::SafetensorsCheckpoint& checkpoint) {
  std::vector<SendTensor> out;
  std::vector<std::string> bad;
  for (const auto& [name, view] : checkpoint.tensors()) {
    if (engine::TensorDtypeBytes(view->dtype) == 0) {
      bad.push_back(absl::StrCat("\"", name, "\" (", view->dtype_name, ")"));
      continue;
    }
    SendTensor t;
    t.spec.name = name;
    t.spec.dtype = view->dtype;
    t.spec.shape = view->shape;
    t.data = view->data;
    out.push_back(std::move(t));
  }
  if (!bad.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensors with dtypes the engines cannot take: ", absl::StrJoin(bad, ", ")));
  }
  return out;
}

}  // namespace weight_sync
}  // namespace colo
