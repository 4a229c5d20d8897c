#pragma once
// The families' tokenizers behind models::TextCodec: llama2.c's (BOS starts a story, and the
// next BOS ends it, as in run.c) and GPT-2's byte-level BPE (<|endoftext|> between stories).
#include "../io/gpt2_tokenizer.hpp"
#include "../io/tokenizer.hpp"
#include <string>
#include <vector>

#include "model.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace models {

namespace llama {

class Codec final : public TextCodec {
 public:
  explicit Codec(lmshrink::Tokenizer tok) : tok_(std::move(tok)) {}
  int vocab_size() const override { return tok_.vocab_size(); }
  std::vector<int> encode_story(const std::string& story) const override { return tok_.encode(story, true, false); }
  std::string decode(const std::vector<int>& ids) const override { return tok_.decode(ids); }
  int story_start() const override { return lmshrink::Tokenizer::kBos; }
  int story_end() const override { return lmshrink::Tokenizer::kBos; }  // run.c: BOS starts the next story

 private:
  lmshrink::Tokenizer tok_;
};

}  // namespace llama

namespace gpt2 {

class Codec final : public TextCodec {
 public:
  explicit Codec(lmshrink::Gpt2Tokenizer tok) : tok_(std::move(tok)) {
    if (tok_.end_of_text() < 0)
      lmshrink::fail<lmshrink::format_error>("load_codec", "the GPT-2 vocabulary has no <|endoftext|> "
                                                     "token, which separates stories");
  }
  int vocab_size() const override { return tok_.vocab_size(); }
  std::vector<int> encode_story(const std::string& story) const override {
    std::vector<int> ids{tok_.end_of_text()};
    const std::vector<int> text = tok_.encode(story);
    ids.insert(ids.end(), text.begin(), text.end());
    return ids;
  }
  std::string decode(const std::vector<int>& ids) const override {
    std::vector<int> text;  // the separators are not text
    for (int id : ids)
      if (id != tok_.end_of_text()) text.push_back(id);
    return tok_.decode(text);
  }
  int story_start() const override { return tok_.end_of_text(); }
  int story_end() const override { return tok_.end_of_text(); }

 private:
  lmshrink::Gpt2Tokenizer tok_;
};

}  // namespace gpt2
}  // namespace models
LMSHRINK_NAMESPACE_END
