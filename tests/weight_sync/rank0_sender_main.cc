// TEST ONLY: rank 0 of a Gloo weight-update group in its own process, with
// no engine RPCs (the test calls InitWeightsUpdateGroup and
// UpdateWeightsFromDistributed itself, so it sees the engines' replies).
// Hosts the rendezvous on an ephemeral port, writes the port to
// --port_file, forms the group, and broadcasts --checkpoint with
// SendUpdate. --kill_after_buckets=N makes it SIGKILL itself after N
// buckets: an update interrupted mid-transfer by a dead trainer.
#include <csignal>
#include <cstdio>
#include <fstream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/time/time.h"
#include "engine/model/safetensors.h"
#include "weight_sync/broadcast_sender.h"
#include "weight_sync/sender.h"
#include "weight_sync/tcp_store.h"
#include "weight_sync/transport.h"

ABSL_FLAG(std::string, checkpoint, "", "Checkpoint directory to broadcast.");
ABSL_FLAG(std::string, group_name, "weight_update_group", "Group name.");
ABSL_FLAG(int, world_size, 2, "1 + number of engine ranks.");
ABSL_FLAG(std::string, port_file, "", "Where to write the rendezvous port.");
ABSL_FLAG(int64_t, bucket_bytes, 1 << 16, "Bucket size.");
ABSL_FLAG(int64_t, init_timeout_ms, 30000, "Rendezvous deadline.");
ABSL_FLAG(int64_t, transfer_timeout_ms, 30000, "Per-collective deadline.");
ABSL_FLAG(int64_t, kill_after_buckets, -1, "SIGKILL self after this many buckets (-1 = off).");

namespace {

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "rank0_sender: %s\n", s.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  using namespace colo::weight_sync;  // NOLINT: a test main
  auto ckpt = colo::engine::SafetensorsCheckpoint::Open(absl::GetFlag(FLAGS_checkpoint));
  if (!ckpt.ok()) return Fail(ckpt.status());
  auto tensors = TensorsFromCheckpoint(**ckpt);
  if (!tensors.ok()) return Fail(tensors.status());

  TcpStoreServer::Options so;
  so.group_name = absl::GetFlag(FLAGS_group_name);
  so.world_size = absl::GetFlag(FLAGS_world_size);
  auto server = TcpStoreServer::Start(so);
  if (!server.ok()) return Fail(server.status());
  const std::string port_file = absl::GetFlag(FLAGS_port_file);
  {
    std::ofstream out(port_file + ".tmp");
    out << (*server)->port() << "\n";
  }
  if (std::rename((port_file + ".tmp").c_str(), port_file.c_str()) != 0) {
    return Fail(absl::InternalError("cannot write the port file"));
  }

  TransportOptions to;
  to.group_name = so.group_name;
  to.world_size = so.world_size;
  to.rank = 0;
  to.master_port = (*server)->port();
  to.init_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_init_timeout_ms));
  to.transfer_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_transfer_timeout_ms));
  auto transport = CreateTransport(to, std::move(server).value());
  if (!transport.ok()) return Fail(transport.status());

  SendOptions send;
  send.transport = transport->get();
  send.bucket_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_bucket_bytes));
  if (const int64_t n = absl::GetFlag(FLAGS_kill_after_buckets); n >= 0) {
    send.after_bucket_for_testing = [n](int64_t sent) {
      if (sent < n) return;
      std::fprintf(stderr, "rank0_sender: SIGKILL after %lld buckets\n",
                   static_cast<long long>(sent));
      std::fflush(stderr);
      std::raise(SIGKILL);
    };
  }
  auto report = SendUpdate(send, *tensors);
  if (!report.ok()) return Fail(report.status());
  std::printf("rank0_sender: sent %lld bytes in %lld buckets\n",
              static_cast<long long>(report->bytes), static_cast<long long>(report->buckets));
  return 0;
}
