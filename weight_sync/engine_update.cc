#include "weight_sync/engine_update.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/model/weight_checksums.h"
#include "engine/model/weight_update_sink.h"
#include "weight_sync/stream_update.h"
#include "weight_sync/torch_receiver.h"
#include "weight_sync/update_protocol.h"

namespace colo {
namespace weight_sync {
namespace {

int64_t MicrosSince(absl::Time start) {
  return absl::ToInt64Microseconds(absl::Now() - start);
}

absl::StatusOr<std::unique_ptr<UpdateSink>> MakeSink(const EngineUpdateEnv& env) {
  if (env.make_sink) return env.make_sink();
  engine::ModelWeightUpdateSink::Options o;
  o.weights = env.weights;
  o.allocator = env.allocator;
  o.check_finite = env.check_finite;
  absl::StatusOr<std::unique_ptr<engine::ModelWeightUpdateSink>> sink =
      engine::ModelWeightUpdateSink::Create(o);
  if (!sink.ok()) return sink.status();
  return std::unique_ptr<UpdateSink>(*std::move(sink));
}

absl::Status RunCommit(const EngineUpdateEnv& env, UpdateSink* sink) {
  std::function<absl::Status()> commit = [sink] { return sink->Commit(); };
  return env.run_commit ? env.run_commit(commit) : commit();
}

void FillTimings(const UpdateTimings& t, v1::UpdateWeightsResponse* r) {
  r->set_num_tensors(t.tensors);
  r->set_bytes(t.bytes);
  r->set_validate_us(t.validate_us);
  r->set_transfer_us(t.transfer_us);
  r->set_apply_us(t.apply_us);
  r->set_commit_us(t.commit_us);
}

// A request whose dtypes do not parse is rejected before the sink sees it;
// still list the other offenders (unknown names, wrong shapes) of the
// tensors whose dtype did parse, so one reply names every bad tensor.
absl::Status WithModelOffenders(const absl::Status& parse_error,
                                const std::vector<std::string>& names,
                                const std::vector<std::string>& dtypes,
                                const std::vector<std::vector<int64_t>>& shapes,
                                const UpdateSink& sink) {
  if (names.size() != dtypes.size() || names.size() != shapes.size()) return parse_error;
  std::vector<TensorSpec> parsed;
  for (size_t i = 0; i < names.size(); ++i) {
    absl::StatusOr<TensorDtype> dtype = ParseWireDtype(dtypes[i]);
    if (!dtype.ok()) continue;
    TensorSpec spec;
    spec.name = names[i];
    spec.dtype = *dtype;
    spec.shape = shapes[i];
    parsed.push_back(std::move(spec));
  }
  if (parsed.empty()) return parse_error;
  absl::Status more = sink.Validate(parsed);
  if (more.ok()) return parse_error;
  return absl::InvalidArgumentError(
      absl::StrCat(parse_error.message(), "; ", more.message()));
}

}  // namespace

absl::StatusOr<TransportOptions> TransportOptionsFromRequest(
    const v1::InitWeightsUpdateGroupRequest& request, const GroupDefaults& defaults) {
  if (request.rank_offset() < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rank_offset must be >= 1 (rank 0 is the trainer), got ",
        request.rank_offset()));
  }
  if (request.master_address().empty()) {
    return absl::InvalidArgumentError(
        "master_address is empty: give the address of the trainer's rank 0 (the host of its "
        "torch init_method, or colo's rendezvous)");
  }
  if (request.init_timeout_ms() < 0 || request.transfer_timeout_ms() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "init_timeout_ms and transfer_timeout_ms must be >= 0 (0 = the engine's default), got ",
        request.init_timeout_ms(), " and ", request.transfer_timeout_ms()));
  }
  TransportOptions o;
  o.backend = request.backend().empty() ? "nccl" : request.backend();
  o.group_name = request.group_name();
  o.master_address = request.master_address();
  o.master_port = request.master_port();
  o.rank = request.rank_offset() + defaults.local_rank;
  o.world_size = request.world_size();
  o.init_timeout = request.init_timeout_ms() > 0
                       ? absl::Milliseconds(request.init_timeout_ms())
                       : defaults.init_timeout;
  o.transfer_timeout = request.transfer_timeout_ms() > 0
                           ? absl::Milliseconds(request.transfer_timeout_ms())
                           : defaults.transfer_timeout;
  o.cuda_device = defaults.cuda_device;
  o.rendezvous = request.rendezvous().empty() ? "colo" : request.rendezvous();
  o.torch_group = request.torch_group().empty() ? "world" : request.torch_group();
  absl::Status st = ValidateTransportOptions(o);
  if (!st.ok()) return st;
  return o;
}

absl::StatusOr<v1::InitWeightsUpdateGroupResponse> InitGroup(
    GroupRegistry* registry, const v1::InitWeightsUpdateGroupRequest& request,
    const GroupDefaults& defaults) {
  absl::StatusOr<TransportOptions> o = TransportOptionsFromRequest(request, defaults);
  if (!o.ok()) return o.status();
  absl::StatusOr<std::shared_ptr<Transport>> t = registry->Create(*o);
  if (!t.ok()) return t.status();
  v1::InitWeightsUpdateGroupResponse response;
  response.set_rank((*t)->rank());
  response.set_detail((*t)->detail());
  return response;
}

absl::Status DestroyGroup(GroupRegistry* registry,
                          const v1::DestroyWeightsUpdateGroupRequest& request) {
  return registry->Destroy(request.group_name());
}

namespace {

// The update over a group: colo's protocol or a torch group's broadcasts.
absl::StatusOr<UpdateTimings> ReceiveOverGroup(
    Transport* t, const v1::UpdateWeightsFromDistributedRequest& request,
    const EngineUpdateEnv& env, const absl::Status& rejection) {
  std::vector<std::string> names(request.names().begin(), request.names().end());
  std::vector<std::string> dtypes(request.dtypes().begin(), request.dtypes().end());
  std::vector<std::vector<int64_t>> shapes;
  for (const v1::TensorShape& s : request.shapes()) {
    shapes.emplace_back(s.dims().begin(), s.dims().end());
  }
  absl::StatusOr<std::vector<TensorSpec>> specs = SpecsFromArrays(names, dtypes, shapes);
  absl::StatusOr<std::unique_ptr<UpdateSink>> sink = MakeSink(env);
  if (!sink.ok()) return sink.status();
  if (t->rendezvous() == "torch") {
    if (!specs.ok()) {
      // The sizes of the trainer's broadcasts are unknown: the group cannot
      // be drained and is closed (the caller destroys it).
      t->Close();
      return absl::Status(specs.status().code(),
                          absl::StrCat(WithModelOffenders(specs.status(), names, dtypes,
                                                          shapes, **sink)
                                           .message(),
                                       " (the byte sizes of the trainer's broadcasts are "
                                       "unknown, so the group could not be drained)"));
    }
    TorchReceiveOptions ro;
    ro.transport = t;
    ro.sink = sink->get();
    ro.run_commit = env.run_commit;
    ro.rejection = rejection;
    ro.device_staging = env.device_staging;
    ro.device_backend = env.device_backend;
    return ReceiveTorchUpdate(ro, *specs);
  }
  if (!rejection.ok()) return rejection;
  const bool on_device = t->memory_space() == MemorySpace::kDevice;
  if (on_device && (env.device_staging == nullptr || env.device_backend == nullptr)) {
    // InitWeightsUpdateGroup refuses such groups on engines without a GPU;
    // this guards callers that build the environment themselves.
    return absl::FailedPreconditionError(absl::StrCat(
        "group '", request.group_name(),
        "' transfers in device memory (nccl) but this engine has no device staging; "
        "use a gloo group or run the engine with --device=cuda"));
  }
  ReceiverOptions ro;
  ro.transport = t;
  ro.sink = sink->get();
  ro.staging = on_device ? env.device_staging : env.allocator;
  ro.device_backend = env.device_backend;
  ro.run_commit = env.run_commit;
  const size_t bucket_bytes = request.bucket_bytes() > 0
                                  ? static_cast<size_t>(request.bucket_bytes())
                                  : kDefaultBucketBytes;
  // A malformed request still has to take part in the ready vote so the
  // sender and the other engines do not wait for it: pass an empty list,
  // which the receiver rejects in the vote, and return the parse error.
  absl::StatusOr<UpdateTimings> timings = ReceiveUpdate(
      ro, specs.ok() ? *specs : std::vector<TensorSpec>{}, bucket_bytes);
  if (!specs.ok()) return WithModelOffenders(specs.status(), names, dtypes, shapes, **sink);
  return timings;
}

}  // namespace

absl::StatusOr<v1::UpdateWeightsResponse> UpdateFromDistributed(
    GroupRegistry* registry, const v1::UpdateWeightsFromDistributedRequest& request,
    const EngineUpdateEnv& env, const absl::Status& rejection) {
  const std::string& name = request.group_name();
  absl::StatusOr<std::shared_ptr<Transport>> t =
      registry->Acquire(name, "UpdateWeightsFromDistributed");
  if (!t.ok()) return rejection.ok() ? t.status() : rejection;
  absl::StatusOr<UpdateTimings> timings = ReceiveOverGroup(t->get(), request, env, rejection);
  registry->Release(name, t->get(), timings.status());
  if (!timings.ok()) {
    if ((*t)->broken() && registry->DestroyIfCurrent(name, t->get())) {
      return absl::Status(
          timings.status().code(),
          absl::StrCat(timings.status().message(), "; the engine destroyed weight-update group \"",
                       name, "\" (a transfer failed): InitWeightsUpdateGroup with the same "
                       "name forms it again"));
    }
    return timings.status();
  }
  v1::UpdateWeightsResponse response;
  response.set_weight_version(request.weight_version());
  FillTimings(*timings, &response);
  return response;
}

v1::ListWeightsUpdateGroupsResponse ListGroups(const GroupRegistry& registry) {
  v1::ListWeightsUpdateGroupsResponse response;
  for (const GroupInfo& g : registry.List()) {
    v1::WeightsUpdateGroupInfo* out = response.add_groups();
    out->set_group_name(g.options.group_name);
    out->set_backend(g.options.backend);
    out->set_rendezvous(g.options.rendezvous);
    if (g.options.rendezvous == "torch") out->set_torch_group(g.options.torch_group);
    out->set_rank(g.options.rank);
    out->set_world_size(g.options.world_size);
    out->set_master_address(g.options.master_address);
    out->set_master_port(g.options.master_port);
    out->set_state(g.state);
    out->set_created_unix_ms(absl::ToUnixMillis(g.created));
    out->set_updates(g.updates);
    out->set_last_error(g.last_error);
    out->set_detail(g.detail);
  }
  return response;
}

absl::StatusOr<v1::UpdateWeightsResponse> UpdateFromChunks(
    const std::function<bool(v1::WeightChunk*)>& next, const EngineUpdateEnv& env,
    v1::WeightCommit* commit) {
  absl::StatusOr<std::unique_ptr<UpdateSink>> sink = MakeSink(env);
  if (!sink.ok()) return sink.status();
  ChunkStreamUpdate update(sink->get());
  UpdateTimings timings;
  const absl::Time t0 = absl::Now();
  v1::WeightChunk chunk;
  bool committed = false;
  while (next(&chunk)) {
    if (committed) {
      return absl::InvalidArgumentError("the stream sent data after its commit");
    }
    if (chunk.has_commit()) {
      committed = true;
      if (commit != nullptr) *commit = chunk.commit();
      continue;
    }
    if (!chunk.has_tensor()) {
      return absl::InvalidArgumentError("a WeightChunk carries neither tensor nor commit");
    }
    absl::Status st = update.Add(chunk.tensor());
    if (!st.ok()) return st;  // the sink's destructor drops the shadows
  }
  if (!committed) {
    return absl::InvalidArgumentError(
        "the stream ended without a commit message; nothing was applied");
  }
  absl::Status st = update.Finish();
  if (!st.ok()) return st;
  timings.transfer_us = MicrosSince(t0);
  const absl::Time t1 = absl::Now();
  st = RunCommit(env, sink->get());
  if (!st.ok()) return st;
  timings.commit_us = MicrosSince(t1);
  timings.bytes = update.bytes();
  timings.tensors = update.tensors();
  v1::UpdateWeightsResponse response;
  response.set_weight_version(commit != nullptr ? commit->weight_version() : "");
  FillTimings(timings, &response);
  return response;
}

absl::StatusOr<v1::UpdateWeightsResponse> UpdateFromIpc(
    const std::function<bool(v1::IpcUpdateRequest*)>& next,
    const std::function<bool(const v1::IpcBucketAck&)>& ack, const EngineUpdateEnv& env,
    const IpcUpdateOptions& ipc, v1::WeightCommit* commit) {
  absl::StatusOr<std::unique_ptr<UpdateSink>> sink = MakeSink(env);
  if (!sink.ok()) return sink.status();
  IpcUpdateOptions options = ipc;
  options.sink = sink->get();
  options.check_finite = env.check_finite;
  IpcStreamUpdate update(options);
  UpdateTimings timings;
  const absl::Time t0 = absl::Now();
  v1::IpcUpdateRequest message;
  bool committed = false;
  while (!committed && next(&message)) {
    if (message.has_commit()) {
      committed = true;
      if (commit != nullptr) *commit = message.commit();
      break;
    }
    if (!message.has_bucket()) {
      return absl::InvalidArgumentError("an IpcUpdateRequest carries neither bucket nor commit");
    }
    absl::StatusOr<v1::IpcBucketAck> a = update.Add(message.bucket());
    if (!a.ok()) return a.status();  // the sink's destructor drops the shadows
    if (!ack(*a)) {
      return absl::CancelledError("the client went away before the update committed");
    }
  }
  if (!committed) {
    return absl::InvalidArgumentError(
        "the IPC stream ended without a commit message; nothing was applied");
  }
  absl::Status st = update.Finish();
  if (!st.ok()) return st;
  timings.transfer_us = MicrosSince(t0);
  const absl::Time t1 = absl::Now();
  st = RunCommit(env, sink->get());
  if (!st.ok()) return st;
  timings.commit_us = MicrosSince(t1);
  timings.bytes = update.bytes();
  timings.tensors = update.tensors();
  v1::UpdateWeightsResponse response;
  response.set_weight_version(commit != nullptr ? commit->weight_version() : "");
  FillTimings(timings, &response);
  return response;
}

absl::StatusOr<v1::UpdateWeightsResponse> UpdateFromDisk(
    const v1::UpdateWeightsFromDiskRequest& request, const EngineUpdateEnv& env) {
  if (request.model_path().empty()) {
    return absl::InvalidArgumentError(
        "UpdateWeightsFromDisk: model_path is empty; give the checkpoint directory "
        "(*.safetensors, with model.safetensors.index.json when sharded)");
  }
  const absl::Time t0 = absl::Now();
  absl::StatusOr<std::unique_ptr<engine::SafetensorsCheckpoint>> ckpt =
      engine::SafetensorsCheckpoint::Open(request.model_path());
  if (!ckpt.ok()) return ckpt.status();
  absl::StatusOr<std::unique_ptr<UpdateSink>> sink = MakeSink(env);
  if (!sink.ok()) return sink.status();
  UpdateTimings timings;
  absl::Status st = StageCheckpoint(**ckpt, sink->get(), &timings.bytes);
  if (!st.ok()) return st;
  timings.transfer_us = MicrosSince(t0);
  timings.tensors = static_cast<int64_t>((*sink)->ExpectedTensors().size());
  const absl::Time t1 = absl::Now();
  st = RunCommit(env, sink->get());
  if (!st.ok()) return st;
  timings.commit_us = MicrosSince(t1);
  v1::UpdateWeightsResponse response;
  response.set_weight_version(request.weight_version());
  FillTimings(timings, &response);
  return response;
}

absl::StatusOr<v1::GetWeightChecksumsResponse> WeightChecksums(
    const v1::GetWeightChecksumsRequest& request,
    const engine::ModelWeights& weights) {
  std::vector<std::string> names(request.names().begin(), request.names().end());
  absl::StatusOr<std::vector<engine::WeightChecksumEntry>> entries =
      engine::ComputeWeightChecksums(weights, names);
  if (!entries.ok()) return entries.status();
  v1::GetWeightChecksumsResponse response;
  for (const engine::WeightChecksumEntry& e : *entries) {
    v1::WeightChecksum* c = response.add_checksums();
    c->set_name(e.name);
    c->set_dtype(e.dtype);
    for (int64_t d : e.shape) c->mutable_shape()->add_dims(d);
    c->set_crc32c(e.crc32c);
  }
  return response;
}

}  // namespace weight_sync
}  // namespace colo
