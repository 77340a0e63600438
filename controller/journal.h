// Append-only journal of the controller's phase transitions (--journal).
//
// File format: a sequence of records, each
//   [u32 payload length, little endian][u32 CRC-32C of the payload][payload]
// where the payload is a serialized colo.v1.JournalRecord. Append() writes one
// record and fsyncs the file before returning, so a transition is on disk
// before it is acknowledged. Open() replays the file; a torn or corrupt record
// (short read, absurd length, CRC mismatch) ends the journal: it and
// everything after it are truncated away and counted in dropped_bytes().
//
// Thread-compatible: the controller serialises calls (not thread-safe).
#ifndef COLO_CONTROLLER_JOURNAL_H_
#define COLO_CONTROLLER_JOURNAL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "colo/v1/controller.pb.h"

namespace colo {
namespace controller {

// CRC-32C (Castagnoli) of `data`.
uint32_t Crc32c(absl::string_view data);

class Journal {
 public:
  struct Options {
    std::string path;
    // Payloads larger than this are treated as corruption on replay and
    // rejected on append.
    uint32_t max_record_bytes = 1 << 20;
    // On open, a journal with more valid records than this is rewritten to
    // hold only the last one (atomically: temp file + rename).
    int compact_after_records = 10000;
  };

  // Opens (creating if missing) and replays the journal. Errors: INTERNAL on
  // I/O failures, with the path and errno text.
  static absl::StatusOr<std::unique_ptr<Journal>> Open(const Options& options);
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // Records read by Open(), oldest first (before any compaction).
  const std::vector<::colo::v1::JournalRecord>& replayed() const { return replayed_; }
  // Bytes of a torn/corrupt tail removed by Open().
  int64_t dropped_bytes() const { return dropped_bytes_; }

  // Appends `record` (seq is assigned: last seq + 1) and fsyncs.
  // INTERNAL on write/fsync failure; the journal is then unusable.
  absl::Status Append(::colo::v1::JournalRecord record);

  const std::string& path() const { return options_.path; }

 private:
  Journal(const Options& options, int fd) : options_(options), fd_(fd) {}

  const Options options_;
  int fd_;
  int64_t next_seq_ = 1;
  std::vector<::colo::v1::JournalRecord> replayed_;
  int64_t dropped_bytes_ = 0;
  bool broken_ = false;
};

}  // namespace controller
}  // namespace colo

#endif  // COLO_CONTROLLER_JOURNAL_H_
