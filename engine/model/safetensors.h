// Safetensors checkpoints: a memory-mapped reader and a writer.
//
// File format: u64 little-endian header length N, N bytes of JSON
//   {"name": {"dtype": "F32"|"F16"|"BF16"|..., "shape": [...],
//             "data_offsets": [begin, end]}, ..., "__metadata__": {...}}
// then the data region; offsets are relative to the data region.
//
// SafetensorsFile::Open validates the whole header up front: header length
// within the file, valid JSON object, known dtype, non-negative shape,
// offsets inside the data region and end - begin == numel * dtype size.
// Violations are INVALID_ARGUMENT naming the file and tensor; a missing file
// is NOT_FOUND. Only F32, F16 and BF16 tensors can be read as float
// (other dtypes open fine but ReadAsFloat is INVALID_ARGUMENT naming them).
//
// SafetensorsCheckpoint opens a model directory: model.safetensors, or the
// shards listed in model.safetensors.index.json ("weight_map").
//
// Thread-safety: reader objects are immutable after Open (thread-compatible
// const access). The mapping lives as long as the object.
#ifndef COLO_ENGINE_MODEL_SAFETENSORS_H_
#define COLO_ENGINE_MODEL_SAFETENSORS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace colo {
namespace engine {

enum class TensorDtype { kF32, kF16, kBF16, kOther };

absl::string_view TensorDtypeName(TensorDtype dtype);  // "F32", "F16", "BF16"
// Parses "F32"/"F16"/"BF16"; INVALID_ARGUMENT otherwise.
absl::StatusOr<TensorDtype> ParseTensorDtype(absl::string_view name);
size_t TensorDtypeBytes(TensorDtype dtype);  // 0 for kOther

// Converts `count` elements of `dtype` at `src` to float32.
// INVALID_ARGUMENT for kOther.
absl::Status ConvertToFloat(TensorDtype dtype, const void* src, int64_t count,
                            float* dst);
uint16_t FloatToBf16(float f);   // round to nearest even
uint16_t FloatToFp16(float f);   // round to nearest even
float Bf16ToFloat(uint16_t v);
float Fp16ToFloat(uint16_t v);

struct TensorView {
  std::string name;
  TensorDtype dtype = TensorDtype::kF32;
  std::string dtype_name;  // as written in the file
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // into the mapping
  size_t bytes = 0;
  int64_t NumElements() const;
};

class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(
      const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  // NOT_FOUND naming the tensor and file.
  absl::StatusOr<const TensorView*> Find(absl::string_view name) const;

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  std::map<std::string, TensorView> tensors_;
};

class SafetensorsCheckpoint {
 public:
  // `dir` holds model.safetensors or model.safetensors.index.json.
  static absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> Open(
      const std::string& dir);

  // All tensors of all shards, by name.
  const std::map<std::string, const TensorView*>& tensors() const {
    return index_;
  }
  // NOT_FOUND naming the tensor.
  absl::StatusOr<const TensorView*> Find(absl::string_view name) const;
  // Copies a tensor as float32 into `dst` after checking its shape equals
  // `expected_shape` (INVALID_ARGUMENT naming tensor, both shapes).
  absl::Status ReadAsFloat(absl::string_view name,
                           const std::vector<int64_t>& expected_shape,
                           float* dst) const;

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*> index_;
};

// Writer: collects tensors and writes one file.
class SafetensorsWriter {
 public:
  // Adds a float tensor stored as `dtype` (F32, F16 or BF16).
  // INVALID_ARGUMENT for duplicates, kOther, or data.size() != numel.
  absl::Status AddFloat(const std::string& name, TensorDtype dtype,
                        const std::vector<int64_t>& shape,
                        const std::vector<float>& data);
  // Adds raw bytes under an arbitrary dtype name (for tests).
  absl::Status AddRaw(const std::string& name, const std::string& dtype_name,
                      const std::vector<int64_t>& shape, std::string bytes);
  void SetMetadata(const std::string& key, const std::string& value);
  absl::Status Write(const std::string& path) const;

 private:
  struct Entry {
    std::string dtype_name;
    std::vector<int64_t> shape;
    std::string bytes;
  };
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_MODEL_SAFETENSORS_H_
