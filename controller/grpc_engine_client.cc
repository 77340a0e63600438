#include "controller/grpc_engine_client.h"

#include <algorithm>
#include <chrono>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/support/channel_arguments.h"
#include "proto/server/auth.h"
#include "proto/status/grpc_status.h"

namespace colo {
namespace controller {
namespace {

absl::Status ValidateAddress(const std::string& address) {
  const size_t colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 1 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("engine address '", address, "' is not host:port with a port in [1, 65535]"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ParseEngineList(const std::string& list) {
  std::vector<std::string> out;
  absl::flat_hash_set<std::string> seen;
  for (absl::string_view part : absl::StrSplit(list, ',', absl::SkipWhitespace())) {
    std::string address(absl::StripAsciiWhitespace(part));
    absl::Status valid = ValidateAddress(address);
    if (!valid.ok()) return valid;
    if (!seen.insert(address).second) {
      return absl::InvalidArgumentError(absl::StrCat("engine '", address, "' is listed twice"));
    }
    out.push_back(address);
  }
  if (out.empty()) return absl::InvalidArgumentError("no engines given (--engines=host:port,...)");
  return out;
}

absl::StatusOr<std::unique_ptr<GrpcEngineClient>> GrpcEngineClient::Create(const Options& options) {
  absl::Status valid = ValidateAddress(options.address);
  if (!valid.ok()) return valid;
  // An engine that restarts (same address) must be reachable again within
  // about a health interval: cap gRPC's reconnect backoff (default: up to
  // 120 s, during which every call fails fast with UNAVAILABLE and Recover
  // cannot succeed).
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(
      options.address,
      options.credentials ? options.credentials : grpc::InsecureChannelCredentials(), args);
  return std::unique_ptr<GrpcEngineClient>(new GrpcEngineClient(options, std::move(channel)));
}

GrpcEngineClient::GrpcEngineClient(const Options& options, std::shared_ptr<grpc::Channel> channel)
    : options_(options),
      channel_(std::move(channel)),
      stub_(::colo::v1::RolloutEngine::NewStub(channel_)) {}

template <typename Call>
absl::Status GrpcEngineClient::Invoke(const char* method, absl::Duration timeout, Call call) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(timeout));
  AddBearerToken(&context, options_.auth_token);
  {
    absl::MutexLock lock(&mu_);
    if (closed_) {
      return absl::CancelledError(absl::StrCat("engine ", options_.address, " ", method,
                                               ": not sent, the controller is shutting down"));
    }
    in_flight_.insert(&context);
  }
  grpc::Status status = call(&context);
  {
    absl::MutexLock lock(&mu_);
    in_flight_.erase(&context);
  }
  if (status.ok()) return absl::OkStatus();
  return absl::Status(
      static_cast<absl::StatusCode>(status.error_code()),
      absl::StrCat("engine ", options_.address, " ", method, ": ",
                   absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code())),
                   ": ", status.error_message()));
}

void GrpcEngineClient::CancelPending() {
  absl::MutexLock lock(&mu_);
  for (grpc::ClientContext* context : in_flight_) context->TryCancel();
}

void GrpcEngineClient::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
  for (grpc::ClientContext* context : in_flight_) context->TryCancel();
}

absl::StatusOr<::colo::v1::GetServerInfoResponse> GrpcEngineClient::GetServerInfo() {
  ::colo::v1::GetServerInfoResponse response;
  auto call = [&](grpc::ClientContext* c) {
    return stub_->GetServerInfo(c, ::colo::v1::GetServerInfoRequest(), &response);
  };
  absl::Status status = Invoke("GetServerInfo", options_.call_timeout, call);
  // The first call after an engine restart (Recover, reconciliation) may find
  // the channel still in reconnect backoff from the outage: give it one
  // connection attempt (bounded, longer than the 1 s backoff cap) and retry
  // once; a dead engine still answers UNAVAILABLE.
  if (absl::IsUnavailable(status) &&
      channel_->WaitForConnected(std::chrono::system_clock::now() +
                                 absl::ToChronoNanoseconds(
                                     std::min(options_.call_timeout, absl::Milliseconds(1500))))) {
    status = Invoke("GetServerInfo", options_.call_timeout, call);
  }
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<::colo::v1::GetMemoryInfoResponse> GrpcEngineClient::GetMemoryInfo() {
  ::colo::v1::GetMemoryInfoResponse response;
  absl::Status status = Invoke("GetMemoryInfo", options_.call_timeout, [&](grpc::ClientContext* c) {
    return stub_->GetMemoryInfo(c, ::colo::v1::GetMemoryInfoRequest(), &response);
  });
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<::colo::v1::PauseGenerationResponse> GrpcEngineClient::PauseGeneration(
    const std::string& mode) {
  ::colo::v1::PauseGenerationRequest request;
  request.set_mode(mode);
  ::colo::v1::PauseGenerationResponse response;
  absl::Status status =
      Invoke("PauseGeneration", options_.call_timeout,
             [&](grpc::ClientContext* c) { return stub_->PauseGeneration(c, request, &response); });
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<::colo::v1::ContinueGenerationResponse> GrpcEngineClient::ContinueGeneration(
    bool torch_empty_cache) {
  ::colo::v1::ContinueGenerationRequest request;
  request.set_torch_empty_cache(torch_empty_cache);
  ::colo::v1::ContinueGenerationResponse response;
  absl::Status status = Invoke(
      "ContinueGeneration", options_.call_timeout,
      [&](grpc::ClientContext* c) { return stub_->ContinueGeneration(c, request, &response); });
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<::colo::v1::ReleaseTagsResponse> GrpcEngineClient::ReleaseTags(
    const std::vector<std::string>& tags) {
  ::colo::v1::ReleaseTagsRequest request;
  for (const auto& tag : tags) request.add_tags(tag);
  ::colo::v1::ReleaseTagsResponse response;
  absl::Status status = Invoke("ReleaseTags", options_.call_timeout, [&](grpc::ClientContext* c) {
    return stub_->ReleaseTags(c, request, &response);
  });
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<::colo::v1::ResumeTagsResponse> GrpcEngineClient::ResumeTags(
    const std::vector<std::string>& tags) {
  ::colo::v1::ResumeTagsRequest request;
  for (const auto& tag : tags) request.add_tags(tag);
  ::colo::v1::ResumeTagsResponse response;
  absl::Status status = Invoke("ResumeTags", options_.call_timeout, [&](grpc::ClientContext* c) {
    return stub_->ResumeTags(c, request, &response);
  });
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<::colo::v1::GetServerInfoResponse> GrpcEngineClient::Probe() {
  ::colo::v1::GetServerInfoResponse response;
  absl::Status status =
      Invoke("GetServerInfo", options_.probe_timeout, [&](grpc::ClientContext* c) {
        return stub_->GetServerInfo(c, ::colo::v1::GetServerInfoRequest(), &response);
      });
  if (!status.ok()) return status;
  return response;
}

}  // namespace controller
}  // namespace colo
