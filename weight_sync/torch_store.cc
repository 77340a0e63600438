#include "weight_sync/torch_store.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "weight_sync/socket_io.h"

namespace colo {
namespace weight_sync {
namespace {

// c10d::detail::validationMagicNumber.
constexpr uint32_t kValidationMagic = 0x3C85F7CE;
// PING's nonce: its third byte is >= 0x80 (see the header comment). "co" +
// 0xEC + "o".
constexpr uint8_t kProbeNonce[4] = {0x63, 0x6f, 0xec, 0x6f};

// Query types (see the table in the header).
constexpr int kV2Validate = 0;
constexpr int kV2Ping = 13;

// Keys and values longer than this are not part of a rendezvous.
constexpr uint64_t kMaxValueBytes = 64ull << 20;

void PutU64(std::string* out, uint64_t v) {
  char b[8];
  PutU64Le(b, v);
  out->append(b, 8);
}

void PutBytes(std::string* out, const std::string& s) {
  PutU64(out, s.size());
  out->append(s);
}

// Opens a connection and sends VALIDATE + PING; returns the fd when a 2.x
// server echoed the nonce, -1 when the server dropped the connection (1.x).
absl::StatusOr<int> ProbeV2(const std::string& ip, int port, absl::Time deadline,
                            const std::string& what, const std::string& peer) {
  absl::StatusOr<int> fd = ConnectWithRetry(ip, port, deadline, what);
  if (!fd.ok()) return fd.status();
  std::string probe;
  probe.push_back(static_cast<char>(kV2Validate));
  for (int i = 0; i < 4; ++i) probe.push_back(static_cast<char>(kValidationMagic >> (8 * i)));
  probe.push_back(static_cast<char>(kV2Ping));
  probe.append(reinterpret_cast<const char*>(kProbeNonce), 4);
  absl::Status st = SendAll(*fd, probe.data(), probe.size(), deadline, peer);
  unsigned char reply[4];
  if (st.ok()) st = RecvAll(*fd, reply, sizeof(reply), deadline, peer);
  if (st.ok() && std::memcmp(reply, kProbeNonce, 4) == 0) return *fd;
  close(*fd);
  if (absl::IsDeadlineExceeded(st)) {
    return absl::DeadlineExceededError(absl::StrCat(
        "the torch TCPStore at ", peer, " did not answer the connection probe: ",
        st.message()));
  }
  if (st.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the server at ", peer, " answered the TCPStore ping with other bytes; "
        "is it a torch.distributed TCPStore?"));
  }
  return -1;  // dropped: a torch 1.x server
}

}  // namespace

const char* TorchStoreProtocolName(TorchStoreProtocol protocol) {
  return protocol == TorchStoreProtocol::kV2 ? "torch 2.x" : "torch 1.x";
}

absl::StatusOr<std::unique_ptr<TorchStoreClient>> TorchStoreClient::Connect(
    const Options& options) {
  if (options.master_address.empty()) {
    return absl::InvalidArgumentError(
        "master_address is empty: give the trainer's torch.distributed "
        "init_method host (tcp://HOST:PORT)");
  }
  if (options.master_port < 1 || options.master_port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "master_port ", options.master_port, " is not a TCP port (want 1..65535)"));
  }
  absl::StatusOr<std::string> ip = ResolveIpv4(options.master_address);
  if (!ip.ok()) return ip.status();
  const std::string peer = absl::StrCat(options.master_address, ":", options.master_port);
  const std::string what = "the trainer's torch TCPStore";
  absl::StatusOr<int> fd = ProbeV2(*ip, options.master_port, options.deadline, what, peer);
  if (!fd.ok()) return fd.status();
  TorchStoreProtocol protocol = TorchStoreProtocol::kV2;
  if (*fd < 0) {
    protocol = TorchStoreProtocol::kV1;
    fd = ConnectWithRetry(*ip, options.master_port, options.deadline, what);
    if (!fd.ok()) return fd.status();
  }
  std::unique_ptr<TorchStoreClient> client(new TorchStoreClient(
      *fd, protocol, LocalIpv4(*fd), peer, options.io_timeout));
  // Rank 0's TCPStore constructor counts its workers on "init/".
  absl::StatusOr<int64_t> joined = client->Add("init/", 1);
  if (!joined.ok()) {
    return absl::Status(joined.status().code(),
                        absl::StrCat("joining the torch TCPStore at ", peer, " (",
                                     TorchStoreProtocolName(protocol),
                                     "): ", joined.status().message()));
  }
  return client;
}

TorchStoreClient::~TorchStoreClient() {
  absl::MutexLock lock(&mu_);
  if (fd_ >= 0) close(fd_);
}

uint8_t TorchStoreClient::Code(int v2_code, int v1_code) const {
  return static_cast<uint8_t>(protocol_ == TorchStoreProtocol::kV2 ? v2_code : v1_code);
}

absl::Status TorchStoreClient::Broken(absl::Status st) {
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
  broken_ = absl::Status(st.code(), absl::StrCat("torch TCPStore connection to ", peer_,
                                                 " is closed: ", st.message()));
  return st;
}

absl::Status TorchStoreClient::Set(const std::string& key, const std::string& value) {
  absl::MutexLock lock(&mu_);
  if (!broken_.ok()) return broken_;
  std::string msg(1, static_cast<char>(Code(1, 0)));
  PutBytes(&msg, key);
  PutBytes(&msg, value);
  absl::Status st = SendAll(fd_, msg.data(), msg.size(), absl::Now() + io_timeout_, peer_);
  if (!st.ok()) return Broken(st);
  return absl::OkStatus();
}

absl::Status TorchStoreClient::WaitLocked(const std::vector<std::string>& keys,
                                          absl::Time deadline) {
  if (!broken_.ok()) return broken_;
  std::string msg(1, static_cast<char>(Code(6, 5)));
  PutU64(&msg, keys.size());
  for (const std::string& k : keys) PutBytes(&msg, k);
  absl::Status st = SendAll(fd_, msg.data(), msg.size(), absl::Now() + io_timeout_, peer_);
  if (!st.ok()) return Broken(st);
  unsigned char reply = 0xff;
  st = RecvAll(fd_, &reply, 1, deadline, peer_);
  if (absl::IsDeadlineExceeded(st)) {
    Broken(st).IgnoreError();
    return absl::DeadlineExceededError(absl::StrCat(
        "torch TCPStore key(s) \"", absl::StrJoin(keys, "\", \""),
        "\" were not set before the deadline (did the trainer call "
        "init_process_group / new_group with this world_size?)"));
  }
  if (!st.ok()) return Broken(st);
  if (reply != 0) {
    return Broken(absl::InternalError(absl::StrCat(
        "unexpected WAIT reply ", static_cast<int>(reply), " from ", peer_)));
  }
  return absl::OkStatus();
}

absl::Status TorchStoreClient::Wait(const std::vector<std::string>& keys,
                                    absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  return WaitLocked(keys, deadline);
}

absl::StatusOr<std::string> TorchStoreClient::Get(const std::string& key,
                                                  absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  absl::Status st = WaitLocked({key}, deadline);
  if (!st.ok()) return st;
  std::string msg(1, static_cast<char>(Code(3, 2)));
  PutBytes(&msg, key);
  const absl::Time io_deadline = absl::Now() + io_timeout_;
  st = SendAll(fd_, msg.data(), msg.size(), io_deadline, peer_);
  unsigned char len_bytes[8];
  if (st.ok()) st = RecvAll(fd_, len_bytes, 8, io_deadline, peer_);
  if (!st.ok()) return Broken(st);
  const uint64_t len = GetU64Le(len_bytes);
  if (len > kMaxValueBytes) {
    return Broken(absl::InternalError(absl::StrCat(
        "the value of torch TCPStore key \"", key, "\" has ", len,
        " bytes; a rendezvous value is far smaller")));
  }
  std::string value(len, '\0');
  st = RecvAll(fd_, value.data(), len, io_deadline, peer_);
  if (!st.ok()) return Broken(st);
  return value;
}

absl::StatusOr<int64_t> TorchStoreClient::Add(const std::string& key, int64_t delta) {
  absl::MutexLock lock(&mu_);
  if (!broken_.ok()) return broken_;
  std::string msg(1, static_cast<char>(Code(4, 3)));
  PutBytes(&msg, key);
  PutU64(&msg, static_cast<uint64_t>(delta));
  const absl::Time io_deadline = absl::Now() + io_timeout_;
  absl::Status st = SendAll(fd_, msg.data(), msg.size(), io_deadline, peer_);
  unsigned char reply[8];
  if (st.ok()) st = RecvAll(fd_, reply, 8, io_deadline, peer_);
  if (!st.ok()) return Broken(st);
  return static_cast<int64_t>(GetU64Le(reply));
}

}  // namespace weight_sync
}  // namespace colo
