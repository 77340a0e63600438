// Byte-level access to a controller journal file (controller/journal.h),
// for tests that damage one on purpose: read and write it whole, and find
// the record frames.
#ifndef COLO_CONTROLLER_TESTING_JOURNAL_BYTES_H_
#define COLO_CONTROLLER_TESTING_JOURNAL_BYTES_H_

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace colo {
namespace controller {

// The whole file ("" when unreadable).
std::string ReadFileBytes(const std::string& path);
// Replaces the file with `data`.
void WriteFileBytes(const std::string& path, const std::string& data);

// [offset, length) of every complete record frame ([u32 length][u32 CRC]
// [payload]) of `data`, after the magic and the header frame when the file
// starts with the magic (format 2), from offset 0 otherwise (format 1).
std::vector<std::pair<size_t, size_t>> JournalRecordFrames(const std::string& data);

}  // namespace controller
}  // namespace colo

#endif  // COLO_CONTROLLER_TESTING_JOURNAL_BYTES_H_
