#include "engine/tp/tp_leader.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/tp/tp_follower.h"
#include "proto/logging/logging.h"
#include "proto/status/status_macros.h"

namespace colo {
namespace engine {

using colo::internal::TpCommand;
using colo::internal::TpReply;

absl::StatusOr<std::unique_ptr<TpLeader>> TpLeader::Start(const TpLeaderOptions& options) {
  if (options.tp_size < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("a tensor-parallel leader needs --tp_size >= 2, got ", options.tp_size));
  }
  std::unique_ptr<TpLeader> leader(new TpLeader(options));
  const absl::Time deadline = absl::Now() + options.init_timeout;
  const bool launch = options.master.empty();
  std::string host = "127.0.0.1";
  int port = 0;
  if (!launch) RETURN_IF_ERROR(ParseHostPort(options.master, "--tp_master", &host, &port));
  ASSIGN_OR_RETURN(std::unique_ptr<TpListener> listener, TpListener::Create(host, port));
  if (launch) RETURN_IF_ERROR(leader->Launch(listener->port()));
  COLO_LOG(INFO) << "tensor-parallel rank 0/" << options.tp_size << ": waiting for ranks 1.."
                 << options.tp_size - 1 << " on " << host << ":" << listener->port()
                 << (launch ? " (launched as children)" : "");
  RETURN_IF_ERROR(leader->AcceptAll(listener.get(), deadline));

  // The collectives' rendezvous store, where the ranks reached this process.
  const std::string address = leader->peers_[0]->local_address();
  ASSIGN_OR_RETURN(std::unique_ptr<weight_sync::TcpStoreServer> store,
                   weight_sync::TcpStoreServer::Start({.bind_address = host,
                                                       .port = 0,
                                                       .group_name = "colo-tp",
                                                       .world_size = options.tp_size}));
  TpCommand setup;
  *setup.mutable_setup() = options.setup;
  setup.mutable_setup()->set_store_port(store->port());
  setup.mutable_setup()->set_collective_timeout_ms(
      absl::ToInt64Milliseconds(options.collective_timeout));
  setup.mutable_setup()->set_init_timeout_ms(absl::ToInt64Milliseconds(options.init_timeout));
  for (const auto& peer : leader->peers_) {
    ASSIGN_OR_RETURN(uint64_t id, peer->Send(setup, deadline));
    leader->setup_ids_.push_back(id);
  }
  GlooTpComm::Options co;
  co.master_address = address;
  co.master_port = store->port();
  co.rank = 0;
  co.size = options.tp_size;
  co.init_timeout = std::max(deadline - absl::Now(), absl::Seconds(1));
  co.timeout = options.collective_timeout;
  ASSIGN_OR_RETURN(leader->comm_, GlooTpComm::Create(co, std::move(store)));
  return leader;
}

absl::Status TpLeader::Launch(int port) {
  const std::string binary = options_.binary.empty() ? "/proc/self/exe" : options_.binary;
  for (int rank = 1; rank < options_.tp_size; ++rank) {
    std::vector<std::string> args = {binary, absl::StrCat("--tp_rank=", rank),
                                     absl::StrCat("--tp_size=", options_.tp_size),
                                     absl::StrCat("--tp_master=127.0.0.1:", port)};
    args.insert(args.end(), options_.child_flags.begin(), options_.child_flags.end());
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid < 0) {
      return absl::InternalError(absl::StrCat("fork() for tensor-parallel rank ", rank, ": ",
                                              strerror(errno)));
    }
    if (pid == 0) {
      // The child dies with rank 0, starts with no signal blocked (rank 0
      // blocks SIGTERM for its own handling), and keeps rank 0's stderr.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(1);
      // Its own process group: a Ctrl-C or group signal meant for rank 0
      // does not kill it mid-shutdown (rank 0 tells it to exit).
      setpgid(0, 0);
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    {
      absl::MutexLock lock(&children_mu_);
      children_.push_back(pid);
    }
    COLO_LOG(INFO) << "started tensor-parallel rank " << rank << " as pid " << pid;
  }
  return absl::OkStatus();
}

absl::Status TpLeader::AcceptAll(TpListener* listener, absl::Time deadline) {
  const int followers = options_.tp_size - 1;
  std::vector<std::unique_ptr<TpConnection>> by_rank(followers);
  std::vector<colo::internal::TpHello> hellos(followers);
  for (int accepted = 0; accepted < followers;) {
    absl::StatusOr<std::unique_ptr<TpConnection>> c = listener->Accept(deadline);
    if (!c.ok()) {
      std::string missing;
      for (int r = 0; r < followers; ++r) {
        if (by_rank[r] == nullptr) absl::StrAppend(&missing, missing.empty() ? "" : ", ", r + 1);
      }
      std::string exits;
      for (int r = 0; r < followers; ++r) {
        if (by_rank[r] == nullptr) exits += ChildExit(r + 1);
      }
      return absl::DeadlineExceededError(absl::StrCat(
          "tensor-parallel ranks ", missing, " did not connect to rank 0 within ",
          absl::FormatDuration(options_.init_timeout), exits));
    }
    TpReply hello;
    absl::Status s = (*c)->Receive(&hello, deadline);
    if (!s.ok() || !hello.has_hello()) {
      COLO_LOG(WARNING) << "ignoring a connection from " << (*c)->peer()
                        << " that sent no tensor-parallel hello: " << s;
      continue;
    }
    const colo::internal::TpHello& h = hello.hello();
    if (h.protocol() != kTpProtocol || h.tp_size() != options_.tp_size || h.rank() < 1 ||
        h.rank() >= options_.tp_size || by_rank[h.rank() - 1] != nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "a tensor-parallel rank from ", (*c)->peer(), " (pid ", h.pid(), ") says rank ",
          h.rank(), " of ", h.tp_size(), ", protocol '", h.protocol(), "'; rank 0 expects ranks 1..",
          options_.tp_size - 1, " of ", options_.tp_size, " (each once), protocol '",
          kTpProtocol, "'"));
    }
    hellos[h.rank() - 1] = h;
    by_rank[h.rank() - 1] = *std::move(c);
    ++accepted;
  }
  for (int r = 0; r < followers; ++r) {
    auto peer = std::make_unique<TpPeer>(
        r + 1, hellos[r].pid(), std::move(by_rank[r]),
        [this](int rank, const absl::Status& reason) { Fail(rank, reason); });
    peer->Start();
    hosts_.push_back(hellos[r].host());
    peers_.push_back(std::move(peer));
  }
  weight_bytes_.assign(followers, 0);
  return absl::OkStatus();
}

absl::Status TpLeader::AwaitSetup() {
  const absl::Time deadline = absl::Now() + options_.init_timeout;
  for (size_t i = 0; i < peers_.size(); ++i) {
    absl::StatusOr<TpReply> r = peers_[i]->Final(setup_ids_[i], deadline);
    if (!r.ok()) {
      return absl::Status(r.status().code(),
                          absl::StrCat("tensor-parallel rank ", i + 1, " setup: ",
                                       r.status().message(), ChildExit(static_cast<int>(i) + 1)));
    }
    weight_bytes_[i] = r->setup_done().weight_bytes();
  }
  return absl::OkStatus();
}

absl::Status TpLeader::SetupKv(const colo::internal::TpKvSetup& kv) {
  TpCommand c;
  *c.mutable_kv_setup() = kv;
  return CallAll(c, options_.init_timeout).status();
}

void TpLeader::StartHeartbeat() {
  heartbeat_ = std::thread([this] { HeartbeatLoop(); });
}

void TpLeader::HeartbeatLoop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      const absl::Time wake = absl::Now() + options_.heartbeat_interval;
      while (!stopping_ && absl::Now() < wake) stop_cv_.WaitWithDeadline(&mu_, wake);
      if (stopping_) return;
    }
    TpCommand ping;
    ping.mutable_ping();
    const absl::Time deadline = absl::Now() + options_.heartbeat_timeout;
    std::vector<std::pair<TpPeer*, uint64_t>> sent;
    for (const auto& peer : peers_) {
      if (!peer->lost().ok()) continue;
      absl::StatusOr<uint64_t> id = peer->Send(ping, deadline);
      if (id.ok()) sent.emplace_back(peer.get(), *id);
    }
    for (auto [peer, id] : sent) {
      absl::StatusOr<TpReply> r = peer->Final(id, deadline);
      if (absl::IsDeadlineExceeded(r.status())) {
        peer->Forget(id);
        peer->MarkLost(absl::UnavailableError(absl::StrCat(
            "tensor-parallel rank ", peer->rank(), " (pid ", peer->pid(),
            ") missed its heartbeat: no answer within ",
            absl::FormatDuration(options_.heartbeat_timeout), " (hung or stopped?)")));
      }
    }
  }
}

absl::StatusOr<std::vector<TpReply>> TpLeader::CallAll(const TpCommand& command,
                                                       absl::Duration timeout) {
  RETURN_IF_ERROR(FailureStatus());
  const absl::Time deadline = absl::Now() + timeout;
  std::vector<uint64_t> ids;
  for (const auto& peer : peers_) {
    absl::StatusOr<uint64_t> id = peer->Send(command, deadline);
    if (!id.ok()) return id.status();
    ids.push_back(*id);
  }
  std::vector<TpReply> replies;
  absl::Status first_error;
  for (size_t i = 0; i < peers_.size(); ++i) {
    absl::StatusOr<TpReply> r = peers_[i]->Final(ids[i], deadline);
    if (absl::IsDeadlineExceeded(r.status())) {
      peers_[i]->Forget(ids[i]);
      peers_[i]->MarkLost(absl::UnavailableError(r.status().message()));
    }
    if (!r.ok()) {
      if (first_error.ok()) {
        first_error = absl::Status(r.status().code(),
                                   absl::StrCat("tensor-parallel rank ", i + 1, ": ",
                                                r.status().message()));
      }
      continue;
    }
    replies.push_back(*std::move(r));
  }
  if (!first_error.ok()) return first_error;
  return replies;
}

std::string TpLeader::failure() const {
  absl::MutexLock lock(&mu_);
  return failure_;
}

absl::Status TpLeader::FailureStatus() const {
  const std::string f = failure();
  if (f.empty()) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat("the engine FAILED: ", f));
}

void TpLeader::AddFailureListener(std::function<void()> listener) {
  absl::MutexLock lock(&mu_);
  listeners_.push_back(std::move(listener));
}

void TpLeader::Fail(int rank, const absl::Status& reason) {
  std::vector<std::function<void()>> listeners;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ || !failure_.empty()) return;
    failure_ = rank > 0 ? absl::StrCat("tensor-parallel rank ", rank, " failed: ",
                                       reason.message())
                        : std::string(reason.message());
    listeners = listeners_;
    ++failing_;  // Shutdown waits for this call before it destroys the peers
  }
  // Fail every waiting call at once (their ranks are out of step now), and
  // tell the edge (health) before anything slow.
  for (const auto& peer : peers_) {
    peer->MarkLost(absl::UnavailableError(absl::StrCat("the engine FAILED: ", failure())));
  }
  for (const auto& l : listeners) l();
  // A launched child's exit status, when it died (best effort).
  if (rank > 0) {
    const std::string exit = ChildExit(rank);
    if (!exit.empty()) {
      absl::MutexLock lock(&mu_);
      failure_ += exit;
    }
  }
  COLO_LOG(ERROR) << "engine FAILED: " << failure();
  absl::MutexLock lock(&mu_);
  --failing_;
}

absl::Status TpLeader::Diagnose(const absl::Status& error) {
  if (failure().empty()) {
    TpCommand ping;
    ping.mutable_ping();
    // A killed rank's socket is closed already; a hung one misses this.
    const absl::Time deadline = absl::Now() + std::min(options_.heartbeat_timeout, absl::Seconds(5));
    for (const auto& peer : peers_) {
      if (!peer->lost().ok()) continue;
      absl::StatusOr<TpReply> r = peer->Call(ping, deadline);
      if (!r.ok()) break;  // Call marked it lost: the engine failed naming it
    }
    Fail(-1, absl::UnavailableError(absl::StrCat(
                 "a tensor-parallel collective failed and no rank could be named: ",
                 error.message())));
  }
  return FailureStatus();
}

std::string TpLeader::ChildExit(int rank) {
  absl::MutexLock lock(&children_mu_);
  if (rank < 1 || rank > static_cast<int>(children_.size())) return "";
  const pid_t pid = children_[rank - 1];
  if (pid <= 0) return "";
  // A dying child may take a moment to become reapable.
  for (int attempt = 0; attempt < 200; ++attempt) {
    int status = 0;
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      children_[rank - 1] = -pid;
      if (WIFSIGNALED(status)) return absl::StrCat(" (pid ", pid, " killed by signal ", WTERMSIG(status), ")");
      return absl::StrCat(" (pid ", pid, " exited with code ", WEXITSTATUS(status), ")");
    }
    if (r < 0) return "";
    absl::SleepFor(absl::Milliseconds(10));
  }
  return "";
}

std::vector<TpRankInfo> TpLeader::Ranks(int64_t rank0_weight_bytes) const {
  std::vector<TpRankInfo> out;
  TpRankInfo zero;
  zero.rank = 0;
  zero.pid = getpid();
  zero.weight_bytes = rank0_weight_bytes;
  out.push_back(zero);
  for (size_t i = 0; i < peers_.size(); ++i) {
    TpRankInfo info;
    info.rank = static_cast<int>(i) + 1;
    info.pid = peers_[i]->pid();
    info.address = peers_[i]->address();
    info.host = hosts_[i];
    info.weight_bytes = weight_bytes_[i];
    absl::Status lost = peers_[i]->lost();
    if (!lost.ok()) info.error = std::string(lost.message());
    out.push_back(info);
  }
  return out;
}

void TpLeader::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    stop_cv_.SignalAll();
    // A Fail in progress (a reader thread) still uses the peers.
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return failing_ == 0; };
    mu_.Await(absl::Condition(&idle));
  }
  if (heartbeat_.joinable()) heartbeat_.join();
  TpCommand bye;
  bye.mutable_shutdown();
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  std::vector<std::pair<TpPeer*, uint64_t>> sent;
  for (const auto& peer : peers_) {
    if (!peer->lost().ok()) continue;
    absl::StatusOr<uint64_t> id = peer->Send(bye, deadline);
    if (id.ok()) sent.emplace_back(peer.get(), *id);
  }
  for (auto [peer, id] : sent) (void)peer->Final(id, deadline);
  std::vector<bool> lost;
  for (const auto& peer : peers_) lost.push_back(!peer->lost().ok());
  peers_.clear();  // closes the connections
  comm_.reset();
  // Reap launched children; kill those that do not exit in time.
  absl::MutexLock lock(&children_mu_);
  const absl::Time reap_deadline = absl::Now() + absl::Seconds(10);
  for (size_t i = 0; i < children_.size(); ++i) {
    pid_t& pid = children_[i];
    if (pid <= 0) continue;
    // A lost rank (hung, stopped) will not exit by itself.
    if (i < lost.size() && lost[i]) kill(pid, SIGKILL);
    while (true) {
      int status = 0;
      const pid_t r = waitpid(pid, &status, WNOHANG);
      if (r == pid || r < 0) break;
      if (absl::Now() >= reap_deadline) {
        COLO_LOG(WARNING) << "tensor-parallel child " << pid << " did not exit; killing it";
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        break;
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    pid = -pid;
  }
}

TpLeader::~TpLeader() { Shutdown(); }

}  // namespace engine
}  // namespace colo
