#include "weight_sync/ipc_update.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <fstream>
#include <map>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "weight_sync/finite_check.h"
#include "weight_sync/tensor_spec.h"

namespace colo {
namespace weight_sync {
namespace {

// A read-only mapping of [offset, offset + size) of a shared-memory file,
// released on destruction. Not populated up front: the copy threads fault
// the pages in, in parallel (tmpfs maps 16 pages per fault).
class ShmMapping {
 public:
  ShmMapping() = default;
  ~ShmMapping() {
    if (map_ != nullptr) munmap(map_, map_bytes_);
  }
  ShmMapping(const ShmMapping&) = delete;
  ShmMapping& operator=(const ShmMapping&) = delete;

  absl::Status Open(const std::string& path, size_t offset, size_t size, const std::string& who) {
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(who, ": cannot open ", path, ": ", strerror(errno)));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      close(fd);
      return absl::InvalidArgumentError(absl::StrCat(who, ": ", path, " is not a regular file"));
    }
    const size_t file_bytes = static_cast<size_t>(st.st_size);
    if (offset > file_bytes || size > file_bytes - offset) {
      close(fd);
      return absl::InvalidArgumentError(absl::StrCat(
          who, ": ", path, " has ", file_bytes, " bytes; the segment needs [", offset, ", ",
          offset + size, ")"));
    }
    if (size == 0) {
      close(fd);
      return absl::OkStatus();
    }
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t map_offset = offset / page * page;
    map_bytes_ = size + (offset - map_offset);
    void* m = mmap(nullptr, map_bytes_, PROT_READ, MAP_SHARED, fd,
                   static_cast<off_t>(map_offset));
    const int err = errno;
    close(fd);
    if (m == MAP_FAILED) {
      map_bytes_ = 0;
      return absl::InvalidArgumentError(
          absl::StrCat(who, ": cannot map ", path, ": ", strerror(err)));
    }
    madvise(m, map_bytes_, MADV_SEQUENTIAL);
    map_ = m;
    data_ = static_cast<const char*>(m) + (offset - map_offset);
    return absl::OkStatus();
  }
  const char* data() const { return data_; }

 private:
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  const char* data_ = nullptr;
};

// Bytes copied (and checked) at a time: small enough to stay in L2 between
// the copy and the check.
constexpr size_t kReadChunkBytes = size_t{256} << 10;

// One validated tensor piece of a bucket.
struct Piece {
  TensorSpec spec;
  int segment = 0;
  size_t offset = 0;         // inside the segment
  size_t tensor_offset = 0;  // inside the tensor
  size_t bytes = 0;
};

bool IsProcFd(const std::string& path) {
  std::vector<std::string> parts = absl::StrSplit(path, '/');
  // "", "proc", "<pid>", "fd", "<n>"
  int64_t n = 0;
  return parts.size() == 5 && parts[0].empty() && parts[1] == "proc" &&
         absl::SimpleAtoi(parts[2], &n) && parts[3] == "fd" && absl::SimpleAtoi(parts[4], &n);
}

}  // namespace

std::string LocalIpcDomain() {
  std::string boot_id;
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::getline(in, boot_id);
  char ns[128] = {0};
  const ssize_t n = readlink("/proc/self/ns/ipc", ns, sizeof(ns) - 1);
  return absl::StrCat(boot_id.empty() ? "unknown-boot" : boot_id, "/",
                      n > 0 ? std::string(ns, n) : std::string("ipc:[unknown]"));
}

absl::StatusOr<std::string> ResolveShmPath(const std::string& path,
                                           const std::vector<std::string>& shm_dirs) {
  if (IsProcFd(path)) {
    char target[PATH_MAX];
    const ssize_t n = readlink(path.c_str(), target, sizeof(target) - 1);
    if (n < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": ", strerror(errno), " (is the trainer alive, and may this engine see its "
          "file descriptors?)"));
    }
    target[n] = '\0';
    if (absl::StartsWith(target, "/memfd:")) return path;
    // A file under the shared-memory directories, maybe unlinked already
    // (torch's shared CPU storages: "/dev/shm/torch_... (deleted)").
    std::string file(target);
    constexpr absl::string_view kDeleted = " (deleted)";
    if (absl::EndsWith(file, kDeleted)) file.resize(file.size() - kDeleted.size());
    for (const std::string& dir : shm_dirs) {
      if (!dir.empty() && absl::StartsWith(file, absl::StrCat(dir, "/"))) return path;
    }
    return absl::InvalidArgumentError(absl::StrCat(
        path, " is ", target, ", neither a memfd nor a file under the engine's shared-memory "
        "directories (", absl::StrJoin(shm_dirs, ", "), ")"));
  }
  char resolved[PATH_MAX];
  if (realpath(path.c_str(), resolved) == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", strerror(errno)));
  }
  for (const std::string& dir : shm_dirs) {
    char dir_resolved[PATH_MAX];
    if (dir.empty() || realpath(dir.c_str(), dir_resolved) == nullptr) continue;
    const std::string prefix = absl::StrCat(dir_resolved, "/");
    if (absl::StartsWith(resolved, prefix)) return std::string(resolved);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      path, " is not under the engine's shared-memory directories (",
      absl::StrJoin(shm_dirs, ", "), "; --ipc_shm_dirs) nor a /proc/<pid>/fd/<n> memfd"));
}

absl::StatusOr<v1::IpcBucketAck> IpcStreamUpdate::Add(const v1::IpcBucket& bucket) {
  const absl::Time t0 = absl::Now();
  const std::string where = absl::StrCat("bucket ", buckets_);
  if (bucket.tensors().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(where, " names no tensor"));
  }
  // --- Validation: nothing is opened or copied yet. ---
  std::vector<std::string> errors;
  std::vector<Piece> pieces;
  for (const v1::IpcTensor& t : bucket.tensors()) {
    const std::string who = absl::StrCat("tensor \"", t.name(), "\"");
    absl::StatusOr<TensorDtype> dtype = ParseWireDtype(t.dtype());
    if (!dtype.ok()) {
      errors.push_back(absl::StrCat(who, ": ", dtype.status().message()));
      continue;
    }
    Piece p;
    p.spec.name = t.name();
    p.spec.dtype = *dtype;
    p.spec.shape.assign(t.shape().dims().begin(), t.shape().dims().end());
    bool negative = false;
    for (int64_t d : p.spec.shape) negative |= d < 0;
    if (negative) {
      errors.push_back(absl::StrCat(who, ": negative dimension in ", ShapeToString(p.spec.shape)));
      continue;
    }
    if (t.segment() < 0 || t.segment() >= bucket.segments_size()) {
      errors.push_back(absl::StrCat(who, ": segment ", t.segment(), " does not exist (the bucket has ",
                                    bucket.segments_size(), ")"));
      continue;
    }
    if (t.offset_bytes() < 0 || t.tensor_offset_bytes() < 0 || t.length_bytes() < 0) {
      errors.push_back(absl::StrCat(who, ": negative offset or length"));
      continue;
    }
    const size_t total = p.spec.Bytes();
    p.segment = t.segment();
    p.offset = static_cast<size_t>(t.offset_bytes());
    p.tensor_offset = static_cast<size_t>(t.tensor_offset_bytes());
    if (p.tensor_offset > total) {
      errors.push_back(absl::StrCat(who, ": tensor_offset_bytes ", p.tensor_offset,
                                    " is past its ", total, " bytes"));
      continue;
    }
    p.bytes = t.length_bytes() > 0 ? static_cast<size_t>(t.length_bytes()) : total - p.tensor_offset;
    if (p.bytes > total - p.tensor_offset) {
      errors.push_back(absl::StrCat(who, ": bytes [", p.tensor_offset, ", ",
                                    p.tensor_offset + p.bytes, ") are past its ", total, " bytes"));
      continue;
    }
    const v1::IpcSegment& seg = bucket.segments(p.segment);
    if (seg.offset_bytes() < 0 || seg.size_bytes() < 0) {
      errors.push_back(absl::StrCat("segment ", p.segment, ": negative offset or size"));
      continue;
    }
    const size_t seg_bytes = static_cast<size_t>(seg.size_bytes());
    if (p.offset > seg_bytes || p.bytes > seg_bytes - p.offset) {
      errors.push_back(absl::StrCat(who, ": bytes [", p.offset, ", ", p.offset + p.bytes,
                                    ") lie past the end of segment ", p.segment, " (",
                                    seg_bytes, " bytes)"));
      continue;
    }
    pieces.push_back(std::move(p));
  }
  if (!errors.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(where, " rejected, ", errors.size(),
                                                   " bad tensor(s): ", absl::StrJoin(errors, "; ")));
  }
  // The sink validates names and shapes; a tensor in pieces is begun by its
  // first piece, and later pieces repeat its spec.
  std::vector<TensorSpec> begin;
  for (const Piece& p : pieces) {
    auto it = specs_.find(p.spec.name);
    bool in_bucket = false;
    for (const TensorSpec& s : begin) in_bucket |= s.name == p.spec.name;
    if (it == specs_.end() && !in_bucket) {
      if (p.tensor_offset != 0) {
        errors.push_back(absl::StrCat("tensor \"", p.spec.name, "\": piece at byte ",
                                      p.tensor_offset, " before its first piece"));
        continue;
      }
      begin.push_back(p.spec);
    } else if (it != specs_.end() && !(it->second == p.spec)) {
      errors.push_back(absl::StrCat("tensor \"", p.spec.name, "\": ", WireDtypeName(p.spec.dtype),
                                    " ", ShapeToString(p.spec.shape), " but its first piece said ",
                                    WireDtypeName(it->second.dtype), " ",
                                    ShapeToString(it->second.shape)));
    }
  }
  if (!errors.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(where, " rejected: ", absl::StrJoin(errors, "; ")));
  }
  if (!begin.empty()) {
    absl::Status st = options_.sink->Begin(begin);
    if (!st.ok()) return absl::Status(st.code(), absl::StrCat(where, ": ", st.message()));
    for (const TensorSpec& s : begin) specs_.emplace(s.name, s);
  }
  // --- Open each segment, copy its pieces, close it. ---
  std::map<int, std::vector<const Piece*>> by_segment;
  for (const Piece& p : pieces) by_segment[p.segment].push_back(&p);
  int64_t bytes = 0;
  for (const auto& [index, list] : by_segment) {
    const v1::IpcSegment& seg = bucket.segments(index);
    const std::string who = absl::StrCat(where, " segment ", index);
    if (seg.kind_case() == v1::IpcSegment::kShmPath) {
      absl::StatusOr<std::string> path = ResolveShmPath(seg.shm_path(), options_.shm_dirs);
      if (!path.ok()) return absl::InvalidArgumentError(absl::StrCat(who, ": ", path.status().message()));
      ShmMapping map;
      absl::Status st = map.Open(*path, static_cast<size_t>(seg.offset_bytes()),
                                 static_cast<size_t>(seg.size_bytes()), who);
      if (!st.ok()) return st;
      // Where each piece lands, and whether it is checked while copied
      // (element-aligned pieces, chunk by chunk while in cache).
      struct Target {
        char* dst = nullptr;
        std::vector<char> bounce;  // a sink without a staging area
        bool check = false;
      };
      std::vector<Target> targets(list.size());
      struct Job {
        size_t piece;
        size_t offset;  // inside the piece
        size_t bytes;
      };
      std::vector<Job> jobs;
      for (size_t i = 0; i < list.size(); ++i) {
        const Piece* p = list[i];
        Target& t = targets[i];
        t.dst = static_cast<char*>(
            options_.sink->StagingArea(p->spec.name, p->tensor_offset, p->bytes));
        if (t.dst == nullptr && p->bytes > 0) {
          t.bounce.resize(p->bytes);
          t.dst = t.bounce.data();
        }
        const size_t elem = p->spec.ElementBytes();
        t.check = options_.check_finite && elem > 0 && p->tensor_offset % elem == 0 &&
                  p->bytes % elem == 0;
        for (size_t off = 0; off < p->bytes; off += kReadChunkBytes) {
          jobs.push_back({i, off, std::min(kReadChunkBytes, p->bytes - off)});
        }
      }
      // Chunks are read and checked by up to copy_threads threads; the first
      // error (in chunk order) wins.
      std::vector<absl::Status> results(jobs.size());
      std::atomic<size_t> next{0};
      std::atomic<bool> failed{false};
      auto worker = [&] {
        for (size_t j = next++; j < jobs.size() && !failed.load(); j = next++) {
          const Job& job = jobs[j];
          const Piece* p = list[job.piece];
          const Target& t = targets[job.piece];
          std::memcpy(t.dst + job.offset, map.data() + p->offset + job.offset, job.bytes);
          absl::Status r;
          if (t.check) {
            const size_t elem = p->spec.ElementBytes();
            r = CheckFiniteRange(p->spec, t.dst + job.offset,
                                 static_cast<int64_t>((p->tensor_offset + job.offset) / elem),
                                 static_cast<int64_t>(job.bytes / elem));
          }
          if (!r.ok()) {
            results[j] = std::move(r);
            failed.store(true);
          }
        }
      };
      const int threads = static_cast<int>(std::min<size_t>(
          std::max(1, options_.copy_threads), (jobs.size() + 3) / 4));
      std::vector<std::thread> pool;
      for (int i = 1; i < threads; ++i) pool.emplace_back(worker);
      worker();
      for (std::thread& th : pool) th.join();
      for (const absl::Status& r : results) {
        if (!r.ok()) return r;
      }
      for (size_t i = 0; i < list.size(); ++i) {
        const Piece* p = list[i];
        const Target& t = targets[i];
        if (!t.bounce.empty()) {
          st = options_.sink->Stage(p->spec.name, p->tensor_offset, t.bounce.data(), p->bytes);
        } else if (t.check) {
          st = options_.sink->MarkStagedChecked(p->spec.name, p->tensor_offset, p->bytes);
        } else {
          st = options_.sink->MarkStaged(p->spec.name, p->tensor_offset, p->bytes);
        }
        if (!st.ok()) return absl::Status(st.code(), absl::StrCat(who, ": ", st.message()));
        bytes += static_cast<int64_t>(p->bytes);
      }
    } else if (seg.kind_case() == v1::IpcSegment::kCudaIpcHandle) {
      absl::StatusOr<CudaIpcReader*> reader =
          options_.cuda ? options_.cuda()
                        : absl::StatusOr<CudaIpcReader*>(absl::UnavailableError("no CUDA reader"));
      if (!reader.ok()) {
        return absl::FailedPreconditionError(absl::StrCat(
            who, " is a CUDA IPC handle but this engine cannot open one: ",
            reader.status().message(), " (send CPU tensors through shared memory instead)"));
      }
      std::vector<CudaIpcReader::Piece> copies;
      // A sink without a staging area gets the bytes through a host buffer.
      std::vector<std::vector<char>> bounces(list.size());
      for (size_t i = 0; i < list.size(); ++i) {
        const Piece* p = list[i];
        void* dst = options_.sink->StagingArea(p->spec.name, p->tensor_offset, p->bytes);
        if (dst == nullptr && p->bytes > 0) {
          bounces[i].resize(p->bytes);
          dst = bounces[i].data();
        }
        copies.push_back({p->offset, dst, p->bytes});
      }
      absl::Status st = (*reader)->CopyOut(seg.cuda_ipc_handle(),
                                           static_cast<size_t>(seg.offset_bytes()),
                                           static_cast<size_t>(seg.size_bytes()), copies);
      if (!st.ok()) return absl::Status(st.code(), absl::StrCat(who, ": ", st.message()));
      for (size_t i = 0; i < list.size(); ++i) {
        const Piece* p = list[i];
        st = bounces[i].empty()
                 ? options_.sink->MarkStaged(p->spec.name, p->tensor_offset, p->bytes)
                 : options_.sink->Stage(p->spec.name, p->tensor_offset, bounces[i].data(), p->bytes);
        if (!st.ok()) return absl::Status(st.code(), absl::StrCat(who, ": ", st.message()));
        bytes += static_cast<int64_t>(p->bytes);
      }
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(who, " has neither shm_path nor cuda_ipc_handle"));
    }
  }
  v1::IpcBucketAck ack;
  ack.set_bucket(buckets_++);
  ack.set_tensors(static_cast<int64_t>(pieces.size()));
  ack.set_bytes(bytes);
  ack.set_copy_us(absl::ToInt64Microseconds(absl::Now() - t0));
  bytes_ += bytes;
  tensors_ += static_cast<int64_t>(begin.size());
  return ack;
}

absl::Status IpcStreamUpdate::Finish() const {
  if (tensors_ == 0) {
    return absl::InvalidArgumentError("the IPC update sent no tensor");
  }
  return options_.sink->CheckComplete();
}

}  // namespace weight_sync
}  // namespace colo
