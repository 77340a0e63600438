#include "engine/tp/tp_memory.h"

#include <string>

namespace colo {
namespace engine {

using colo::internal::TpMemoryInfo;
using colo::internal::TpTagBytes;
using colo::internal::TpTagInfo;
using colo::internal::TpTransition;

TpMemoryInfo MemoryToProto(const MemoryInfo& m) {
  TpMemoryInfo p;
  p.set_backend_kind(m.backend_kind);
  p.set_device(m.device);
  for (const TagInfo& t : m.pool.tags) {
    TpTagInfo* tag = p.add_tags();
    tag->set_tag(std::string(MemoryTagName(t.tag)));
    tag->set_released(t.state == TagState::kReleased);
    tag->set_host_backup(t.backup == BackupPolicy::kHostCopy);
    tag->set_reserved_bytes(static_cast<int64_t>(t.reserved_bytes));
    tag->set_resident_bytes(static_cast<int64_t>(t.resident_bytes));
    tag->set_backup_bytes(static_cast<int64_t>(t.backup_bytes));
    tag->set_allocation_count(t.allocation_count);
  }
  const CachingAllocatorStats& a = m.allocator;
  p.set_allocated_bytes(static_cast<int64_t>(a.allocated_bytes));
  p.set_reserved_bytes(static_cast<int64_t>(a.reserved_bytes));
  p.set_peak_allocated_bytes(static_cast<int64_t>(a.peak_allocated_bytes));
  p.set_peak_reserved_bytes(static_cast<int64_t>(a.peak_reserved_bytes));
  p.set_segments(a.segments);
  p.set_largest_free_block_bytes(static_cast<int64_t>(a.largest_free_block_bytes));
  p.set_fragmentation(a.fragmentation);
  p.set_alloc_count(a.alloc_count);
  p.set_free_count(a.free_count);
  p.set_device_free_bytes(static_cast<int64_t>(m.device_memory.free_bytes));
  p.set_device_total_bytes(static_cast<int64_t>(m.device_memory.total_bytes));
  p.set_process_resident_bytes(static_cast<int64_t>(m.device_memory.process_resident_bytes));
  return p;
}

MemoryInfo MemoryFromProto(const TpMemoryInfo& p) {
  MemoryInfo m;
  m.backend_kind = p.backend_kind();
  m.device = p.device();
  for (const TpTagInfo& tag : p.tags()) {
    absl::StatusOr<MemoryTag> parsed = ParseMemoryTag(tag.tag());
    if (!parsed.ok()) continue;
    TagInfo t;
    t.tag = *parsed;
    t.state = tag.released() ? TagState::kReleased : TagState::kResident;
    t.backup = tag.host_backup() ? BackupPolicy::kHostCopy : BackupPolicy::kDiscard;
    t.reserved_bytes = static_cast<uint64_t>(tag.reserved_bytes());
    t.resident_bytes = static_cast<uint64_t>(tag.resident_bytes());
    t.backup_bytes = static_cast<uint64_t>(tag.backup_bytes());
    t.allocation_count = tag.allocation_count();
    m.pool.tags.push_back(t);
  }
  CachingAllocatorStats& a = m.allocator;
  a.allocated_bytes = static_cast<uint64_t>(p.allocated_bytes());
  a.reserved_bytes = static_cast<uint64_t>(p.reserved_bytes());
  a.peak_allocated_bytes = static_cast<uint64_t>(p.peak_allocated_bytes());
  a.peak_reserved_bytes = static_cast<uint64_t>(p.peak_reserved_bytes());
  a.segments = p.segments();
  a.largest_free_block_bytes = static_cast<uint64_t>(p.largest_free_block_bytes());
  a.fragmentation = p.fragmentation();
  a.alloc_count = p.alloc_count();
  a.free_count = p.free_count();
  m.device_memory.free_bytes = static_cast<uint64_t>(p.device_free_bytes());
  m.device_memory.total_bytes = static_cast<uint64_t>(p.device_total_bytes());
  m.device_memory.process_resident_bytes = static_cast<uint64_t>(p.process_resident_bytes());
  return m;
}

TpTransition TransitionToProto(const RankTransition& t) {
  TpTransition p;
  for (const TagReleaseReport& r : t.released) {
    TpTagBytes* b = p.add_tags();
    b->set_tag(std::string(MemoryTagName(r.tag)));
    b->set_bytes(static_cast<int64_t>(r.bytes_freed));
    b->set_no_op(r.no_op);
    b->set_backup_bytes(static_cast<int64_t>(r.backup_bytes));
  }
  for (const TagResumeReport& r : t.resumed) {
    TpTagBytes* b = p.add_tags();
    b->set_tag(std::string(MemoryTagName(r.tag)));
    b->set_bytes(static_cast<int64_t>(r.bytes_mapped));
    b->set_no_op(r.no_op);
    b->set_backup_bytes(static_cast<int64_t>(r.bytes_restored));
  }
  p.set_device_free_bytes_before(static_cast<int64_t>(t.before.free_bytes));
  p.set_device_free_bytes_after(static_cast<int64_t>(t.after.free_bytes));
  p.set_process_resident_bytes_before(static_cast<int64_t>(t.before.process_resident_bytes));
  p.set_process_resident_bytes_after(static_cast<int64_t>(t.after.process_resident_bytes));
  return p;
}

RankTransition TransitionFromProto(int rank, const TpTransition& p, bool release) {
  RankTransition t;
  t.rank = rank;
  for (const TpTagBytes& b : p.tags()) {
    absl::StatusOr<MemoryTag> tag = ParseMemoryTag(b.tag());
    if (!tag.ok()) continue;
    if (release) {
      TagReleaseReport r;
      r.tag = *tag;
      r.bytes_freed = static_cast<uint64_t>(b.bytes());
      r.no_op = b.no_op();
      r.backup_bytes = static_cast<uint64_t>(b.backup_bytes());
      t.released.push_back(r);
    } else {
      TagResumeReport r;
      r.tag = *tag;
      r.bytes_mapped = static_cast<uint64_t>(b.bytes());
      r.no_op = b.no_op();
      r.bytes_restored = static_cast<uint64_t>(b.backup_bytes());
      t.resumed.push_back(r);
    }
  }
  t.before.free_bytes = static_cast<uint64_t>(p.device_free_bytes_before());
  t.after.free_bytes = static_cast<uint64_t>(p.device_free_bytes_after());
  t.before.process_resident_bytes = static_cast<uint64_t>(p.process_resident_bytes_before());
  t.after.process_resident_bytes = static_cast<uint64_t>(p.process_resident_bytes_after());
  return t;
}

}  // namespace engine
}  // namespace colo
