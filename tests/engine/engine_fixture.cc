#include "tests/engine/engine_fixture.h"

#include <chrono>
#include <cstdlib>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "engine/device/cpu_backend.h"
#include "engine/memory/caching_allocator.h"
#include "engine/memory/tagged_pool.h"
#include "engine/model/forward.h"
#include "engine/model/offline_generator.h"

namespace colo::test_util {
namespace {

template <typename Req, typename Resp, typename Fn>
absl::StatusOr<Resp> Unary(Fn fn, const Req& request) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  Resp response;
  grpc::Status s = fn(&context, request, &response);
  if (!s.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
  }
  return response;
}

}  // namespace

absl::StatusOr<std::string> MakeTinyModel(const std::string& name,
                                          const engine::TinyModelOptions& options) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/model_", name);
  if (std::ifstream(dir + "/config.json").good()) return dir;
  absl::Status s = engine::WriteTinyModel(options, dir);
  if (!s.ok()) return s;
  return dir;
}

absl::StatusOr<std::vector<std::vector<int32_t>>> OfflineGreedy(
    const std::string& model_dir, const std::vector<std::vector<int32_t>>& prompts,
    int max_new_tokens) {
  absl::StatusOr<std::unique_ptr<engine::CpuBackend>> backend = engine::CpuBackend::Create({});
  if (!backend.ok()) return backend.status();
  engine::TaggedPool::Options po;
  po.backend = backend->get();
  absl::StatusOr<std::unique_ptr<engine::TaggedPool>> pool = engine::TaggedPool::Create(po);
  if (!pool.ok()) return pool.status();
  engine::CachingAllocator::Options ao;
  ao.backend = backend->get();
  absl::StatusOr<std::unique_ptr<engine::CachingAllocator>> allocator =
      engine::CachingAllocator::Create(ao);
  if (!allocator.ok()) return allocator.status();
  engine::TransformerModel::Options mo;
  mo.model_dir = model_dir;
  mo.weights_pool = pool->get();
  mo.allocator = allocator->get();
  absl::StatusOr<std::unique_ptr<engine::TransformerModel>> model =
      engine::TransformerModel::Load(mo);
  if (!model.ok()) return model.status();
  std::vector<engine::GenerationRequest> requests;
  for (const auto& p : prompts) {
    engine::GenerationRequest r;
    r.prompt = p;
    r.max_new_tokens = max_new_tokens;
    requests.push_back(r);
  }
  engine::OfflineGenerateOptions options;
  options.batch_size = 8;
  absl::StatusOr<std::vector<engine::Generation>> out =
      engine::GenerateOffline(**model, requests, options, pool->get());
  if (!out.ok()) return out.status();
  std::vector<std::vector<int32_t>> tokens;
  for (const auto& g : *out) tokens.push_back(g.tokens);
  return tokens;
}

absl::StatusOr<std::unique_ptr<TestEngine>> TestEngine::Start(const std::string& model_dir,
                                                              std::vector<std::string> flags) {
  auto engine = std::make_unique<TestEngine>();
  ServerProcessOptions options;
  options.binary = RunfilePath("engine/server/colo-engine");
  options.args = {absl::StrCat("--model=", model_dir), "--device=cpu"};
  options.args.insert(options.args.end(), flags.begin(), flags.end());
  absl::StatusOr<std::unique_ptr<ServerProcess>> process = ServerProcess::Start(options);
  if (!process.ok()) return process.status();
  engine->process_ = *std::move(process);
  engine->stub_ = colo::v1::RolloutEngine::NewStub(
      grpc::CreateChannel(engine->address(), grpc::InsecureChannelCredentials()));
  return engine;
}

colo::v1::GenerateRequest GreedyRequest(const std::vector<int32_t>& ids, int max_new_tokens) {
  colo::v1::GenerateRequest request;
  request.mutable_input_ids()->Add(ids.begin(), ids.end());
  request.mutable_sampling_params()->set_max_new_tokens(max_new_tokens);
  request.mutable_sampling_params()->set_ignore_eos(true);
  return request;
}

GenerateResult TestEngine::Generate(const colo::v1::GenerateRequest& request,
                                    absl::Duration timeout) {
  GenerateStream stream(*stub_, request, timeout);
  return stream.Finish();
}

GenerateResult TestEngine::Greedy(const std::vector<int32_t>& ids, int max_new_tokens,
                                  const std::string& session_id) {
  colo::v1::GenerateRequest request = GreedyRequest(ids, max_new_tokens);
  request.set_session_id(session_id);
  request.set_return_logprob(true);
  return Generate(request);
}

absl::StatusOr<colo::v1::GetServerInfoResponse> TestEngine::Info() {
  return Unary<colo::v1::GetServerInfoRequest, colo::v1::GetServerInfoResponse>(
      [this](auto* c, const auto& r, auto* o) { return stub_->GetServerInfo(c, r, o); }, {});
}

absl::StatusOr<colo::v1::GetMemoryInfoResponse> TestEngine::Memory() {
  return Unary<colo::v1::GetMemoryInfoRequest, colo::v1::GetMemoryInfoResponse>(
      [this](auto* c, const auto& r, auto* o) { return stub_->GetMemoryInfo(c, r, o); }, {});
}

absl::StatusOr<colo::v1::PauseGenerationResponse> TestEngine::Pause(const std::string& mode) {
  colo::v1::PauseGenerationRequest request;
  request.set_mode(mode);
  return Unary<colo::v1::PauseGenerationRequest, colo::v1::PauseGenerationResponse>(
      [this](auto* c, const auto& r, auto* o) { return stub_->PauseGeneration(c, r, o); },
      request);
}

absl::StatusOr<colo::v1::ContinueGenerationResponse> TestEngine::Continue(bool empty_cache) {
  colo::v1::ContinueGenerationRequest request;
  request.set_torch_empty_cache(empty_cache);
  return Unary<colo::v1::ContinueGenerationRequest, colo::v1::ContinueGenerationResponse>(
      [this](auto* c, const auto& r, auto* o) { return stub_->ContinueGeneration(c, r, o); },
      request);
}

absl::StatusOr<colo::v1::ReleaseTagsResponse> TestEngine::Release(
    const std::vector<std::string>& tags) {
  colo::v1::ReleaseTagsRequest request;
  for (const auto& t : tags) request.add_tags(t);
  return Unary<colo::v1::ReleaseTagsRequest, colo::v1::ReleaseTagsResponse>(
      [this](auto* c, const auto& r, auto* o) { return stub_->ReleaseTags(c, r, o); }, request);
}

absl::StatusOr<colo::v1::ResumeTagsResponse> TestEngine::Resume(
    const std::vector<std::string>& tags) {
  colo::v1::ResumeTagsRequest request;
  for (const auto& t : tags) request.add_tags(t);
  return Unary<colo::v1::ResumeTagsRequest, colo::v1::ResumeTagsResponse>(
      [this](auto* c, const auto& r, auto* o) { return stub_->ResumeTags(c, r, o); }, request);
}

absl::StatusOr<colo::v1::GetWeightChecksumsResponse> TestEngine::Checksums() {
  return Unary<colo::v1::GetWeightChecksumsRequest, colo::v1::GetWeightChecksumsResponse>(
      [this](auto* c, const auto& r, auto* o) { return stub_->GetWeightChecksums(c, r, o); }, {});
}

absl::StatusOr<colo::v1::UpdateWeightsResponse> TestEngine::UpdateFromDisk(
    const std::string& model_dir, const std::string& version) {
  colo::v1::UpdateWeightsFromDiskRequest request;
  request.set_model_path(model_dir);
  request.set_weight_version(version);
  return Unary<colo::v1::UpdateWeightsFromDiskRequest, colo::v1::UpdateWeightsResponse>(
      [this](auto* c, const auto& r, auto* o) { return stub_->UpdateWeightsFromDisk(c, r, o); },
      request);
}

GenerateStream::GenerateStream(colo::v1::RolloutEngine::Stub& stub,
                               const colo::v1::GenerateRequest& request, absl::Duration timeout) {
  context_.set_deadline(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(timeout));
  reader_ = stub.Generate(&context_, request);
}

bool GenerateStream::ReadOne() {
  if (ended_) return false;
  colo::v1::GenerateResponse response;
  if (!reader_->Read(&response)) {
    ended_ = true;
    result_.status = reader_->Finish();
    return false;
  }
  ++result_.messages;
  result_.tokens.insert(result_.tokens.end(), response.output_ids().begin(),
                        response.output_ids().end());
  result_.logprobs.insert(result_.logprobs.end(), response.output_logprobs().begin(),
                          response.output_logprobs().end());
  if (!response.finish_reason().empty()) {
    result_.finish_reason = response.finish_reason();
    result_.prompt_tokens = response.prompt_tokens();
    result_.cached_tokens = response.cached_tokens();
    result_.weight_version = response.weight_version();
  }
  return true;
}

bool GenerateStream::ReadUntil(size_t n) {
  while (result_.tokens.size() < n) {
    if (!ReadOne()) return false;
  }
  return true;
}

GenerateResult GenerateStream::Finish() {
  while (ReadOne()) {
  }
  return result_;
}

std::vector<int32_t> Prompt(int seed, int len, int vocab) {
  return engine::TinyPrompt(seed, len, vocab);
}

int64_t ProcessRss(const colo::v1::GetMemoryInfoResponse& memory) {
  return memory.memory().device().process_resident_bytes();
}

}  // namespace colo::test_util
