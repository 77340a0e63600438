// TEST ONLY: an engine-less rank of a torch group. Joins the trainer's group
// with TorchTransport (rendezvous "torch") as --rank, receives one broadcast
// per entry of --bytes (in order, from rank 0) and prints "<index> <bytes>
// <crc32c>" per broadcast, then "done". Used to check the wire protocol
// against real torch processes without an engine in between, and by
// bench/weight_sync to time the receive path alone.
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "weight_sync/crc32c.h"
#include "weight_sync/tcp_store.h"
#include "weight_sync/transport.h"

ABSL_FLAG(std::string, master_address, "127.0.0.1", "The trainer's init_method host.");
ABSL_FLAG(int, master_port, 0, "The trainer's init_method port.");
ABSL_FLAG(int, rank, 1, "This rank.");
ABSL_FLAG(int, world_size, 2, "World size.");
ABSL_FLAG(std::string, torch_group, "world", "world, new_group or custom.");
ABSL_FLAG(std::string, group_name, "weight_update_group", "Group name (custom: torch's).");
ABSL_FLAG(std::string, bytes, "", "Comma-separated sizes of the broadcasts to receive.");
ABSL_FLAG(int64_t, timeout_ms, 60000, "Init and transfer timeout.");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  using namespace colo::weight_sync;  // NOLINT: a test main
  TransportOptions o;
  o.rendezvous = "torch";
  o.backend = "gloo";
  o.torch_group = absl::GetFlag(FLAGS_torch_group);
  o.group_name = absl::GetFlag(FLAGS_group_name);
  o.master_address = absl::GetFlag(FLAGS_master_address);
  o.master_port = absl::GetFlag(FLAGS_master_port);
  o.rank = absl::GetFlag(FLAGS_rank);
  o.world_size = absl::GetFlag(FLAGS_world_size);
  o.init_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_timeout_ms));
  o.transfer_timeout = o.init_timeout;
  auto t = CreateTransport(o);
  if (!t.ok()) {
    std::fprintf(stderr, "torch_rank: %s\n", t.status().ToString().c_str());
    return 1;
  }
  std::printf("joined %s\n", (*t)->detail().c_str());
  std::fflush(stdout);
  int index = 0;
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_bytes), ',', absl::SkipEmpty())) {
    size_t n = 0;
    if (!absl::SimpleAtoi(s, &n)) return 2;
    std::vector<char> buf(n);
    const absl::Time t0 = absl::Now();
    absl::Status st = (*t)->Broadcast(buf.data(), n, 0);
    if (!st.ok()) {
      std::fprintf(stderr, "torch_rank: broadcast %d: %s\n", index, st.ToString().c_str());
      return 1;
    }
    std::printf("%d %zu %u %.6f\n", index++, n, Crc32c(buf.data(), n),
                absl::ToDoubleSeconds(absl::Now() - t0));
    std::fflush(stdout);
  }
  std::printf("done\n");
  return 0;
}
