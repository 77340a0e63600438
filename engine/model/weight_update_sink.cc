#include "engine/model/weight_update_sink.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "proto/logging/logging.h"
#include "weight_sync/finite_check.h"

namespace colo {
namespace engine {

using weight_sync::ShapeToString;
using weight_sync::TensorSpec;
using weight_sync::WireDtypeName;

absl::StatusOr<std::unique_ptr<ModelWeightUpdateSink>>
ModelWeightUpdateSink::Create(const Options& options) {
  if (options.weights == nullptr || options.allocator == nullptr) {
    return absl::InvalidArgumentError(
        "ModelWeightUpdateSink needs weights and an allocator");
  }
  return std::unique_ptr<ModelWeightUpdateSink>(new ModelWeightUpdateSink(options));
}

ModelWeightUpdateSink::~ModelWeightUpdateSink() { FreeShadows(); }

std::vector<TensorSpec> ModelWeightUpdateSink::ExpectedTensors() const {
  std::vector<TensorSpec> out;
  for (const WeightInfo& w : options_.weights->List()) {
    TensorSpec s;
    s.name = w.name;
    s.dtype = w.dtype;
    s.shape = w.shape;
    out.push_back(std::move(s));
  }
  return out;
}

absl::Status ModelWeightUpdateSink::Validate(
    const std::vector<TensorSpec>& specs) const {
  std::vector<std::string> errors;
  absl::flat_hash_set<std::string> seen;
  for (const TensorSpec& s : specs) {
    if (!seen.insert(s.name).second) {
      errors.push_back(absl::StrCat("\"", s.name, "\": listed twice"));
      continue;
    }
    absl::StatusOr<WeightInfo> info = options_.weights->Find(s.name);
    if (!info.ok()) {
      errors.push_back(absl::StrCat("\"", s.name, "\": unknown tensor"));
      continue;
    }
    if (s.shape != info->shape) {
      errors.push_back(absl::StrCat("\"", s.name, "\": shape ",
                                    ShapeToString(s.shape), ", model has ",
                                    ShapeToString(info->shape)));
    }
    if (s.ElementBytes() == 0) {
      errors.push_back(absl::StrCat("\"", s.name, "\": unsupported dtype ",
                                    WireDtypeName(s.dtype),
                                    " (want float32, float16 or bfloat16)"));
    }
  }
  if (errors.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "weight update rejected, ", errors.size(), " bad tensor(s): ",
      absl::StrJoin(errors, "; ")));
}

absl::Status ModelWeightUpdateSink::Begin(const std::vector<TensorSpec>& specs) {
  absl::Status st = Validate(specs);
  if (!st.ok()) return st;
  std::vector<std::string> again;
  for (const TensorSpec& s : specs) {
    if (shadows_.contains(s.name)) again.push_back(absl::StrCat("\"", s.name, "\""));
  }
  if (!again.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensors already part of this update: ", absl::StrJoin(again, ", ")));
  }
  std::vector<std::string> added;
  DeviceBackend* backend = options_.allocator->backend();
  const size_t page = backend == nullptr ? 0 : backend->exchange_page_bytes();
  for (const TensorSpec& s : specs) {
    Shadow shadow;
    shadow.spec = s;
    if (s.Bytes() > 0) {
      // A shadow that may exchange pages with its live tensor sits at the
      // live tensor's offset within `align` (align - 1 spare bytes).
      const bool exchange = page > 0 && s.dtype == TensorDtype::kF32 &&
                            s.Bytes() >= kMinExchangeBytes;
      const size_t align = s.Bytes() >= kHugeAlignMinBytes
                               ? std::max(page, kHugeAlignBytes)
                               : page;
      absl::StatusOr<void*> mem =
          options_.allocator->Allocate(s.Bytes() + (exchange ? align : 0));
      if (!mem.ok()) {
        for (const std::string& name : added) {
          options_.allocator->Free(shadows_[name].block).IgnoreError();
          shadows_.erase(name);
          order_.pop_back();
        }
        return absl::Status(mem.status().code(),
                            absl::StrCat("staging buffer for \"", s.name,
                                         "\": ", mem.status().message()));
      }
      shadow.block = *mem;
      shadow.data = *mem;
      if (exchange) {
        const uintptr_t live =
            reinterpret_cast<uintptr_t>(options_.weights->Find(s.name)->data);
        const uintptr_t block = reinterpret_cast<uintptr_t>(*mem);
        shadow.data = reinterpret_cast<void*>(
            block + ((live % align) + align - (block % align)) % align);
      }
    }
    shadows_.emplace(s.name, std::move(shadow));
    order_.push_back(s.name);
    added.push_back(s.name);
  }
  return absl::OkStatus();
}

void ModelWeightUpdateSink::AddRange(Shadow* shadow, size_t begin, size_t end) {
  // Merge [begin, end) with the overlapping or adjacent ranges.
  auto it = shadow->covered.upper_bound(begin);
  if (it != shadow->covered.begin()) {
    auto prev = std::prev(it);
    if (prev->second >= begin) it = prev;
  }
  while (it != shadow->covered.end() && it->first <= end) {
    begin = std::min(begin, it->first);
    end = std::max(end, it->second);
    shadow->covered_bytes -= it->second - it->first;
    it = shadow->covered.erase(it);
  }
  shadow->covered.emplace(begin, end);
  shadow->covered_bytes += end - begin;
}

absl::StatusOr<ModelWeightUpdateSink::Shadow*> ModelWeightUpdateSink::RangeOf(
    const std::string& name, size_t offset, size_t bytes) {
  auto it = shadows_.find(name);
  if (it == shadows_.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("bytes for \"", name, "\", which is not part of this update"));
  }
  Shadow& shadow = it->second;
  const size_t total = shadow.spec.Bytes();
  if (offset > total || bytes > total - offset) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bytes [", offset, ", ", offset + bytes, ") are outside tensor \"", name,
        "\" of ", total, " bytes (", WireDtypeName(shadow.spec.dtype), " ",
        ShapeToString(shadow.spec.shape), ")"));
  }
  return &shadow;
}

absl::Status ModelWeightUpdateSink::Stage(const std::string& name, size_t offset,
                                          const void* data, size_t bytes) {
  absl::StatusOr<Shadow*> shadow = RangeOf(name, offset, bytes);
  if (!shadow.ok()) return shadow.status();
  if (bytes == 0) return absl::OkStatus();
  std::memcpy(static_cast<char*>((*shadow)->data) + offset, data, bytes);
  (*shadow)->checked_finite = false;
  (*shadow)->prechecked_bytes = 0;
  AddRange(*shadow, offset, offset + bytes);
  staged_bytes_ += bytes;
  CheckIfComplete(*shadow);
  return absl::OkStatus();
}

void* ModelWeightUpdateSink::StagingArea(const std::string& name, size_t offset,
                                         size_t bytes) {
  absl::StatusOr<Shadow*> shadow = RangeOf(name, offset, bytes);
  if (!shadow.ok() || bytes == 0) return nullptr;
  return static_cast<char*>((*shadow)->data) + offset;
}

absl::Status ModelWeightUpdateSink::MarkStaged(const std::string& name,
                                               size_t offset, size_t bytes) {
  absl::StatusOr<Shadow*> shadow = RangeOf(name, offset, bytes);
  if (!shadow.ok()) return shadow.status();
  if (bytes == 0) return absl::OkStatus();
  (*shadow)->checked_finite = false;
  (*shadow)->prechecked_bytes = 0;
  AddRange(*shadow, offset, offset + bytes);
  staged_bytes_ += bytes;
  CheckIfComplete(*shadow);
  return absl::OkStatus();
}

absl::Status ModelWeightUpdateSink::MarkStagedChecked(const std::string& name, size_t offset,
                                                      size_t bytes) {
  absl::StatusOr<Shadow*> shadow = RangeOf(name, offset, bytes);
  if (!shadow.ok()) return shadow.status();
  if (bytes == 0) return absl::OkStatus();
  const size_t before = (*shadow)->covered_bytes;
  AddRange(*shadow, offset, offset + bytes);
  staged_bytes_ += bytes;
  if ((*shadow)->covered_bytes == before + bytes) {
    // New bytes only: they count as checked.
    (*shadow)->prechecked_bytes += bytes;
  } else {
    (*shadow)->prechecked_bytes = 0;  // overlapping re-staging: scan again
  }
  if ((*shadow)->covered_bytes == (*shadow)->spec.Bytes() &&
      (*shadow)->prechecked_bytes == (*shadow)->spec.Bytes()) {
    (*shadow)->finite = absl::OkStatus();
    (*shadow)->checked_finite = true;
    return absl::OkStatus();
  }
  CheckIfComplete(*shadow);
  return absl::OkStatus();
}

void ModelWeightUpdateSink::CheckIfComplete(Shadow* shadow) const {
  if (!options_.check_finite || shadow->covered_bytes != shadow->spec.Bytes() ||
      shadow->spec.Bytes() == 0) {
    return;
  }
  shadow->finite = weight_sync::CheckFinite(shadow->spec, shadow->data);
  shadow->checked_finite = true;
}

absl::Status ModelWeightUpdateSink::CheckComplete() const {
  std::vector<std::string> missing;
  for (const std::string& name : order_) {
    const Shadow& s = shadows_.at(name);
    if (s.covered_bytes != s.spec.Bytes()) {
      missing.push_back(absl::StrCat("\"", name, "\" (", s.spec.Bytes() - s.covered_bytes,
                                     " of ", s.spec.Bytes(), " bytes missing)"));
    }
  }
  if (!missing.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("incomplete weight update: ", absl::StrJoin(missing, ", ")));
  }
  if (!options_.check_finite) return absl::OkStatus();
  for (const std::string& name : order_) {
    const Shadow& s = shadows_.at(name);
    if (s.spec.Bytes() == 0) continue;
    if (!s.checked_finite) {
      s.finite = weight_sync::CheckFinite(s.spec, s.data);
      s.checked_finite = true;
    }
    if (!s.finite.ok()) return s.finite;
  }
  return absl::OkStatus();
}

absl::Status ModelWeightUpdateSink::Commit() {
  if (shadows_.empty()) {
    return absl::FailedPreconditionError("nothing to commit: no tensor was begun");
  }
  absl::Status st = CheckComplete();
  if (!st.ok()) return absl::FailedPreconditionError(st.message());
  last_commit_ = CommitStats();
  for (const std::string& name : order_) {
    const Shadow& s = shadows_.at(name);
    absl::StatusOr<WeightInfo> info = options_.weights->Find(name);
    // Validated in Begin; the model's tensor set does not change.
    COLO_CHECK(info.ok());
    if (s.spec.Bytes() > 0) CommitOne(s, info->data);
    options_.weights->MarkFresh(name);
  }
  FreeShadows();
  return absl::OkStatus();
}

void ModelWeightUpdateSink::CommitOne(const Shadow& s, float* live) {
  const size_t bytes = s.spec.Bytes();
  if (s.spec.dtype != TensorDtype::kF32) {
    COLO_CHECK(ConvertToFloat(s.spec.dtype, s.data, s.spec.NumElements(), live).ok());
    last_commit_.copied_bytes += bytes;
    return;
  }
  char* dst = reinterpret_cast<char*>(live);
  char* src = static_cast<char*>(s.data);
  DeviceBackend* backend = options_.allocator->backend();
  const size_t page = backend == nullptr ? 0 : backend->exchange_page_bytes();
  const uintptr_t d = reinterpret_cast<uintptr_t>(dst);
  // Whole pages inside the tensor: [first, last).
  const size_t head = page == 0 ? 0 : (page - d % page) % page;
  const size_t interior =
      page == 0 || head >= bytes ? 0 : (bytes - head) / page * page;
  const bool congruent =
      page != 0 && d % page == reinterpret_cast<uintptr_t>(src) % page;
  if (!congruent || bytes < kMinExchangeBytes || interior == 0) {
    std::memcpy(dst, src, bytes);
    last_commit_.copied_bytes += bytes;
    return;
  }
  const size_t tail = bytes - head - interior;
  std::memcpy(dst, src, head);
  std::memcpy(dst + head + interior, src + head + interior, tail);
  last_commit_.copied_bytes += head + tail;
  absl::Status st = backend->ExchangePages(dst + head, src + head, interior);
  if (st.ok()) {
    last_commit_.exchanged_bytes += interior;
    return;
  }
  // Both ranges are as they were: copy instead.
  if (last_commit_.exchange_failures++ == 0) {
    COLO_LOG(WARNING) << "weight commit: page exchange failed, copying instead: " << st;
  }
  std::memcpy(dst + head, src + head, interior);
  last_commit_.copied_bytes += interior;
}

void ModelWeightUpdateSink::Abort() { FreeShadows(); }

void ModelWeightUpdateSink::FreeShadows() {
  for (auto& [name, s] : shadows_) {
    if (s.block != nullptr) options_.allocator->Free(s.block).IgnoreError();
  }
  shadows_.clear();
  order_.clear();
  staged_bytes_ = 0;
}

}  // namespace engine
}  // namespace colo
