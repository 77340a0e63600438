#include "engine/model/mxfp4.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace colo {
namespace engine {
namespace {

std::string ShapeString(const std::vector<int64_t>& s) {
  return absl::StrCat("[", absl::StrJoin(s, ", "), "]");
}

// The nearest code of |v| in [0, 6] (ties to the smaller magnitude), with
// the sign bit.
uint8_t NearestCode(float v) {
  const float a = std::fabs(v);
  int best = 0;
  for (int c = 1; c < 8; ++c) {
    if (std::fabs(kFp4Values[c] - a) < std::fabs(kFp4Values[best] - a)) best = c;
  }
  return static_cast<uint8_t>(best | (std::signbit(v) && best != 0 ? 8 : 0));
}

}  // namespace

void DequantizeMxfp4(const uint8_t* blocks, const uint8_t* scales, int64_t experts,
                     int64_t rows, int64_t cols, float* out) {
  const int64_t groups = cols / kMxfp4BlockValues;
  for (int64_t e = 0; e < experts; ++e) {
    float* oe = out + e * cols * rows;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t row = e * rows + r;
      for (int64_t g = 0; g < groups; ++g) {
        const int exponent = static_cast<int>(scales[row * groups + g]) - kMxfp4ScaleBias;
        const uint8_t* b = blocks + (row * groups + g) * (kMxfp4BlockValues / 2);
        for (int j = 0; j < kMxfp4BlockValues / 2; ++j) {
          const int64_t c = g * kMxfp4BlockValues + 2 * j;
          oe[c * rows + r] = std::ldexp(kFp4Values[b[j] & 0x0F], exponent);
          oe[(c + 1) * rows + r] = std::ldexp(kFp4Values[b[j] >> 4], exponent);
        }
      }
    }
  }
}

void QuantizeMxfp4(const float* w, int64_t experts, int64_t rows, int64_t cols,
                   std::vector<uint8_t>* blocks, std::vector<uint8_t>* scales) {
  const int64_t groups = cols / kMxfp4BlockValues;
  blocks->assign(experts * rows * cols / 2, 0);
  scales->assign(experts * rows * groups, 0);
  for (int64_t e = 0; e < experts; ++e) {
    const float* we = w + e * cols * rows;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t row = e * rows + r;
      for (int64_t g = 0; g < groups; ++g) {
        float amax = 0.0f;
        for (int i = 0; i < kMxfp4BlockValues; ++i) {
          amax = std::max(amax, std::fabs(we[(g * kMxfp4BlockValues + i) * rows + r]));
        }
        // Smallest exponent with amax / 2^exponent <= 6.
        int exponent = -kMxfp4ScaleBias;
        if (amax > 0) {
          exponent = static_cast<int>(std::ceil(std::log2(amax / 6.0f)));
          while (std::ldexp(6.0f, exponent) < amax) ++exponent;
          exponent = std::clamp(exponent, -kMxfp4ScaleBias, 128);
        }
        (*scales)[row * groups + g] = static_cast<uint8_t>(exponent + kMxfp4ScaleBias);
        uint8_t* b = blocks->data() + (row * groups + g) * (kMxfp4BlockValues / 2);
        for (int j = 0; j < kMxfp4BlockValues / 2; ++j) {
          const int64_t c = g * kMxfp4BlockValues + 2 * j;
          const uint8_t lo = NearestCode(std::ldexp(we[c * rows + r], -exponent));
          const uint8_t hi = NearestCode(std::ldexp(we[(c + 1) * rows + r], -exponent));
          b[j] = static_cast<uint8_t>(lo | (hi << 4));
        }
      }
    }
  }
}

std::string Mxfp4BlocksName(absl::string_view name) { return absl::StrCat(name, "_blocks"); }
std::string Mxfp4ScalesName(absl::string_view name) { return absl::StrCat(name, "_scales"); }

bool CheckpointHasMxfp4(const SafetensorsCheckpoint& checkpoint, absl::string_view name) {
  return !checkpoint.Find(name).ok() && checkpoint.Find(Mxfp4BlocksName(name)).ok();
}

absl::Status ReadCheckpointTensor(const SafetensorsCheckpoint& checkpoint,
                                  absl::string_view name, const std::vector<int64_t>& shape,
                                  float* dst) {
  if (!CheckpointHasMxfp4(checkpoint, name)) {
    absl::Status s = checkpoint.ReadAsFloat(name, shape, dst);
    if (absl::IsNotFound(s) && shape.size() == 3) {
      return absl::NotFoundError(absl::StrCat("checkpoint has no tensor \"", name,
                                              "\" (nor its MXFP4 \"", Mxfp4BlocksName(name),
                                              "\" and \"", Mxfp4ScalesName(name), "\")"));
    }
    return s;
  }
  if (shape.size() != 3) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor \"", name, "\" of shape ", ShapeString(shape),
        " is stored as MXFP4 blocks, which only expert tensors [E][cols][rows] can be"));
  }
  const int64_t experts = shape[0], cols = shape[1], rows = shape[2];
  if (cols % kMxfp4BlockValues != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor \"", name, "\" of shape ", ShapeString(shape), " is stored as MXFP4, but its ",
        cols, " input columns are not a multiple of the ", kMxfp4BlockValues,
        "-value MXFP4 block"));
  }
  const std::string blocks_name = Mxfp4BlocksName(name), scales_name = Mxfp4ScalesName(name);
  absl::StatusOr<const TensorView*> blocks = checkpoint.Find(blocks_name);
  if (!blocks.ok()) return blocks.status();
  absl::StatusOr<const TensorView*> scales = checkpoint.Find(scales_name);
  if (!scales.ok()) {
    return absl::NotFoundError(absl::StrCat("checkpoint has MXFP4 \"", blocks_name,
                                            "\" but no \"", scales_name, "\""));
  }
  const int64_t groups = cols / kMxfp4BlockValues;
  const std::vector<int64_t> want_blocks = {experts, rows, groups, kMxfp4BlockValues / 2};
  const std::vector<int64_t> want_scales = {experts, rows, groups};
  for (const auto& [view, want] :
       {std::make_pair(*blocks, want_blocks), std::make_pair(*scales, want_scales)}) {
    if (view->dtype_name != "U8") {
      return absl::InvalidArgumentError(absl::StrCat("MXFP4 tensor \"", view->name,
                                                     "\" has dtype ", view->dtype_name,
                                                     ", expected U8"));
    }
    if (view->shape != want) {
      return absl::InvalidArgumentError(absl::StrCat(
          "MXFP4 tensor \"", view->name, "\" has shape ", ShapeString(view->shape),
          " but config.json implies ", ShapeString(want), " for \"", name, "\" ",
          ShapeString(shape)));
    }
  }
  DequantizeMxfp4((*blocks)->data, (*scales)->data, experts, rows, cols, dst);
  return absl::OkStatus();
}

}  // namespace engine
}  // namespace colo
