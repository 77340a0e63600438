// A thin std-only wrapper over libsentencepiece's SentencePieceProcessor.
// Debian's sentencepiece_processor.h declares `absl::string_view` as an
// alias of std::string_view, which clashes with Debian's Abseil (its own
// absl::string_view class), so the library is only included by
// sentencepiece_model.cc, which includes no Abseil header.
//
// Thread-safe after Load (the processor's encode/decode are const).
#ifndef COLO_ENGINE_TOKENIZER_SENTENCEPIECE_MODEL_H_
#define COLO_ENGINE_TOKENIZER_SENTENCEPIECE_MODEL_H_

#include <memory>
#include <string>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace colo {
namespace tokenizer {

class SentencePieceModel {
 public:
  // nullptr with *error set when `serialized_proto` is not a model.
  static std::unique_ptr<SentencePieceModel> Load(const std::string& serialized_proto,
                                                  std::string* error);
  ~SentencePieceModel();

  // false with *error set on failure.
  bool Encode(const std::string& text, std::vector<int>* ids, std::string* error) const;
  bool Decode(const std::vector<int>& ids, std::string* text, std::string* error) const;

  int size() const;
  const std::string& IdToPiece(int id) const;
  int PieceToId(const std::string& piece) const;
  bool IsControl(int id) const;
  bool IsUnknown(int id) const;
  bool IsByte(int id) const;
  int bos_id() const;  // -1: none
  int eos_id() const;
  int unk_id() const;

 private:
  SentencePieceModel();
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
};

}  // namespace tokenizer
}  // namespace colo

#endif  // COLO_ENGINE_TOKENIZER_SENTENCEPIECE_MODEL_H_
