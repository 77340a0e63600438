#include "engine/memory/memory_tag.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace colo {
namespace engine {

const std::vector<MemoryTag>& AllMemoryTags() {
  static const auto* const kAll = new std::vector<MemoryTag>{
      MemoryTag::kCudaGraph, MemoryTag::kWeights, MemoryTag::kKvCache};
  return *kAll;
}

absl::string_view MemoryTagName(MemoryTag tag) {
  switch (tag) {
    case MemoryTag::kWeights:
      return "weights";
    case MemoryTag::kKvCache:
      return "kv_cache";
    case MemoryTag::kCudaGraph:
      return "cuda_graph";
  }
  return "unknown";
}

absl::StatusOr<MemoryTag> ParseMemoryTag(absl::string_view name) {
  for (MemoryTag tag : AllMemoryTags()) {
    if (MemoryTagName(tag) == name) return tag;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown memory tag '", name,
                   "'; valid tags: weights, kv_cache, cuda_graph"));
}

absl::StatusOr<std::vector<MemoryTag>> ParseMemoryTags(
    const std::vector<std::string>& names) {
  if (names.empty()) return AllMemoryTags();
  bool seen[kNumMemoryTags] = {};
  for (const std::string& name : names) {
    absl::StatusOr<MemoryTag> tag = ParseMemoryTag(name);
    if (!tag.ok()) return tag.status();
    seen[static_cast<int>(*tag)] = true;
  }
  std::vector<MemoryTag> out;
  for (MemoryTag tag : AllMemoryTags()) {
    if (seen[static_cast<int>(tag)]) out.push_back(tag);
  }
  return out;
}

}  // namespace engine
}  // namespace colo
