#include "controller/journal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "proto/logging/logging.h"
#include "proto/status/status_macros.h"

namespace colo {
namespace controller {
namespace {

constexpr size_t kHeaderBytes = 8;

std::array<uint32_t, 256> MakeCrcTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (0x82F63B78u ^ (c >> 1)) : (c >> 1);
    table[i] = c;
  }
  return table;
}

void PutU32(uint32_t v, char* out) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

uint32_t GetU32(const char* in) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= static_cast<uint32_t>(static_cast<unsigned char>(in[i])) << (8 * i);
  return v;
}

absl::Status Errno(absl::string_view what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " '", path, "': ", std::strerror(errno)));
}

absl::Status WriteAll(int fd, const std::string& bytes, const std::string& path) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("write journal", path);
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadAll(int fd, const std::string& path) {
  std::string data;
  char buf[1 << 16];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("read journal", path);
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
  }
  return data;
}

std::string Frame(const ::colo::v1::JournalRecord& record) {
  std::string payload;
  record.SerializeToString(&payload);
  std::string framed(kHeaderBytes, '\0');
  PutU32(static_cast<uint32_t>(payload.size()), &framed[0]);
  PutU32(Crc32c(payload), &framed[4]);
  framed += payload;
  return framed;
}

absl::Status FsyncDir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash == 0 ? 1 : slash);
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return Errno("open journal directory", dir);
  int rc = ::fsync(dfd);
  ::close(dfd);
  if (rc != 0) return Errno("fsync journal directory", dir);
  return absl::OkStatus();
}

}  // namespace

uint32_t Crc32c(absl::string_view data) {
  static const std::array<uint32_t, 256> kTable = MakeCrcTable();
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : data) c = kTable[(c ^ b) & 0xff] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

absl::StatusOr<std::unique_ptr<Journal>> Journal::Open(const Options& options) {
  if (options.path.empty()) return absl::InvalidArgumentError("journal path is empty");
  struct stat st;
  const bool existed = ::stat(options.path.c_str(), &st) == 0;
  int fd = ::open(options.path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("open journal", options.path);
  if (!existed) {
    // Make the new file's directory entry durable before relying on it.
    absl::Status synced = FsyncDir(options.path);
    if (!synced.ok()) {
      ::close(fd);
      return synced;
    }
  }
  std::unique_ptr<Journal> journal(new Journal(options, fd));

  ASSIGN_OR_RETURN(std::string data, ReadAll(fd, options.path));
  size_t offset = 0;
  while (offset < data.size()) {
    if (data.size() - offset < kHeaderBytes) break;
    const uint32_t length = GetU32(&data[offset]);
    const uint32_t crc = GetU32(&data[offset + 4]);
    if (length > options.max_record_bytes) break;
    if (data.size() - offset - kHeaderBytes < length) break;
    absl::string_view payload(&data[offset + kHeaderBytes], length);
    if (Crc32c(payload) != crc) break;
    ::colo::v1::JournalRecord record;
    if (!record.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) break;
    journal->next_seq_ = record.seq() + 1;
    journal->replayed_.push_back(std::move(record));
    offset += kHeaderBytes + length;
  }
  if (offset < data.size()) {
    journal->dropped_bytes_ = static_cast<int64_t>(data.size() - offset);
    COLO_LOG(WARNING) << "journal " << options.path << ": dropping " << journal->dropped_bytes_
                      << " bytes of a torn or corrupt record at offset " << offset << " after "
                      << journal->replayed_.size() << " valid records";
    if (::ftruncate(fd, static_cast<off_t>(offset)) != 0) {
      return Errno("truncate journal", options.path);
    }
    if (::fsync(fd) != 0) return Errno("fsync journal", options.path);
  }

  if (static_cast<int>(journal->replayed_.size()) > options.compact_after_records) {
    const std::string tmp = options.path + ".compact";
    int tfd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (tfd < 0) return Errno("open journal", tmp);
    absl::Status written = WriteAll(tfd, Frame(journal->replayed_.back()), tmp);
    if (written.ok() && ::fsync(tfd) != 0) written = Errno("fsync journal", tmp);
    ::close(tfd);
    RETURN_IF_ERROR(written);
    if (::rename(tmp.c_str(), options.path.c_str()) != 0) return Errno("rename journal", tmp);
    RETURN_IF_ERROR(FsyncDir(options.path));
    ::close(journal->fd_);
    journal->fd_ = ::open(options.path.c_str(), O_RDWR | O_CLOEXEC);
    if (journal->fd_ < 0) return Errno("reopen journal", options.path);
  }
  if (::lseek(journal->fd_, 0, SEEK_END) < 0) return Errno("seek journal", options.path);
  return journal;
}

Journal::~Journal() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status Journal::Append(::colo::v1::JournalRecord record) {
  if (broken_) {
    return absl::InternalError(
        absl::StrCat("journal '", options_.path, "' failed earlier; restart the controller"));
  }
  record.set_seq(next_seq_);
  const std::string framed = Frame(record);
  if (framed.size() - kHeaderBytes > options_.max_record_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("journal record of ", framed.size(),
                                                   " bytes exceeds ", options_.max_record_bytes));
  }
  absl::Status status = WriteAll(fd_, framed, options_.path);
  if (status.ok() && ::fdatasync(fd_) != 0) status = Errno("fsync journal", options_.path);
  if (!status.ok()) {
    broken_ = true;
    return status;
  }
  ++next_seq_;
  return absl::OkStatus();
}

}  // namespace controller
}  // namespace colo
