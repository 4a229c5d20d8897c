#pragma once
// The families' tokenizers behind models::TextCodec: llama2.c's tokenizer.bin and SentencePiece's
// tokenizer.model (a story starts with BOS; it ends with the next BOS for llama2.c models, as
// in run.c, and with EOS for Hugging Face models: load_codec chooses) and GPT-2's byte-level
// BPE (<|endoftext|> between stories).
#include "../io/gpt2_tokenizer.hpp"
#include "../io/hf_tokenizer.hpp"
#include "../io/sentencepiece.hpp"
#include "../io/tokenizer.hpp"
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace models {

namespace llama {

/// llama2.c's tokenizer.bin, whose format fixes BOS at 1 (run.c); a story ends with `end`
/// (BOS by default: run.c's convention, the next story's start).
class Codec final : public TextCodec {
 public:
  explicit Codec(lmshrink::Tokenizer tok, std::string description = "", int end = lmshrink::Tokenizer::kBos)
      : tok_(std::move(tok)), description_(std::move(description)), end_(end) {}
  int vocab_size() const override { return tok_.vocab_size(); }
  std::vector<int> encode_story(const std::string& story) const override { return tok_.encode(story, true, false); }
  std::string decode(const std::vector<int>& ids) const override { return tok_.decode(ids); }
  int story_start() const override { return lmshrink::Tokenizer::kBos; }
  int story_end() const override { return end_; }
  std::string description() const override { return description_; }

 private:
  lmshrink::Tokenizer tok_;
  std::string description_;
  int end_;
};

/// SentencePiece's tokenizer.model: a story is `start` (BOS) and the text's pieces, and ends
/// with `end`.
class SentencePieceCodec final : public TextCodec {
 public:
  SentencePieceCodec(lmshrink::SentencePieceTokenizer tok, int start, int end, std::string description = "")
      : tok_(std::move(tok)), start_(start), end_(end), description_(std::move(description)) {
    for (const auto& [id, what] : {std::pair<int, const char*>{start_, "start"}, {end_, "end"}})
      if (id < 0 || id >= tok_.vocab_size())
        lmshrink::fail<lmshrink::value_error>("SentencePieceCodec", "the story ", what, " token is ", id,
                                              "; an id in [0, ", tok_.vocab_size(),
                                              ") was expected (the model has no BOS or EOS piece?)");
  }
  int vocab_size() const override { return tok_.vocab_size(); }
  std::vector<int> encode_story(const std::string& story) const override {
    std::vector<int> ids{start_};
    const std::vector<int> text = tok_.encode(story);
    ids.insert(ids.end(), text.begin(), text.end());
    return ids;
  }
  std::string decode(const std::vector<int>& ids) const override { return tok_.decode(ids); }
  int story_start() const override { return start_; }
  int story_end() const override { return end_; }
  std::string description() const override { return description_; }
  const lmshrink::SentencePieceTokenizer& tokenizer() const { return tok_; }

 private:
  lmshrink::SentencePieceTokenizer tok_;
  int start_, end_;
  std::string description_;
};

}  // namespace llama

namespace gpt2 {

class Codec final : public TextCodec {
 public:
  explicit Codec(lmshrink::Gpt2Tokenizer tok, std::string description = "")
      : tok_(std::move(tok)), description_(std::move(description)) {
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
  std::string description() const override { return description_; }

 private:
  lmshrink::Gpt2Tokenizer tok_;
  std::string description_;
};

}  // namespace gpt2

/// Hugging Face's tokenizer.json (any family): a story is `start` and the text's ids (special
/// tokens typed in the text stay text), and ends with `end`.
class HfCodec final : public TextCodec {
 public:
  HfCodec(lmshrink::HfTokenizer tok, int start, int end, std::string description = "")
      : tok_(std::move(tok)), start_(start), end_(end), description_(std::move(description)) {
    for (const auto& [id, what] : {std::pair<int, const char*>{start_, "start"}, {end_, "end"}})
      if (id < 0 || id >= tok_.vocab_size())
        lmshrink::fail<lmshrink::value_error>("HfCodec", "the story ", what, " token is ", id, "; an id in [0, ",
                                              tok_.vocab_size(), ") was expected");
  }
  int vocab_size() const override { return tok_.vocab_size(); }
  std::vector<int> encode_story(const std::string& story) const override {
    std::vector<int> ids{start_};
    const std::vector<int> text = tok_.encode(story);
    ids.insert(ids.end(), text.begin(), text.end());
    return ids;
  }
  std::string decode(const std::vector<int>& ids) const override { return tok_.decode(ids, /*skip_special=*/true); }
  int story_start() const override { return start_; }
  int story_end() const override { return end_; }
  std::string description() const override { return description_; }
  const lmshrink::HfTokenizer& tokenizer() const { return tok_; }

 private:
  lmshrink::HfTokenizer tok_;
  int start_, end_;
  std::string description_;
};

/// A tokenizer of a model whose embedding has more rows than the tokenizer has ids (a padded
/// vocabulary: Qwen2-0.5B's 151,936 rows for 151,665 ids, GPT-2 trained at 50,304 for 50,257):
/// the model's size, and the padding ids (never produced by encoding, seldom sampled) decode to
/// nothing.
class PaddedCodec final : public TextCodec {
 public:
  PaddedCodec(std::unique_ptr<TextCodec> inner, int model_vocab) : inner_(std::move(inner)), vocab_(model_vocab) {
    if (model_vocab < inner_->vocab_size())
      lmshrink::fail<lmshrink::format_error>("PaddedCodec", "the tokenizer has ", inner_->vocab_size(),
                                             " ids but the model's vocabulary has ", model_vocab);
  }
  int vocab_size() const override { return vocab_; }
  std::vector<int> encode_story(const std::string& story) const override { return inner_->encode_story(story); }
  std::string decode(const std::vector<int>& ids) const override {
    std::vector<int> known;
    for (int id : ids)
      if (id < inner_->vocab_size() || id >= vocab_) known.push_back(id);  // out of range: decode names it
    return inner_->decode(known);
  }
  int story_start() const override { return inner_->story_start(); }
  int story_end() const override { return inner_->story_end(); }
  std::string description() const override {
    return inner_->description() + ", padded to the model's " + std::to_string(vocab_) + " ids";
  }
  const TextCodec& inner() const { return *inner_; }

 private:
  std::unique_ptr<TextCodec> inner_;
  int vocab_;
};

/// A tokenizer.json codec (perhaps inside a PaddedCodec) that reads special-token text in a
/// story as the special tokens, as Hugging Face's tokenizers do (--parse-special); everything
/// else is `codec`'s. value_error for any other codec: SentencePiece and llama2.c tokenizers
/// never read control pieces from text.
class SpecialTokenCodec final : public TextCodec {
 public:
  explicit SpecialTokenCodec(const TextCodec& codec) : codec_(codec), hf_(find_hf(codec)) {}
  int vocab_size() const override { return codec_.vocab_size(); }
  std::vector<int> encode_story(const std::string& story) const override {
    std::vector<int> ids{hf_.story_start()};
    const std::vector<int> text = hf_.tokenizer().encode(story, /*parse_special=*/true);
    ids.insert(ids.end(), text.begin(), text.end());
    return ids;
  }
  std::string decode(const std::vector<int>& ids) const override { return codec_.decode(ids); }
  int story_start() const override { return codec_.story_start(); }
  int story_end() const override { return codec_.story_end(); }
  std::string description() const override { return codec_.description() + ", special tokens parsed"; }

 private:
  static const HfCodec& find_hf(const TextCodec& codec) {
    const auto* padded = dynamic_cast<const PaddedCodec*>(&codec);
    const auto* hf = dynamic_cast<const HfCodec*>(padded ? &padded->inner() : &codec);
    if (hf == nullptr)
      lmshrink::fail<lmshrink::value_error>("SpecialTokenCodec", "special tokens are parsed by tokenizer.json "
                                            "tokenizers; ", codec.description(), " never reads them from text");
    return *hf;
  }
  const TextCodec& codec_;
  const HfCodec& hf_;
};

}  // namespace models
LMSHRINK_NAMESPACE_END
