#include "engine/tokenizer/sentencepiece_model.h"

// No Abseil header may be included here (see the header comment).
#include <sentencepiece_processor.h>

namespace colo {
namespace tokenizer {

SentencePieceModel::SentencePieceModel()
    : sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {}
SentencePieceModel::~SentencePieceModel() = default;

std::unique_ptr<SentencePieceModel> SentencePieceModel::Load(const std::string& serialized_proto,
                                                             std::string* error) {
  std::unique_ptr<SentencePieceModel> m(new SentencePieceModel());
  const sentencepiece::util::Status s = m->sp_->LoadFromSerializedProto(serialized_proto);
  if (!s.ok()) {
    *error = s.ToString();
    return nullptr;
  }
  return m;
}

bool SentencePieceModel::Encode(const std::string& text, std::vector<int>* ids,
                                std::string* error) const {
  const sentencepiece::util::Status s = sp_->Encode(text, ids);
  if (!s.ok()) *error = s.ToString();
  return s.ok();
}

bool SentencePieceModel::Decode(const std::vector<int>& ids, std::string* text,
                                std::string* error) const {
  const sentencepiece::util::Status s = sp_->Decode(ids, text);
  if (!s.ok()) *error = s.ToString();
  return s.ok();
}

int SentencePieceModel::size() const { return sp_->GetPieceSize(); }
const std::string& SentencePieceModel::IdToPiece(int id) const { return sp_->IdToPiece(id); }
int SentencePieceModel::PieceToId(const std::string& piece) const { return sp_->PieceToId(piece); }
bool SentencePieceModel::IsControl(int id) const { return sp_->IsControl(id); }
bool SentencePieceModel::IsUnknown(int id) const { return sp_->IsUnknown(id); }
bool SentencePieceModel::IsByte(int id) const { return sp_->IsByte(id); }
int SentencePieceModel::bos_id() const { return sp_->bos_id(); }
int SentencePieceModel::eos_id() const { return sp_->eos_id(); }
int SentencePieceModel::unk_id() const { return sp_->unk_id(); }

}  // namespace tokenizer
}  // namespace colo
