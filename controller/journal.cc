#include "controller/journal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "proto/logging/logging.h"
#include "proto/status/status_macros.h"

namespace colo {
namespace controller {
namespace {

using ::colo::v1::JournalHeader;
using ::colo::v1::JournalRecord;

constexpr char kMagic[] = "COLOJRN2";
constexpr size_t kMagicBytes = 8;
constexpr size_t kFrameHeaderBytes = 8;
constexpr int32_t kFormatVersion = 2;

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

absl::Status WriteAll(int fd, absl::string_view bytes, const std::string& path) {
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

std::string Frame(const google::protobuf::MessageLite& message) {
  std::string payload;
  message.SerializeToString(&payload);
  std::string framed(kFrameHeaderBytes, '\0');
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

// Writes `bytes` to a new file `path` (which must not exist) and fsyncs it.
absl::Status WriteNewFile(const std::string& path, absl::string_view bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("create", path);
  absl::Status written = WriteAll(fd, bytes, path);
  if (written.ok() && ::fsync(fd) != 0) written = Errno("fsync", path);
  ::close(fd);
  return written;
}

enum class FrameError { kNone, kIncomplete, kTooLong, kBadCrc, kUnparsable };

struct ParsedFrame {
  FrameError error = FrameError::kNone;
  // Bytes of the whole frame when its length is known (for kIncomplete: the
  // rest of the file).
  size_t length = 0;
  std::string detail;
};

ParsedFrame ParseFrame(absl::string_view data, size_t offset, uint32_t max_bytes,
                       google::protobuf::MessageLite* out) {
  ParsedFrame f;
  const size_t remaining = data.size() - offset;
  if (remaining < kFrameHeaderBytes) {
    f.error = FrameError::kIncomplete;
    f.length = remaining;
    f.detail = absl::StrCat("only ", remaining, " bytes of a record's 8-byte frame header");
    return f;
  }
  const uint32_t length = GetU32(&data[offset]);
  const uint32_t crc = GetU32(&data[offset + 4]);
  if (length > max_bytes) {
    f.error = FrameError::kTooLong;
    f.detail = absl::StrCat("a record length of ", length, " bytes (the limit is ", max_bytes, ")");
    return f;
  }
  if (remaining - kFrameHeaderBytes < length) {
    f.error = FrameError::kIncomplete;
    f.length = remaining;
    f.detail = absl::StrCat("a record of ", length, " bytes cut short after ",
                            remaining - kFrameHeaderBytes, " bytes");
    return f;
  }
  f.length = kFrameHeaderBytes + length;
  const absl::string_view payload = data.substr(offset + kFrameHeaderBytes, length);
  if (Crc32c(payload) != crc) {
    f.error = FrameError::kBadCrc;
    f.detail = absl::StrCat("a record of ", length, " bytes that fails its CRC check");
    return f;
  }
  if (!out->ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    f.error = FrameError::kUnparsable;
    f.detail = absl::StrCat("a record of ", length, " bytes whose payload does not parse");
  }
  return f;
}

struct Region {
  size_t offset = 0;
  size_t bytes = 0;
  std::string what;
};

struct Scan {
  std::vector<JournalRecord> records;
  // Damaged regions with valid records of this journal after them.
  std::vector<Region> damaged;
  // Bytes at the end that hold no valid record of this journal.
  bool has_tail = false;
  Region tail;
  // The tail is what a crash in the middle of an append leaves.
  bool tail_torn = false;
};

bool AllZero(absl::string_view bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](char c) { return c == 0; });
}

// Reads record frames from `start`. With `journal_id` != 0 every record must
// carry it (format 2); records must have consecutive seq numbers. After a
// damaged frame the scan resumes at the next valid record of this journal
// with a higher seq, found byte by byte.
Scan ScanRecords(absl::string_view data, size_t start, uint64_t journal_id, uint32_t max_bytes) {
  Scan scan;
  int64_t last_seq = -1;
  auto ours = [&](const JournalRecord& r) { return journal_id == 0 || r.journal_id() == journal_id; };
  auto next_in_line = [&](const JournalRecord& r) {
    return ours(r) && (last_seq < 0 || r.seq() == last_seq + 1);
  };
  auto find_next = [&](size_t from) -> size_t {
    for (size_t pos = from; pos + kFrameHeaderBytes <= data.size(); ++pos) {
      const uint32_t length = GetU32(&data[pos]);
      if (length > max_bytes || data.size() - pos - kFrameHeaderBytes < length) continue;
      JournalRecord r;
      if (ParseFrame(data, pos, max_bytes, &r).error != FrameError::kNone) continue;
      if (ours(r) && r.seq() > last_seq) return pos;
    }
    return std::string::npos;
  };
  size_t offset = start;
  // Set after a damaged region: the record find_next found resumes the
  // sequence (the seq numbers in between were in the damage).
  bool resynced = false;
  while (offset < data.size()) {
    JournalRecord record;
    const ParsedFrame f = ParseFrame(data, offset, max_bytes, &record);
    std::string what = f.detail;
    if (f.error == FrameError::kNone) {
      if (next_in_line(record) || (resynced && ours(record) && record.seq() > last_seq)) {
        resynced = false;
        last_seq = record.seq();
        scan.records.push_back(std::move(record));
        offset += f.length;
        continue;
      }
      what = !ours(record)
                 ? absl::StrFormat("a record of another journal (journal_id %016x, seq %d)",
                                   record.journal_id(), record.seq())
                 : absl::StrCat("record seq ", record.seq(), " where seq ", last_seq + 1,
                                " was due");
    }
    const size_t next = find_next(offset + 1);
    if (next == std::string::npos) {
      scan.has_tail = true;
      scan.tail = {offset, data.size() - offset, what};
      scan.tail_torn = f.error == FrameError::kIncomplete ||
                       (f.error == FrameError::kBadCrc && offset + f.length == data.size()) ||
                       AllZero(data.substr(offset));
      break;
    }
    scan.damaged.push_back({offset, next - offset, what});
    offset = next;
    resynced = true;
  }
  return scan;
}

std::string DescribeRecord(const JournalRecord& r) {
  return absl::StrCat("seq ", r.seq(), ", ", ::colo::v1::Phase_Name(r.phase()), " at step ",
                      r.step(), r.op().empty() ? "" : absl::StrCat(" (", r.op(), ")"));
}

std::string Identity(const std::string& node_id, const std::vector<std::string>& engines) {
  return absl::StrCat("node_id '", node_id, "' and engines [", absl::StrJoin(engines, ","), "]");
}

std::string FirstBytes(absl::string_view data) {
  std::string hex;
  for (size_t i = 0; i < std::min<size_t>(data.size(), 16); ++i) {
    absl::StrAppendFormat(&hex, "%s%02x", i == 0 ? "" : " ", static_cast<unsigned char>(data[i]));
  }
  return hex;
}

uint64_t NewJournalId() {
  std::random_device device;
  uint64_t id = (static_cast<uint64_t>(device()) << 32) ^ device() ^
                static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()));
  return id == 0 ? 1 : id;
}

}  // namespace

uint32_t Crc32c(absl::string_view data) {
  static const std::array<uint32_t, 256> kTable = MakeCrcTable();
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : data) c = kTable[(c ^ b) & 0xff] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

const char* RecoveryName(Journal::Recovery recovery) {
  switch (recovery) {
    case Journal::Recovery::kCreated:
      return "created";
    case Journal::Recovery::kClean:
      return "clean";
    case Journal::Recovery::kTornTail:
      return "torn_tail";
    case Journal::Recovery::kMigrated:
      return "migrated";
    case Journal::Recovery::kCorrupt:
      return "corrupt";
    case Journal::Recovery::kEmptyFile:
      return "empty_file";
    case Journal::Recovery::kDamagedHeader:
      return "damaged_header";
  }
  return "unknown";
}

absl::StatusOr<std::unique_ptr<Journal>> Journal::Open(const Options& options) {
  if (options.path.empty()) return absl::InvalidArgumentError("journal path is empty");
  const std::string& path = options.path;
  // A creation or rewrite a crash interrupted left at most this behind.
  ::unlink((path + ".tmp").c_str());
  std::unique_ptr<Journal> journal(new Journal(options, -1));
  Report& report = journal->report_;

  JournalHeader fresh;
  fresh.set_format_version(kFormatVersion);
  fresh.set_journal_id(NewJournalId());
  fresh.set_node_id(options.node_id);
  for (const std::string& e : options.engines) fresh.add_engines(e);
  fresh.set_created_us(absl::ToUnixMicros(absl::Now()));

  int rfd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (rfd < 0 && errno != ENOENT) return Errno("open journal", path);
  if (rfd < 0) {
    journal->header_ = fresh;
    RETURN_IF_ERROR(journal->Rewrite({}));
    report.recovery = Recovery::kCreated;
    return journal;
  }
  absl::StatusOr<std::string> read = ReadAll(rfd, path);
  ::close(rfd);
  RETURN_IF_ERROR(read.status());
  const std::string& data = *read;

  // Keeps the file as it was next to the journal; returns its path.
  auto quarantine = [&]() -> absl::StatusOr<std::string> {
    const std::string base =
        absl::StrCat(path, ".corrupt-", absl::ToUnixSeconds(absl::Now()));
    std::string kept = base;
    for (int i = 1; ::access(kept.c_str(), F_OK) == 0; ++i) kept = absl::StrCat(base, "-", i);
    RETURN_IF_ERROR(WriteNewFile(kept, data));
    RETURN_IF_ERROR(FsyncDir(kept));
    return kept;
  };
  // Starts over with a new journal after keeping the old file aside.
  auto start_over = [&](Recovery recovery, const std::string& what) -> absl::Status {
    report.recovery = recovery;
    report.lost_history = true;
    report.dropped_bytes = static_cast<int64_t>(data.size());
    report.message = what;
    if (!data.empty()) {
      ASSIGN_OR_RETURN(report.quarantine_path, quarantine());
      absl::StrAppend(&report.message, "; the file as it was is kept as '",
                      report.quarantine_path, "'");
    }
    absl::StrAppend(&report.message, "; a new journal was started");
    journal->header_ = fresh;
    return journal->Rewrite({});
  };

  if (data.empty()) {
    RETURN_IF_ERROR(start_over(
        Recovery::kEmptyFile,
        absl::StrCat("journal '", path, "' is empty (0 bytes); colo writes a header when it "
                     "creates a journal, so the file was truncated or replaced and the node's "
                     "history is lost")));
    COLO_LOG(ERROR) << report.message;
    return journal;
  }

  uint64_t journal_id = 0;
  size_t records_start = 0;
  bool migrate = false;
  if (data.size() >= kMagicBytes && data.compare(0, kMagicBytes, kMagic) == 0) {
    JournalHeader header;
    const ParsedFrame f = ParseFrame(data, kMagicBytes, options.max_record_bytes, &header);
    if (f.error != FrameError::kNone) {
      RETURN_IF_ERROR(start_over(
          Recovery::kDamagedHeader,
          absl::StrCat("journal '", path, "' has a damaged header at offset ", kMagicBytes, " (",
                       f.detail, "): whose journal it is cannot be told, so none of its ",
                       data.size(), " bytes were replayed")));
      COLO_LOG(ERROR) << report.message;
      return journal;
    }
    if (header.format_version() != kFormatVersion) {
      return absl::FailedPreconditionError(absl::StrCat(
          "journal '", path, "' has format version ", header.format_version(), "; this colo-controller reads version ",
          kFormatVersion, ": run the colo-controller that wrote it, or move the file away"));
    }
    const std::vector<std::string> engines(header.engines().begin(), header.engines().end());
    if (header.node_id() != options.node_id || engines != options.engines) {
      return absl::FailedPreconditionError(absl::StrCat(
          "journal '", path, "' belongs to another node: its header names ",
          Identity(header.node_id(), engines), " (created ",
          absl::FormatTime(absl::FromUnixMicros(header.created_us())), "), this controller runs with ",
          Identity(options.node_id, options.engines),
          ". Point --journal at this node's own journal; if the node's --node_id or --engines "
          "changed on purpose, move the file away (it was not modified) and restart: the "
          "controller then starts without history and checks what the engines report"));
    }
    journal->header_ = header;
    journal_id = header.journal_id();
    records_start = kMagicBytes + f.length;
  } else if (data.size() < kMagicBytes && absl::string_view(kMagic).substr(0, data.size()) == data) {
    RETURN_IF_ERROR(start_over(
        Recovery::kDamagedHeader,
        absl::StrCat("journal '", path, "' is truncated inside its header (", data.size(),
                     " bytes): whose journal it is cannot be told")));
    COLO_LOG(ERROR) << report.message;
    return journal;
  } else {
    JournalRecord first;
    if (ParseFrame(data, 0, options.max_record_bytes, &first).error != FrameError::kNone) {
      return absl::FailedPreconditionError(absl::StrCat(
          "journal '", path, "' is not a colo journal: it does not start with the journal magic "
          "\"", kMagic, "\" and is not a header-less (format 1) journal either (", data.size(),
          " bytes, first bytes ", FirstBytes(data), "). colo-controller does not modify a file "
          "it does not recognise. If --journal names the wrong file, fix the flag; if this is "
          "the node's journal and it was overwritten, move it away (mv '", path, "' '", path,
          ".bad') and restart: the controller then starts without history and, if the engines "
          "are mid-cycle, enters FAILED for `coloctl recover`"));
    }
    migrate = true;
    journal->header_ = fresh;
  }

  Scan scan = ScanRecords(data, records_start, journal_id, options.max_record_bytes);
  journal->replayed_ = std::move(scan.records);
  if (!journal->replayed_.empty()) journal->next_seq_ = journal->replayed_.back().seq() + 1;
  const bool corrupt = !scan.damaged.empty() || (scan.has_tail && !scan.tail_torn);
  for (const Region& r : scan.damaged) report.dropped_bytes += static_cast<int64_t>(r.bytes);
  if (scan.has_tail) report.dropped_bytes += static_cast<int64_t>(scan.tail.bytes);

  if (corrupt) {
    std::vector<std::string> regions;
    for (const Region& r : scan.damaged) {
      regions.push_back(absl::StrCat(r.bytes, " bytes at offset ", r.offset, " (", r.what,
                                     ") with valid records after them"));
    }
    if (scan.has_tail) {
      regions.push_back(absl::StrCat(scan.tail.bytes, " bytes at offset ", scan.tail.offset,
                                     " at the end (", scan.tail.what,
                                     "), not what an interrupted append leaves"));
    }
    report.recovery = Recovery::kCorrupt;
    report.lost_history = true;
    report.message = absl::StrCat(
        "journal '", path, "' is damaged: ", absl::StrJoin(regions, "; "), ". ",
        journal->replayed_.size(), " valid records were kept",
        journal->replayed_.empty() ? ""
                                   : absl::StrCat(" (the last: ",
                                                  DescribeRecord(journal->replayed_.back()), ")"),
        ", but records may be missing");
    ASSIGN_OR_RETURN(report.quarantine_path, quarantine());
    absl::StrAppend(&report.message, "; the file as it was is kept as '", report.quarantine_path,
                    "' and the journal was rewritten with the valid records");
    RETURN_IF_ERROR(journal->Rewrite(journal->replayed_));
    COLO_LOG(ERROR) << report.message;
  } else if (migrate) {
    report.recovery = Recovery::kMigrated;
    report.message = absl::StrCat("journal '", path, "' was in format 1 (no header): its ",
                                  journal->replayed_.size(),
                                  " records were rewritten in format 2 for ",
                                  Identity(options.node_id, options.engines));
    if (scan.has_tail) {
      absl::StrAppend(&report.message, " (a torn last record of ", scan.tail.bytes,
                      " bytes was dropped)");
    }
    RETURN_IF_ERROR(journal->Rewrite(journal->replayed_));
    COLO_LOG(WARNING) << report.message;
  } else {
    journal->fd_ = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (journal->fd_ < 0) return Errno("open journal", path);
    if (scan.has_tail) {
      report.recovery = Recovery::kTornTail;
      report.message = absl::StrCat(
          "journal '", path, "': cut off a torn last record (", scan.tail.bytes,
          " bytes at offset ", scan.tail.offset, ": ", scan.tail.what, ") after ",
          journal->replayed_.size(),
          " valid records; a crash in the middle of an append leaves this, and that transition "
          "was never acknowledged");
      COLO_LOG(WARNING) << report.message;
      if (::ftruncate(journal->fd_, static_cast<off_t>(scan.tail.offset)) != 0) {
        return Errno("truncate journal", path);
      }
      if (::fsync(journal->fd_) != 0) return Errno("fsync journal", path);
    } else {
      report.recovery = Recovery::kClean;
    }
  }

  if (static_cast<int>(journal->replayed_.size()) > options.compact_after_records) {
    // Replay needs only the records of the last step (a contiguous suffix:
    // steps never decrease).
    const int64_t step = journal->replayed_.back().step();
    auto first = journal->replayed_.end();
    while (first != journal->replayed_.begin() && (first - 1)->step() == step) --first;
    RETURN_IF_ERROR(journal->Rewrite({first, journal->replayed_.end()}));
  }
  if (::lseek(journal->fd_, 0, SEEK_END) < 0) return Errno("seek journal", path);
  return journal;
}

absl::Status Journal::Rewrite(const std::vector<JournalRecord>& records) {
  const std::string& path = options_.path;
  std::string bytes(kMagic, kMagicBytes);
  bytes += Frame(header_);
  // Consecutive seq numbers from the first record's (a rewrite after damage
  // closes the gaps the damaged regions left).
  const int64_t first_seq = records.empty() ? 1 : std::max<int64_t>(1, records.front().seq());
  for (size_t i = 0; i < records.size(); ++i) {
    JournalRecord record = records[i];
    record.set_journal_id(header_.journal_id());
    record.set_seq(first_seq + static_cast<int64_t>(i));
    bytes += Frame(record);
  }
  if (!records.empty()) next_seq_ = first_seq + static_cast<int64_t>(records.size());
  const std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());
  RETURN_IF_ERROR(WriteNewFile(tmp, bytes));
  if (::rename(tmp.c_str(), path.c_str()) != 0) return Errno("rename journal", tmp);
  RETURN_IF_ERROR(FsyncDir(path));
  if (fd_ >= 0) ::close(fd_);
  fd_ = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd_ < 0) return Errno("reopen journal", path);
  if (::lseek(fd_, 0, SEEK_END) < 0) return Errno("seek journal", path);
  return absl::OkStatus();
}

Journal::~Journal() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status Journal::Append(JournalRecord record) {
  if (broken_) {
    return absl::InternalError(
        absl::StrCat("journal '", options_.path, "' failed earlier; restart the controller"));
  }
  record.set_seq(next_seq_);
  record.set_journal_id(header_.journal_id());
  const std::string framed = Frame(record);
  if (framed.size() - kFrameHeaderBytes > options_.max_record_bytes) {
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
