// MXFP4 expert weights, as gpt-oss checkpoints store them (transformers'
// integrations/mxfp4.py). A parameter `P` of shape [E][cols][rows] (the
// x @ W layout of GptOssExperts: gate_up_proj [E][hidden][2 * I], down_proj
// [E][I][hidden]) is stored transposed and quantized in blocks of 32 values
// along `cols`:
//   P_blocks  U8 [E][rows][cols / 32][16]: two FP4 (e2m1) codes per byte,
//             element 2j in the low nibble of byte j, 2j + 1 in the high one;
//   P_scales  U8 [E][rows][cols / 32]: the block's power of two, biased by 127.
// value = kFp4Values[code] * 2^(scale - 127), exact in float32.
//
// colo dequantizes on load (and for updates from disk) to float32 in P's
// layout, so the forward pass, checksums and weight updates see the same
// tensor as a bf16 checkpoint's `P` (HF names, x @ W layout).
//
// Thread-safe (pure functions).
#ifndef COLO_ENGINE_MODEL_MXFP4_H_
#define COLO_ENGINE_MODEL_MXFP4_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "engine/model/safetensors.h"

namespace colo {
namespace engine {

inline constexpr int kMxfp4BlockValues = 32;
inline constexpr int kMxfp4ScaleBias = 127;
// The 16 FP4 (e2m1) codes, as transformers' FP4_VALUES.
inline constexpr float kFp4Values[16] = {+0.0f, +0.5f, +1.0f, +1.5f, +2.0f, +3.0f,
                                         +4.0f, +6.0f, -0.0f, -0.5f, -1.0f, -1.5f,
                                         -2.0f, -3.0f, -4.0f, -6.0f};

// Dequantizes `blocks` [E][rows][cols/32][16] and `scales` [E][rows][cols/32]
// into `out` [E][cols][rows]. cols must be a multiple of 32.
void DequantizeMxfp4(const uint8_t* blocks, const uint8_t* scales, int64_t experts,
                     int64_t rows, int64_t cols, float* out);

// The inverse, for writing checkpoints (tiny models, tests): `w`
// [E][cols][rows] -> blocks and scales as above (each block's scale is the
// smallest power of two that brings its largest magnitude within 6, values
// rounded to the nearest code). `blocks` gets E*rows*cols/2 bytes, `scales`
// E*rows*cols/32.
void QuantizeMxfp4(const float* w, int64_t experts, int64_t rows, int64_t cols,
                   std::vector<uint8_t>* blocks, std::vector<uint8_t>* scales);

// "P_blocks" / "P_scales".
std::string Mxfp4BlocksName(absl::string_view name);
std::string Mxfp4ScalesName(absl::string_view name);

// True when `checkpoint` has no tensor `name` but has its MXFP4 blocks.
bool CheckpointHasMxfp4(const SafetensorsCheckpoint& checkpoint, absl::string_view name);

// Reads tensor `name` of `shape` ([E][cols][rows]) as float32 into `dst`:
// the tensor itself when present, else its MXFP4 blocks + scales. NOT_FOUND
// naming `name` (and its _blocks) when neither is there; INVALID_ARGUMENT
// naming the tensor and both shapes for a shape that does not match, a
// dtype other than U8 for blocks/scales, or cols not a multiple of 32.
absl::Status ReadCheckpointTensor(const SafetensorsCheckpoint& checkpoint,
                                  absl::string_view name, const std::vector<int64_t>& shape,
                                  float* dst);

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_MODEL_MXFP4_H_
