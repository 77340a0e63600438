#include "weight_sync/sender_main_lib.h"

#include <csignal>
#include <cstdio>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_split.h"
#include "engine/model/safetensors.h"

ABSL_FLAG(std::string, engines, "", "Comma-separated host:port of every engine.");
ABSL_FLAG(std::string, checkpoint, "", "Directory with the safetensors checkpoint.");
ABSL_FLAG(std::string, weight_version, "", "Version string the engines report.");
ABSL_FLAG(std::string, backend, "gloo", "gloo or nccl.");
ABSL_FLAG(std::string, master_address, "127.0.0.1",
          "Address of this process that the engines can reach.");
ABSL_FLAG(int, master_port, 0, "Rendezvous port (0 = pick a free one).");
ABSL_FLAG(std::string, group_name, "weight_update_group", "Group name.");
ABSL_FLAG(int64_t, bucket_bytes, 64 << 20, "Broadcast bucket size in bytes.");
ABSL_FLAG(int64_t, init_timeout_ms, 60000, "Deadline for the group to form.");
ABSL_FLAG(int64_t, transfer_timeout_ms, 120000, "Deadline per collective call.");
ABSL_FLAG(bool, flush_cache, true, "Ask the engines to flush their prefix cache.");
ABSL_FLAG(bool, destroy_group_after, true, "Destroy the group after the update.");
ABSL_FLAG(int64_t, debug_exit_after_buckets, -1,
          "TEST ONLY (fault injection): after this many buckets were broadcast the "
          "sender kills itself with SIGKILL, interrupting the update mid-transfer. "
          "-1 = off. Never set this in production.");

namespace colo {
namespace weight_sync {

absl::Status RunWeightSender(const SenderCliOptions& options) {
  absl::StatusOr<std::unique_ptr<engine::SafetensorsCheckpoint>> ckpt =
      engine::SafetensorsCheckpoint::Open(options.checkpoint);
  if (!ckpt.ok()) return ckpt.status();
  absl::StatusOr<std::vector<SendTensor>> tensors = TensorsFromCheckpoint(**ckpt);
  if (!tensors.ok()) return tensors.status();
  absl::StatusOr<std::unique_ptr<WeightSender>> sender =
      WeightSender::Connect(options.sender);
  if (!sender.ok()) return sender.status();
  std::vector<EngineUpdateResult> results;
  absl::StatusOr<SendReport> report = (*sender)->Update(
      *tensors, options.weight_version, options.flush_cache, &results);
  if (!report.ok()) {
    if (options.destroy_group_after) (*sender)->DestroyGroup().IgnoreError();
    return report.status();
  }
  const double secs = (report->ready_us + report->transfer_us + report->commit_us) / 1e6;
  std::printf("sent %lld bytes in %lld buckets: ready %.3f s, transfer %.3f s, "
              "commit %.3f s, %.1f MiB/s\n",
              static_cast<long long>(report->bytes), static_cast<long long>(report->buckets),
              report->ready_us / 1e6, report->transfer_us / 1e6, report->commit_us / 1e6,
              report->bytes / (1 << 20) / (secs > 0 ? secs : 1));
  for (const EngineUpdateResult& r : results) {
    std::printf("engine %s: version %s, %lld tensors, validate %lld us, transfer %lld us, "
                "apply %lld us, commit %lld us\n",
                r.engine.c_str(), r.response.weight_version().c_str(),
                static_cast<long long>(r.response.num_tensors()),
                static_cast<long long>(r.response.validate_us()),
                static_cast<long long>(r.response.transfer_us()),
                static_cast<long long>(r.response.apply_us()),
                static_cast<long long>(r.response.commit_us()));
  }
  if (options.destroy_group_after) return (*sender)->DestroyGroup();
  return absl::OkStatus();
}

int WeightSenderMain(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  SenderCliOptions o;
  for (absl::string_view e :
       absl::StrSplit(absl::GetFlag(FLAGS_engines), ',', absl::SkipEmpty())) {
    o.sender.engines.emplace_back(e);
  }
  o.sender.backend = absl::GetFlag(FLAGS_backend);
  o.sender.master_address = absl::GetFlag(FLAGS_master_address);
  o.sender.master_port = absl::GetFlag(FLAGS_master_port);
  o.sender.group_name = absl::GetFlag(FLAGS_group_name);
  o.sender.bucket_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_bucket_bytes));
  o.sender.init_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_init_timeout_ms));
  o.sender.transfer_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_transfer_timeout_ms));
  o.checkpoint = absl::GetFlag(FLAGS_checkpoint);
  o.weight_version = absl::GetFlag(FLAGS_weight_version);
  o.flush_cache = absl::GetFlag(FLAGS_flush_cache);
  o.destroy_group_after = absl::GetFlag(FLAGS_destroy_group_after);
  if (const int64_t n = absl::GetFlag(FLAGS_debug_exit_after_buckets); n >= 0) {
    o.sender.after_bucket_for_testing = [n](int64_t sent) {
      if (sent < n) return;
      std::fprintf(stderr, "colo-weight-sender: --debug_exit_after_buckets=%lld: "
                   "killing myself (SIGKILL) after %lld buckets\n",
                   static_cast<long long>(n), static_cast<long long>(sent));
      std::fflush(stderr);
      ::raise(SIGKILL);
    };
  }
  if (o.sender.engines.empty() || o.checkpoint.empty()) {
    std::fprintf(stderr, "colo-weight-sender: --engines and --checkpoint are required\n");
    return 2;
  }
  absl::Status st = RunWeightSender(o);
  if (!st.ok()) {
    std::fprintf(stderr, "colo-weight-sender: %s\n", st.ToString().c_str());
    return 1;
  }
  return 0;
}

}  // namespace weight_sync
}  // namespace colo
