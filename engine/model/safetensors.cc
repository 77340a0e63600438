#include "engine/model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace colo {
namespace engine {
namespace {

using json = nlohmann::json;

std::string ShapeString(const std::vector<int64_t>& s) {
  return absl::StrCat("[", absl::StrJoin(s, ", "), "]");
}

}  // namespace

absl::string_view TensorDtypeName(TensorDtype dtype) {
  switch (dtype) {
    case TensorDtype::kF32: return "F32";
    case TensorDtype::kF16: return "F16";
    case TensorDtype::kBF16: return "BF16";
    case TensorDtype::kOther: return "OTHER";
  }
  return "OTHER";
}

absl::StatusOr<TensorDtype> ParseTensorDtype(absl::string_view name) {
  if (name == "F32") return TensorDtype::kF32;
  if (name == "F16") return TensorDtype::kF16;
  if (name == "BF16") return TensorDtype::kBF16;
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported dtype \"", name, "\" (supported: F32, F16, BF16)"));
}

size_t TensorDtypeBytes(TensorDtype dtype) {
  switch (dtype) {
    case TensorDtype::kF32: return 4;
    case TensorDtype::kF16:
    case TensorDtype::kBF16: return 2;
    case TensorDtype::kOther: return 0;
  }
  return 0;
}

float Bf16ToFloat(uint16_t v) {
  uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t FloatToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffff) > 0x7f800000) return 0x7fc0;  // NaN
  bits += 0x7fff + ((bits >> 16) & 1);
  return static_cast<uint16_t>(bits >> 16);
}

float Fp16ToFloat(uint16_t h) {
  uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal
      exp = 127 - 15 + 1;
      while ((mant & 0x400) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ff;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t FloatToFp16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000;
  uint32_t absx = x & 0x7fffffff;
  if (absx > 0x7f800000) return static_cast<uint16_t>(sign | 0x7e00);
  if (absx >= 0x477ff000) return static_cast<uint16_t>(sign | 0x7c00);  // inf
  if (absx < 0x38800000) {  // subnormal or zero
    float af;
    std::memcpy(&af, &absx, 4);
    // scale so that the subnormal unit is 1, round to nearest even.
    float scaled = af * 16777216.0f;  // 2^24
    uint32_t m = static_cast<uint32_t>(scaled);
    float rem = scaled - static_cast<float>(m);
    if (rem > 0.5f || (rem == 0.5f && (m & 1))) ++m;
    return static_cast<uint16_t>(sign | m);
  }
  uint32_t exp = ((absx >> 23) - 127 + 15);
  uint32_t mant = absx & 0x7fffff;
  uint32_t h = (exp << 10) | (mant >> 13);
  uint32_t rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) ++h;
  return static_cast<uint16_t>(sign | h);
}

absl::Status ConvertToFloat(TensorDtype dtype, const void* src, int64_t count,
                            float* dst) {
  switch (dtype) {
    case TensorDtype::kF32:
      std::memcpy(dst, src, count * sizeof(float));
      return absl::OkStatus();
    case TensorDtype::kBF16: {
      const uint8_t* p = static_cast<const uint8_t*>(src);
      for (int64_t i = 0; i < count; ++i) {
        uint16_t v;
        std::memcpy(&v, p + 2 * i, 2);
        dst[i] = Bf16ToFloat(v);
      }
      return absl::OkStatus();
    }
    case TensorDtype::kF16: {
      const uint8_t* p = static_cast<const uint8_t*>(src);
      for (int64_t i = 0; i < count; ++i) {
        uint16_t v;
        std::memcpy(&v, p + 2 * i, 2);
        dst[i] = Fp16ToFloat(v);
      }
      return absl::OkStatus();
    }
    case TensorDtype::kOther:
      break;
  }
  return absl::InvalidArgumentError("cannot convert this dtype to float32");
}

int64_t TensorView::NumElements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) munmap(map_, map_bytes_);
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(
    const std::string& path) {
  auto bad = [&path](absl::string_view msg) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", msg));
  };
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    ::close(fd);
    return absl::InternalError(absl::StrCat("fstat ", path, " failed"));
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    return bad(absl::StrCat("file is ", size, " bytes, shorter than the 8-byte header length"));
  }
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  f->map_ = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (f->map_ == MAP_FAILED) {
    f->map_ = nullptr;
    return absl::InternalError(absl::StrCat("mmap ", path, " failed"));
  }
  f->map_bytes_ = size;
  const uint8_t* base = static_cast<const uint8_t*>(f->map_);
  uint64_t header_len = 0;
  for (int i = 0; i < 8; ++i) header_len |= static_cast<uint64_t>(base[i]) << (8 * i);
  if (header_len > size - 8) {
    return bad(absl::StrCat("header length ", header_len, " exceeds the file (",
                            size, " bytes): truncated or not a safetensors file"));
  }
  const char* hdr = reinterpret_cast<const char*>(base + 8);
  json j = json::parse(hdr, hdr + header_len, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return bad("header is not a JSON object");
  const uint8_t* data = base + 8 + header_len;
  const size_t data_bytes = size - 8 - header_len;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") continue;
    const json& e = it.value();
    auto tbad = [&](absl::string_view msg) {
      return bad(absl::StrCat("tensor \"", name, "\": ", msg));
    };
    if (!e.is_object() || !e.contains("dtype") || !e["dtype"].is_string() ||
        !e.contains("shape") || !e["shape"].is_array() ||
        !e.contains("data_offsets") || !e["data_offsets"].is_array() ||
        e["data_offsets"].size() != 2) {
      return tbad("entry needs dtype (string), shape (array), data_offsets ([begin, end])");
    }
    TensorView v;
    v.name = name;
    v.dtype_name = e["dtype"].get<std::string>();
    absl::StatusOr<TensorDtype> dt = ParseTensorDtype(v.dtype_name);
    v.dtype = dt.ok() ? *dt : TensorDtype::kOther;
    size_t elem = TensorDtypeBytes(v.dtype);
    if (!dt.ok()) {
      static const std::map<std::string, size_t> kOtherSizes = {
          {"F64", 8}, {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1},
          {"U8", 1}, {"BOOL", 1}, {"U16", 2}, {"U32", 4}, {"U64", 8},
          {"F8_E4M3", 1}, {"F8_E5M2", 1}};
      auto found = kOtherSizes.find(v.dtype_name);
      if (found == kOtherSizes.end()) return tbad(absl::StrCat("unknown dtype \"", v.dtype_name, "\""));
      elem = found->second;
    }
    unsigned __int128 numel = 1;
    for (const json& d : e["shape"]) {
      if (!d.is_number_unsigned() && !(d.is_number_integer() && d.get<int64_t>() >= 0)) {
        return tbad(absl::StrCat("bad shape ", e["shape"].dump()));
      }
      const uint64_t dim = d.get<uint64_t>();
      if (dim > (uint64_t{1} << 40)) return tbad(absl::StrCat("dimension too large: ", dim));
      v.shape.push_back(static_cast<int64_t>(dim));
      numel *= dim;
      if (numel > (static_cast<unsigned __int128>(1) << 50)) return tbad("too many elements");
    }
    const json& off = e["data_offsets"];
    if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned()) {
      return tbad(absl::StrCat("bad data_offsets ", off.dump()));
    }
    const uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    if (begin > end || end > data_bytes) {
      return tbad(absl::StrCat("data_offsets [", begin, ", ", end,
                               "] outside the data region of ", data_bytes,
                               " bytes (truncated file?)"));
    }
    if (static_cast<unsigned __int128>(end - begin) != numel * elem) {
      return tbad(absl::StrCat("data_offsets span ", end - begin, " bytes but shape ",
                               ShapeString(v.shape), " of ", v.dtype_name, " needs ",
                               static_cast<uint64_t>(numel * elem)));
    }
    v.data = data + begin;
    v.bytes = end - begin;
    f->tensors_.emplace(name, std::move(v));
  }
  return f;
}

absl::StatusOr<const TensorView*> SafetensorsFile::Find(absl::string_view name) const {
  auto it = tensors_.find(std::string(name));
  if (it == tensors_.end()) {
    return absl::NotFoundError(absl::StrCat("tensor \"", name, "\" not in ", path_));
  }
  return &it->second;
}

absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> SafetensorsCheckpoint::Open(
    const std::string& dir) {
  auto ckpt = std::make_unique<SafetensorsCheckpoint>();
  const std::string index_path = dir + "/model.safetensors.index.json";
  std::vector<std::string> shard_names;
  std::map<std::string, std::string> weight_map;
  std::ifstream index(index_path, std::ios::binary);
  if (index) {
    std::stringstream ss;
    ss << index.rdbuf();
    const std::string text = ss.str();
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("weight_map") ||
        !j["weight_map"].is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path, ": not a JSON object with a \"weight_map\" object"));
    }
    std::set<std::string> shards;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(
            index_path, ": weight_map[\"", it.key(), "\"] is not a file name"));
      }
      const std::string shard = it.value().get<std::string>();
      if (shard.find('/') != std::string::npos || shard.empty() || shard[0] == '.') {
        return absl::InvalidArgumentError(
            absl::StrCat(index_path, ": bad shard file name \"", shard, "\""));
      }
      weight_map[it.key()] = shard;
      shards.insert(shard);
    }
    shard_names.assign(shards.begin(), shards.end());
  } else {
    shard_names.push_back("model.safetensors");
  }
  for (const std::string& shard : shard_names) {
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> f =
        SafetensorsFile::Open(dir + "/" + shard);
    if (!f.ok()) return f.status();
    for (const auto& [name, view] : (*f)->tensors()) {
      if (!weight_map.empty()) {
        auto it = weight_map.find(name);
        if (it == weight_map.end() || it->second != shard) continue;
      }
      if (ckpt->index_.count(name)) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor \"", name, "\" appears in more than one shard of ", dir));
      }
      ckpt->index_[name] = &view;
    }
    ckpt->files_.push_back(std::move(*f));
  }
  for (const auto& [name, shard] : weight_map) {
    if (!ckpt->index_.count(name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          index_path, ": tensor \"", name, "\" is mapped to ", shard, " but missing there"));
    }
  }
  return ckpt;
}

absl::StatusOr<const TensorView*> SafetensorsCheckpoint::Find(
    absl::string_view name) const {
  auto it = index_.find(std::string(name));
  if (it == index_.end()) {
    return absl::NotFoundError(absl::StrCat("checkpoint has no tensor \"", name, "\""));
  }
  return it->second;
}

absl::Status SafetensorsCheckpoint::ReadAsFloat(
    absl::string_view name, const std::vector<int64_t>& expected_shape,
    float* dst) const {
  absl::StatusOr<const TensorView*> v = Find(name);
  if (!v.ok()) return v.status();
  if ((*v)->shape != expected_shape) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor \"", name, "\" has shape ", ShapeString((*v)->shape),
        " but config.json implies ", ShapeString(expected_shape)));
  }
  if ((*v)->dtype == TensorDtype::kOther) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor \"", name, "\" has unsupported dtype ", (*v)->dtype_name,
        " (supported: F32, F16, BF16)"));
  }
  return ConvertToFloat((*v)->dtype, (*v)->data, (*v)->NumElements(), dst);
}

absl::Status SafetensorsWriter::AddFloat(const std::string& name, TensorDtype dtype,
                                         const std::vector<int64_t>& shape,
                                         const std::vector<float>& data) {
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  if (numel != static_cast<int64_t>(data.size())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor \"", name, "\": ", data.size(), " values for shape ", ShapeString(shape)));
  }
  std::string bytes;
  switch (dtype) {
    case TensorDtype::kF32:
      bytes.assign(reinterpret_cast<const char*>(data.data()), data.size() * 4);
      break;
    case TensorDtype::kBF16:
    case TensorDtype::kF16:
      bytes.resize(data.size() * 2);
      for (size_t i = 0; i < data.size(); ++i) {
        uint16_t v = dtype == TensorDtype::kBF16 ? FloatToBf16(data[i]) : FloatToFp16(data[i]);
        std::memcpy(&bytes[2 * i], &v, 2);
      }
      break;
    case TensorDtype::kOther:
      return absl::InvalidArgumentError("AddFloat needs F32, F16 or BF16");
  }
  return AddRaw(name, std::string(TensorDtypeName(dtype)), shape, std::move(bytes));
}

absl::Status SafetensorsWriter::AddRaw(const std::string& name,
                                       const std::string& dtype_name,
                                       const std::vector<int64_t>& shape,
                                       std::string bytes) {
  if (name.empty() || name == "__metadata__" || entries_.count(name)) {
    return absl::InvalidArgumentError(absl::StrCat("bad or duplicate tensor name \"", name, "\""));
  }
  entries_[name] = Entry{dtype_name, shape, std::move(bytes)};
  return absl::OkStatus();
}

void SafetensorsWriter::SetMetadata(const std::string& key, const std::string& value) {
  metadata_[key] = value;
}

absl::Status SafetensorsWriter::Write(const std::string& path) const {
  json header = json::object();
  uint64_t offset = 0;
  for (const auto& [name, e] : entries_) {
    header[name] = {{"dtype", e.dtype_name},
                    {"shape", e.shape},
                    {"data_offsets", {offset, offset + e.bytes.size()}}};
    offset += e.bytes.size();
  }
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  std::string h = header.dump();
  while ((h.size() + 8) % 8 != 0) h.push_back(' ');
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::UnavailableError(absl::StrCat("cannot write ", path));
  uint64_t n = h.size();
  char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  out.write(len, 8);
  out.write(h.data(), h.size());
  for (const auto& [name, e] : entries_) out.write(e.bytes.data(), e.bytes.size());
  out.close();
  if (!out) return absl::UnavailableError(absl::StrCat("write to ", path, " failed"));
  return absl::OkStatus();
}

}  // namespace engine
}  // namespace colo
