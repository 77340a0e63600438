#include "tests/tp/tp_fixture.h"

#include <signal.h>

#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"

namespace colo::test_util {

std::vector<std::string> TpFlags(int tp_size, std::vector<std::string> more) {
  std::vector<std::string> flags = {absl::StrCat("--tp_size=", tp_size), "--cpu_threads=1",
                                    "--tp_timeout_ms=20000", "--tp_heartbeat_timeout_ms=3000"};
  flags.insert(flags.end(), more.begin(), more.end());
  return flags;
}

std::vector<GenerateResult> GreedyTogether(TestEngine& engine,
                                           const std::vector<std::vector<int32_t>>& prompts,
                                           int max_new_tokens) {
  std::vector<GenerateResult> results(prompts.size());
  std::vector<std::thread> clients;
  for (size_t i = 0; i < prompts.size(); ++i) {
    clients.emplace_back([&, i] { results[i] = engine.Greedy(prompts[i], max_new_tokens); });
  }
  for (std::thread& t : clients) t.join();
  return results;
}

absl::StatusOr<int64_t> RankPid(TestEngine& engine, int rank) {
  absl::StatusOr<colo::v1::GetServerInfoResponse> info = engine.Info();
  if (!info.ok()) return info.status();
  for (const colo::v1::RankInfo& r : info->ranks()) {
    if (r.rank() == rank && r.pid() > 0) return r.pid();
  }
  return absl::NotFoundError(absl::StrCat("GetServerInfo lists no rank ", rank));
}

bool ProcessGone(int64_t pid, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (kill(static_cast<pid_t>(pid), 0) != 0) return true;
    std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
    std::string pid_field, comm, state;
    stat >> pid_field >> comm >> state;
    if (state == "Z" || state == "X") return true;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
}

absl::StatusOr<colo::v1::GetServerInfoResponse> WaitForFailed(TestEngine& engine,
                                                              absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    absl::StatusOr<colo::v1::GetServerInfoResponse> info = engine.Info();
    if (!info.ok()) return info.status();
    if (info->state() == "failed" || absl::Now() >= deadline) return info;
    absl::SleepFor(absl::Milliseconds(50));
  }
}

}  // namespace colo::test_util
