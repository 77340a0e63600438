// Append-only journal of the controller's phase transitions (--journal).
//
// File format (version 2):
//   "COLOJRN2"                                   8-byte magic
//   [u32 length][u32 CRC-32C][JournalHeader]     whose journal this is
//   [u32 length][u32 CRC-32C][JournalRecord]...  one frame per transition
// Integers are little endian; the CRC covers the payload. The header names
// the node (--node_id, --engines in rank order) and a random journal_id that
// every record repeats; records carry consecutive seq numbers. A new journal
// is created atomically (temporary file, fsync, rename, fsync of the
// directory), so a journal colo wrote is never empty and never lacks its
// header. Append() writes one record and fdatasyncs before returning, so a
// transition is on disk before it is acknowledged.
//
// What Open() does with each kind of damage (the controller's reaction is
// in controller_impl.h; README "Failure handling"):
//   - torn tail (a crash in the middle of an append: the last frame is
//     incomplete, fails its CRC and ends at EOF, or the tail is zeros): the
//     tail is cut off and the valid records are replayed (kTornTail). Only
//     the record being written when the controller died is lost, and that
//     transition was never acknowledged.
//   - damage in the middle (a frame that fails its checks with valid records
//     of this journal after it), records of another journal spliced in
//     (another journal_id), or a sequence gap; or any damage at the end that
//     is not a torn append: no valid record is dropped. The file as it was is
//     kept as "<path>.corrupt-<unix seconds>", the journal is rewritten
//     (atomically) with every valid record, and the report names each
//     damaged region's offset (kCorrupt, lost_history).
//   - an empty file (colo never leaves one), a truncated or garbled header:
//     whose history it is cannot be told. A non-empty file is kept as
//     "<path>.corrupt-<unix seconds>", a new journal is created, nothing is
//     replayed (kEmptyFile / kDamagedHeader, lost_history).
//   - a header naming another node (node_id or engines differ from Options):
//     Open fails FAILED_PRECONDITION naming both identities and the file; the
//     file is not touched.
//   - a file that is not a colo journal at all (no magic, and not a format-1
//     journal): Open fails FAILED_PRECONDITION naming the file and its first
//     bytes; the file is not touched (it may be something else entirely).
//   - a format-1 journal (records without the magic and header, as colo
//     wrote before): replayed with the rules above and rewritten in format 2
//     with this node's identity (kMigrated unless damaged).
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
    std::string path = "";
    // The node's identity, written into a new journal's header and compared
    // with an existing one's: --node_id (may be empty) and --engines in rank
    // order.
    std::string node_id = "";
    std::vector<std::string> engines = {};
    // Payloads larger than this are treated as corruption on replay and
    // rejected on append.
    uint32_t max_record_bytes = 1 << 20;
    // On open, a journal with more valid records than this is rewritten to
    // hold only the records of the last step (atomically: temp file +
    // rename); replay needs no more (controller_impl.cc).
    int compact_after_records = 10000;
  };

  // What Open() found in the file.
  enum class Recovery {
    kCreated,        // there was no file: a new journal (no history)
    kClean,          // replayed, nothing damaged
    kTornTail,       // an incomplete last append was cut off
    kMigrated,       // a format-1 journal, rewritten with a header
    kCorrupt,        // damage before the end: kept aside, valid records kept
    kEmptyFile,      // a 0-byte file: no history, a new journal
    kDamagedHeader,  // truncated/garbled header: kept aside, a new journal
  };
  struct Report {
    Recovery recovery = Recovery::kCreated;
    // True for kCorrupt, kEmptyFile and kDamagedHeader: records may be
    // missing, so the replayed state cannot be trusted.
    bool lost_history = false;
    // What was found and done, naming the file, offsets and the kept copy
    // (empty for kCreated and kClean).
    std::string message;
    // Bytes not replayed (torn tail or damaged regions).
    int64_t dropped_bytes = 0;
    // Where the damaged file was kept ("" when not).
    std::string quarantine_path;
  };

  // Opens (creating if missing) and replays the journal as described above.
  // Errors: FAILED_PRECONDITION for another node's journal or a file that is
  // not a journal (nothing is modified); INTERNAL on I/O failures, with the
  // path and errno text.
  static absl::StatusOr<std::unique_ptr<Journal>> Open(const Options& options);
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // Valid records read by Open(), oldest first (before any compaction).
  const std::vector<::colo::v1::JournalRecord>& replayed() const { return replayed_; }
  const Report& report() const { return report_; }
  int64_t dropped_bytes() const { return report_.dropped_bytes; }
  const ::colo::v1::JournalHeader& header() const { return header_; }

  // Appends `record` (seq and journal_id are assigned) and fdatasyncs.
  // INTERNAL on write/fsync failure; the journal is then unusable.
  absl::Status Append(::colo::v1::JournalRecord record);

  const std::string& path() const { return options_.path; }

 private:
  Journal(const Options& options, int fd) : options_(options), fd_(fd) {}

  // Atomically replaces the file with the header and `records` (renumbered
  // consecutively from the first one's seq), reopens it for appending.
  absl::Status Rewrite(const std::vector<::colo::v1::JournalRecord>& records);

  const Options options_;
  int fd_;
  ::colo::v1::JournalHeader header_;
  int64_t next_seq_ = 1;
  std::vector<::colo::v1::JournalRecord> replayed_;
  Report report_;
  bool broken_ = false;
};

// "torn_tail", "corrupt", ... (for logs).
const char* RecoveryName(Journal::Recovery recovery);

}  // namespace controller
}  // namespace colo

#endif  // COLO_CONTROLLER_JOURNAL_H_
