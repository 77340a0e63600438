#include "engine/server/tp_fields.h"

#include <string>
#include <vector>

#include "engine/memory/memory_tag.h"
#include "engine/server/engine_service.h"

namespace colo::engine {
namespace {

void Append(colo::v1::RankTagBytes* rank, const TagReleaseReport& r) {
  colo::v1::TagBytes* b = rank->add_tags();
  b->set_tag(std::string(MemoryTagName(r.tag)));
  b->set_bytes(static_cast<int64_t>(r.bytes_freed));
  b->set_no_op(r.no_op);
  b->set_backup_bytes(static_cast<int64_t>(r.backup_bytes));
}

void Append(colo::v1::RankTagBytes* rank, const TagResumeReport& r) {
  colo::v1::TagBytes* b = rank->add_tags();
  b->set_tag(std::string(MemoryTagName(r.tag)));
  b->set_bytes(static_cast<int64_t>(r.bytes_mapped));
  b->set_no_op(r.no_op);
  b->set_backup_bytes(static_cast<int64_t>(r.bytes_restored));
}

template <typename Report>
void FillRank(int rank, const std::vector<Report>& reports, const DeviceMemoryInfo& before,
              const DeviceMemoryInfo& after, colo::v1::RankTagBytes* out) {
  out->set_rank(rank);
  for (const Report& r : reports) Append(out, r);
  out->set_device_free_bytes_before(static_cast<int64_t>(before.free_bytes));
  out->set_device_free_bytes_after(static_cast<int64_t>(after.free_bytes));
  out->set_process_resident_bytes_before(static_cast<int64_t>(before.process_resident_bytes));
  out->set_process_resident_bytes_after(static_cast<int64_t>(after.process_resident_bytes));
}

// Adds the other ranks into the totals of `response` (filled from rank 0).
template <typename Response>
void AddRanks(Response* response) {
  for (const colo::v1::RankTagBytes& rank : response->ranks()) {
    if (rank.rank() == 0) continue;
    for (const colo::v1::TagBytes& b : rank.tags()) {
      for (colo::v1::TagBytes& total : *response->mutable_tags()) {
        if (total.tag() != b.tag()) continue;
        total.set_bytes(total.bytes() + b.bytes());
        total.set_backup_bytes(total.backup_bytes() + b.backup_bytes());
        total.set_no_op(total.no_op() && b.no_op());
      }
    }
    response->set_process_resident_bytes_before(response->process_resident_bytes_before() +
                                                rank.process_resident_bytes_before());
    response->set_process_resident_bytes_after(response->process_resident_bytes_after() +
                                               rank.process_resident_bytes_after());
    response->set_device_free_bytes_after(rank.device_free_bytes_after());
  }
}

}  // namespace

void AddRankTransitions(const TagTransition& t, colo::v1::ReleaseTagsResponse* response) {
  if (t.ranks.empty()) return;
  FillRank(0, t.release.tags, t.before, t.after, response->add_ranks());
  for (const RankTransition& r : t.ranks) {
    FillRank(r.rank, r.released, r.before, r.after, response->add_ranks());
  }
  AddRanks(response);
}

void AddRankTransitions(const TagTransition& t, colo::v1::ResumeTagsResponse* response) {
  if (t.ranks.empty()) return;
  FillRank(0, t.resume.tags, t.before, t.after, response->add_ranks());
  for (const RankTransition& r : t.ranks) {
    FillRank(r.rank, r.resumed, r.before, r.after, response->add_ranks());
  }
  AddRanks(response);
}

namespace {

uint64_t Rank0Rss(EngineRuntime& runtime) {
  absl::StatusOr<DeviceMemoryInfo> mem = runtime.backend().MemoryInfo();
  return mem.ok() ? mem->process_resident_bytes : 0;
}

void AddCache(const RankCacheReport& r, google::protobuf::RepeatedPtrField<colo::v1::RankCacheBytes>* out) {
  colo::v1::RankCacheBytes* c = out->Add();
  c->set_rank(r.rank);
  c->set_reserved_bytes_before(static_cast<int64_t>(r.reserved_bytes_before));
  c->set_reserved_bytes_after(static_cast<int64_t>(r.reserved_bytes_after));
  c->set_process_resident_bytes(static_cast<int64_t>(r.process_resident_bytes));
}

}  // namespace

void AddRankCaches(EngineRuntime& runtime, const ContinueResult& result,
                   colo::v1::ContinueGenerationResponse* response) {
  if (result.ranks.empty()) return;
  RankCacheReport zero;
  zero.reserved_bytes_before = result.reserved_bytes_before;
  zero.reserved_bytes_after = result.reserved_bytes_after;
  zero.process_resident_bytes = Rank0Rss(runtime);
  AddCache(zero, response->mutable_ranks());
  for (const RankCacheReport& r : result.ranks) {
    AddCache(r, response->mutable_ranks());
    response->set_reserved_bytes_before(response->reserved_bytes_before() +
                                        static_cast<int64_t>(r.reserved_bytes_before));
    response->set_reserved_bytes_after(response->reserved_bytes_after() +
                                       static_cast<int64_t>(r.reserved_bytes_after));
  }
}

void AddRankCaches(EngineRuntime& runtime, const PauseResult& result,
                   colo::v1::PauseGenerationResponse* response) {
  if (result.ranks.empty()) return;
  RankCacheReport zero;
  zero.reserved_bytes_before = zero.reserved_bytes_after = runtime.allocator().Stats().reserved_bytes;
  zero.process_resident_bytes = Rank0Rss(runtime);
  AddCache(zero, response->mutable_ranks());
  for (const RankCacheReport& r : result.ranks) AddCache(r, response->mutable_ranks());
}

absl::Status AddRankMemory(EngineRuntime& runtime, colo::v1::MemoryInfo* memory) {
  if (runtime.tp() == nullptr) return absl::OkStatus();
  absl::StatusOr<std::vector<MemoryInfo>> ranks = runtime.CollectRankMemory();
  if (!ranks.ok()) return ranks.status();
  colo::v1::MemoryInfo rank0 = *memory;
  colo::v1::RankMemory* zero = memory->add_ranks();
  zero->set_rank(0);
  *zero->mutable_memory() = std::move(rank0);
  for (size_t i = 1; i < ranks->size(); ++i) {
    colo::v1::RankMemory* rank = memory->add_ranks();
    rank->set_rank(static_cast<int>(i));
    FillMemoryInfo((*ranks)[i], SchedulerSnapshot(), rank->mutable_memory());
    const colo::v1::MemoryInfo& m = rank->memory();
    for (const colo::v1::TagMemory& t : m.tags()) {
      for (colo::v1::TagMemory& total : *memory->mutable_tags()) {
        if (total.tag() != t.tag()) continue;
        total.set_reserved_bytes(total.reserved_bytes() + t.reserved_bytes());
        total.set_resident_bytes(total.resident_bytes() + t.resident_bytes());
        total.set_host_backup_bytes(total.host_backup_bytes() + t.host_backup_bytes());
        total.set_num_allocations(total.num_allocations() + t.num_allocations());
      }
    }
    colo::v1::CachingAllocatorStats* a = memory->mutable_caching_allocator();
    const colo::v1::CachingAllocatorStats& b = m.caching_allocator();
    a->set_allocated_bytes(a->allocated_bytes() + b.allocated_bytes());
    a->set_reserved_bytes(a->reserved_bytes() + b.reserved_bytes());
    a->set_peak_allocated_bytes(a->peak_allocated_bytes() + b.peak_allocated_bytes());
    a->set_peak_reserved_bytes(a->peak_reserved_bytes() + b.peak_reserved_bytes());
    a->set_num_segments(a->num_segments() + b.num_segments());
    a->set_num_allocs(a->num_allocs() + b.num_allocs());
    a->set_num_frees(a->num_frees() + b.num_frees());
    colo::v1::DeviceMemory* d = memory->mutable_device();
    d->set_process_resident_bytes(d->process_resident_bytes() +
                                  m.device().process_resident_bytes());
  }
  return absl::OkStatus();
}

void FillTpServerInfo(EngineRuntime& runtime, colo::v1::GetServerInfoResponse* response) {
  response->set_tp_size(runtime.options().tp_size);
  TpLeader* tp = runtime.tp();
  if (tp == nullptr) return;
  for (const TpRankInfo& r :
       tp->Ranks(static_cast<int64_t>(runtime.weights().allocated_bytes()))) {
    colo::v1::RankInfo* info = response->add_ranks();
    info->set_rank(r.rank);
    info->set_pid(r.pid);
    info->set_host(r.host);
    info->set_address(r.address);
    info->set_weight_bytes(r.weight_bytes);
    info->set_error(r.error);
  }
  if (runtime.tp_runner() != nullptr) {
    const TpStepStats s = runtime.tp_runner()->stats();
    colo::v1::TpStepStats* out = response->mutable_tp_stats();
    out->set_steps(s.steps);
    out->set_step_us(s.step_micros);
    out->set_collective_us(s.collective_micros);
    out->set_collective_bytes(s.collective_bytes);
    out->set_wait_us(s.wait_micros);
  }
  const std::string failure = runtime.failure();
  if (!failure.empty()) {
    response->set_state("failed");
    response->set_reason(failure);
  }
}

}  // namespace colo::engine
