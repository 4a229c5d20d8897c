#pragma once
// Hugging Face tokenizer.json files with a byte-level BPE model: Llama 3, Qwen2, SmolLM and
// GPT-2's own. Encoding and decoding are checked against Hugging Face's `tokenizers` library
// (tests/test_hf_tokenizer.cpp) on small files of each shape.
//
//   auto tok = lmshrink::read_hf_tokenizer("tokenizer.json");
//   std::vector<int> ids = tok.encode("Hello<|endoftext|>", /*parse_special=*/true);
//   std::string text = tok.decode(ids);
//
// Encoding, as the library does it:
//  1. Added tokens are split out of the text first (at each position the longest; leftmost
//     first). Special ones only when `parse_special`: by default "<|endoftext|>" typed in text is
//     encoded as the text it is, which is what training data wants; Hugging Face's tokenizers
//     always take it as the special token (parse_special = true gives their ids).
//  2. The rest is normalised (NFC when the file says so) and pre-tokenised by the file's
//     sequence of: Split on Llama 3's or Qwen2's pattern, Digits, ByteLevel (GPT-2's pattern
//     when use_regex). The patterns are recognised by their exact text; others are refused.
//  3. Each piece's bytes are merged by rank (ignore_merges: a piece that is a token is taken whole).
// The post-processor (a BOS template) is not applied: programs add the config's BOS themselves.
// Decoding concatenates token bytes (added tokens as their text, special ones skipped on
// request); the result is bytes, which are not UTF-8 when the ids split a character.
//
// Read: model.type "BPE" without byte fallback, dropout, or subword prefixes/suffixes;
// normaliser null or NFC; added tokens without single_word/lstrip/rstrip. SentencePiece-style
// tokenizer.json files (Metaspace, byte_fallback) are refused: read the tokenizer.model beside them.

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../config.hpp"
#pragma push_macro("LMSHRINK_INSIDE_LIBRARY")
#define LMSHRINK_INSIDE_LIBRARY
#include "../detail/json.hpp"
#include "../detail/nfc.hpp"
#include "../detail/read_file.hpp"
#include "../detail/unicode_categories.hpp"
#include "../detail/utf8.hpp"
#pragma pop_macro("LMSHRINK_INSIDE_LIBRARY")
#include "../errors.hpp"
#include "gpt2_tokenizer.hpp"

LMSHRINK_NAMESPACE_BEGIN

namespace detail {

/// The pieces of Llama 3's pre-tokeniser pattern (max_digits 3) or Qwen2's (max_digits 1):
///   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max}| ?[^\s\p{L}\p{N}]+[\r\n]*
///   |\s*[\r\n]+|\s+(?!\S)|\s+
/// alternatives tried in order at each position, as a backtracking regex engine does. A byte that
/// is not UTF-8 is a character of no class (like punctuation).
inline std::vector<std::string_view> split_llama3(std::string_view text, int max_digits) {
  enum Class : unsigned char { kLetter, kNumber, kSpace, kOther };
  struct Unit {
    std::size_t begin, size;
    std::uint32_t cp;
    Class cls;
  };
  std::vector<Unit> u;
  for (std::size_t i = 0; i < text.size();) {
    const auto [cp, n] = next_code_point(text, i);
    Class c = kOther;
    if (cp != 0xFFFFFFFFu) c = is_letter(cp) ? kLetter : is_number(cp) ? kNumber : is_white_space(cp) ? kSpace : kOther;
    u.push_back({i, n, cp, c});
    i += n;
  }
  const std::size_t n = u.size();
  std::vector<std::string_view> pieces;
  const auto emit = [&](std::size_t from, std::size_t to) {
    pieces.push_back(text.substr(u[from].begin, u[to - 1].begin + u[to - 1].size - u[from].begin));
  };
  const auto lower = [&](std::size_t k) -> std::uint32_t {
    if (k >= n) return 0;
    const std::uint32_t c = u[k].cp;
    if (c >= 'A' && c <= 'Z') return c + 32;
    return c == 0x17F ? std::uint32_t('s') : c;  // ſ folds to s
  };
  const auto newline = [&](std::size_t k) { return k < n && (u[k].cp == '\r' || u[k].cp == '\n'); };
  for (std::size_t i = 0; i < n;) {
    // (?i:'s|'t|'re|'ve|'m|'ll|'d)
    if (u[i].cp == '\'') {
      std::size_t len = 0;
      const std::uint32_t a = lower(i + 1), b = lower(i + 2);
      if (a == 's' || a == 't' || a == 'm' || a == 'd') len = 2;
      else if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) len = 3;
      if (len) {
        emit(i, i + len);
        i += len;
        continue;
      }
    }
    // [^\r\n\p{L}\p{N}]?\p{L}+
    {
      std::size_t j = i;
      if (u[j].cls != kLetter && u[j].cls != kNumber && !newline(j) && j + 1 < n && u[j + 1].cls == kLetter) ++j;
      if (u[j].cls == kLetter) {
        while (j < n && u[j].cls == kLetter) ++j;
        emit(i, j);
        i = j;
        continue;
      }
    }
    // \p{N}{1,max}
    if (u[i].cls == kNumber) {
      std::size_t j = i;
      while (j < n && u[j].cls == kNumber && int(j - i) < max_digits) ++j;
      emit(i, j);
      i = j;
      continue;
    }
    //  ?[^\s\p{L}\p{N}]+[\r\n]*
    {
      std::size_t j = i;
      if (u[j].cp == ' ' && j + 1 < n && u[j + 1].cls == kOther) ++j;
      if (u[j].cls == kOther) {
        while (j < n && u[j].cls == kOther) ++j;
        while (newline(j)) ++j;
        emit(i, j);
        i = j;
        continue;
      }
    }
    // Here u[i] is white space. \s*[\r\n]+: the run up to its last CR or LF.
    std::size_t end = i;
    while (end < n && u[end].cls == kSpace) ++end;
    std::size_t last_newline = end;
    for (std::size_t k = i; k < end; ++k)
      if (newline(k)) last_newline = k;
    if (last_newline < end) {
      emit(i, last_newline + 1);
      i = last_newline + 1;
      continue;
    }
    // \s+(?!\S), then \s+
    std::size_t k = end;
    if (k < n && k - i >= 2) --k;  // leave the last space to prefix the next piece
    emit(i, k);
    i = k;
  }
  return pieces;
}

/// Hugging Face's Digits pre-tokeniser: numbers (\p{N}) apart from the rest, each one alone
/// when `individual`, else in runs.
inline void split_digits(std::string_view text, bool individual, std::vector<std::string_view>& out) {
  std::size_t start = 0;
  bool run_is_number = false;
  for (std::size_t i = 0; i < text.size();) {
    const auto [cp, n] = next_code_point(text, i);
    const bool number = cp != 0xFFFFFFFFu && is_number(cp);
    if (i > start && (number != run_is_number || (number && individual))) {
      out.push_back(text.substr(start, i - start));
      start = i;
    }
    run_is_number = number;
    i += n;
  }
  if (start < text.size()) out.push_back(text.substr(start));
}

}  // namespace detail

class HfTokenizer {
 public:
  /// One step of the pre-tokeniser sequence.
  enum class Split : std::uint8_t {
    llama3,          ///< Split on Llama 3's pattern
    qwen2,           ///< Split on Qwen2's pattern (single digits)
    gpt2,            ///< GPT-2's pattern (ByteLevel with use_regex, or Split on it)
    digits,          ///< Digits, individual_digits: true
    digit_runs,      ///< Digits, individual_digits: false
  };
  struct AddedToken {
    int id = 0;
    std::string content;
    bool special = true;
  };

  HfTokenizer() = default;

  /// `bpe` holds the model's vocabulary (ids [0, bpe.vocab_size())) and merges; added tokens may
  /// repeat vocabulary ids or extend them. format_error when an id in [0, vocab_size()) is neither.
  HfTokenizer(Gpt2Tokenizer bpe, std::vector<AddedToken> added, std::vector<Split> splits, bool nfc,
              bool ignore_merges, const std::string& source = "HfTokenizer")
      : bpe_(std::move(bpe)), added_(std::move(added)), splits_(std::move(splits)), nfc_(nfc),
        ignore_merges_(ignore_merges) {
    vocab_size_ = bpe_.vocab_size();
    for (const AddedToken& a : added_) {
      if (a.id < 0 || a.content.empty())
        fail<format_error>("read_hf_tokenizer", "'", source, "': added token '", a.content, "' has id ", a.id,
                           "; a non-negative id and some text were expected");
      vocab_size_ = std::max(vocab_size_, a.id + 1);
    }
    added_by_id_.assign(std::size_t(vocab_size_), -1);
    for (std::size_t k = 0; k < added_.size(); ++k) {
      added_by_id_[std::size_t(added_[k].id)] = int(k);
      added_by_first_byte_[static_cast<unsigned char>(added_[k].content[0])].push_back(int(k));
    }
    for (int id = bpe_.vocab_size(); id < vocab_size_; ++id)
      if (added_by_id_[std::size_t(id)] < 0)
        fail<format_error>("read_hf_tokenizer", "'", source, "': id ", id, " is neither in the model's vocabulary (",
                           bpe_.vocab_size(), " tokens) nor an added token; ids must leave no gaps");
    for (auto& list : added_by_first_byte_)  // the longest first
      std::stable_sort(list.begin(), list.end(), [&](int a, int b) {
        return added_[std::size_t(a)].content.size() > added_[std::size_t(b)].content.size();
      });
  }

  int vocab_size() const { return vocab_size_; }
  const std::vector<AddedToken>& added_tokens() const { return added_; }
  const std::vector<Split>& pre_tokenizer() const { return splits_; }
  bool nfc() const { return nfc_; }
  /// The id of an added token's text, else of the token with these bytes, else -1.
  int find(std::string_view text) const {
    for (const AddedToken& a : added_)
      if (a.content == text) return a.id;
    return bpe_.find(text);
  }
  bool is_special(int id) const {
    check_id("HfTokenizer::is_special", id);
    const int k = added_by_id_[std::size_t(id)];
    return k >= 0 && added_[std::size_t(k)].special;
  }

  /// The pre-tokeniser's pieces of already normalised text (views into it).
  std::vector<std::string_view> pre_tokenize(std::string_view text) const {
    std::vector<std::string_view> pieces{text}, next;
    for (const Split s : splits_) {
      next.clear();
      for (const std::string_view p : pieces) {
        if (s == Split::digits || s == Split::digit_runs) {
          detail::split_digits(p, s == Split::digits, next);
        } else {
          const std::vector<std::string_view> parts =
              s == Split::gpt2 ? Gpt2Tokenizer::pre_tokenize(p) : detail::split_llama3(p, s == Split::llama3 ? 3 : 1);
          next.insert(next.end(), parts.begin(), parts.end());
        }
      }
      pieces.swap(next);
    }
    return pieces;
  }

  /// The ids of `text` (see the header comment; no BOS/EOS is added).
  std::vector<int> encode(std::string_view text, bool parse_special = false) const {
    if (vocab_size_ == 0) fail<state_error>("HfTokenizer::encode", "the tokenizer is empty; read one first");
    std::vector<int> ids;
    std::size_t plain = 0;
    for (std::size_t i = 0; i < text.size();) {
      const int k = added_at(text, i, parse_special);
      if (k < 0) {
        ++i;
        continue;
      }
      encode_plain(text.substr(plain, i - plain), ids);
      ids.push_back(added_[std::size_t(k)].id);
      i += added_[std::size_t(k)].content.size();
      plain = i;
    }
    encode_plain(text.substr(plain), ids);
    return ids;
  }

  /// The bytes of `ids`: tokens' bytes, added tokens' text (special ones left out when
  /// `skip_special`); value_error for an id outside [0, vocab_size()).
  std::string decode(const std::vector<int>& ids, bool skip_special = false) const {
    std::string out;
    for (const int id : ids) {
      check_id("HfTokenizer::decode", id);
      const int k = added_by_id_[std::size_t(id)];
      if (k >= 0) {
        if (!(skip_special && added_[std::size_t(k)].special)) out += added_[std::size_t(k)].content;
      } else {
        out += bpe_.token_bytes(id);
      }
    }
    return out;
  }

 private:
  /// The added token (index into added_) matching at text[i], the longest; -1 when none.
  int added_at(std::string_view text, std::size_t i, bool parse_special) const {
    for (const int k : added_by_first_byte_[static_cast<unsigned char>(text[i])]) {
      const AddedToken& a = added_[std::size_t(k)];
      if ((parse_special || !a.special) && text.compare(i, a.content.size(), a.content) == 0) return k;
    }
    return -1;
  }

  void encode_plain(std::string_view text, std::vector<int>& ids) const {
    if (text.empty()) return;
    const std::string normalized = nfc_ ? detail::nfc(text) : std::string(text);
    for (const std::string_view piece : pre_tokenize(normalized)) {
      const int whole = ignore_merges_ ? bpe_.find(piece) : -1;
      if (whole >= 0) ids.push_back(whole);
      else bpe_.encode_piece(piece, ids);
    }
  }

  void check_id(const char* where, int id) const {
    if (id < 0 || id >= vocab_size_) fail<value_error>(where, "token id ", id, " is outside [0, ", vocab_size_, ")");
  }

  Gpt2Tokenizer bpe_;
  std::vector<AddedToken> added_;
  std::vector<Split> splits_;
  bool nfc_ = false, ignore_merges_ = false;
  int vocab_size_ = 0;
  std::vector<int> added_by_id_;
  std::vector<int> added_by_first_byte_[256];
};

namespace detail {

inline constexpr std::string_view kLlama3Pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
inline constexpr std::string_view kQwen2Pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
inline constexpr std::string_view kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/// Reads tokenizer.json's fields with errors that name the file and the field.
class HfTokenizerJson {
 public:
  HfTokenizerJson(const char* where, const std::string& source) : where_(where), source_(source) {}

  template <class... Parts>
  [[noreturn]] void bad(const std::string& field, const Parts&... parts) const {
    fail<format_error>(where_, "'", source_, "': ", field, " ", parts...);
  }
  const JsonValue& member(const JsonValue& object, const std::string& field, const char* key) const {
    const JsonValue* v = object.find(key);
    if (v == nullptr) bad(field + "." + key, "is missing");
    return *v;
  }
  const JsonValue& object(const JsonValue& v, const std::string& field) const {
    if (v.kind != JsonValue::Kind::object) bad(field, "is ", v.kind_name(), "; an object was expected");
    return v;
  }
  std::string text(const JsonValue& v, const std::string& field) const {
    if (v.kind != JsonValue::Kind::string) bad(field, "is ", v.kind_name(), "; a string was expected");
    return v.text;
  }
  bool flag(const JsonValue& object, const std::string& field, const char* key, bool fallback) const {
    const JsonValue* v = object.find(key);
    if (v == nullptr || v->kind == JsonValue::Kind::null) return fallback;
    if (v->kind != JsonValue::Kind::boolean) bad(field + "." + key, "is ", v->kind_name(), "; true or false was expected");
    return v->boolean;
  }
  std::string type(const JsonValue& v, const std::string& field) const {
    return text(member(object(v, field), field, "type"), field + ".type");
  }
  /// One pre-tokeniser object appended to `splits`; true when it was ByteLevel.
  bool pre_tokenizer(const JsonValue& v, const std::string& field, std::vector<HfTokenizer::Split>& splits) const {
    const std::string t = type(v, field);
    if (t == "ByteLevel") {
      if (flag(v, field, "add_prefix_space", false))
        bad(field + ".add_prefix_space", "is true; only false (as Llama 3, Qwen2 and GPT-2 have it) is read");
      if (flag(v, field, "use_regex", true)) splits.push_back(HfTokenizer::Split::gpt2);
      return true;
    }
    if (t == "Digits") {
      splits.push_back(flag(v, field, "individual_digits", false) ? HfTokenizer::Split::digits
                                                                  : HfTokenizer::Split::digit_runs);
      return false;
    }
    if (t == "Split") {
      const JsonValue& pattern = object(member(v, field, "pattern"), field + ".pattern");
      const JsonValue* regex = pattern.find("Regex");
      if (regex == nullptr) bad(field + ".pattern", "is not a Regex; only Llama 3's, Qwen2's and GPT-2's patterns are read");
      const std::string p = text(*regex, field + ".pattern.Regex");
      if (p == kLlama3Pattern) splits.push_back(HfTokenizer::Split::llama3);
      else if (p == kQwen2Pattern) splits.push_back(HfTokenizer::Split::qwen2);
      else if (p == kGpt2Pattern) splits.push_back(HfTokenizer::Split::gpt2);
      else bad(field + ".pattern.Regex", "is '", p.substr(0, 120), "'; only Llama 3's, Qwen2's and GPT-2's patterns are read");
      const std::string behavior = text(member(v, field, "behavior"), field + ".behavior");
      if (behavior != "Isolated") bad(field + ".behavior", "is '", behavior, "'; only \"Isolated\" is read");
      if (flag(v, field, "invert", false)) bad(field + ".invert", "is true; only false is read");
      return false;
    }
    if (t == "Metaspace")
      bad(field, "is Metaspace: a SentencePiece-style tokenizer.json; read the tokenizer.model beside it");
    bad(field + ".type", "is '", t, "'; ByteLevel, Split, Digits or a Sequence of them was expected");
  }

 private:
  const char* where_;
  const std::string& source_;
};

}  // namespace detail

/// Parses tokenizer.json held in memory (`source` names it in messages). format_error, naming the
/// field, for anything that is not a byte-level BPE tokenizer lmshrink reads.
inline HfTokenizer parse_hf_tokenizer(std::string_view json, const std::string& source = "<memory>") {
  static constexpr const char* where = "read_hf_tokenizer";
  using detail::JsonValue;
  const JsonValue root = detail::parse_json(where, source, json, {64, std::int64_t(1) << 23});
  const detail::HfTokenizerJson f(where, source);
  f.object(root, "the file");
  // model
  const JsonValue& model = f.object(f.member(root, "the file", "model"), "model");
  const std::string model_type = f.type(model, "model");
  if (model_type != "BPE") f.bad("model.type", "is '", model_type, "'; only \"BPE\" is read");
  if (f.flag(model, "model", "byte_fallback", false))
    f.bad("model.byte_fallback", "is true: a SentencePiece-style tokenizer.json; read the tokenizer.model beside it");
  if (const JsonValue* d = model.find("dropout"); d != nullptr && d->kind != JsonValue::Kind::null &&
                                                  !(d->kind == JsonValue::Kind::number && d->number == 0))
    f.bad("model.dropout", "is set; BPE dropout (sampling) is not read");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (const JsonValue* v = model.find(key); v != nullptr && v->kind != JsonValue::Kind::null && !(v->kind == JsonValue::Kind::string && v->text.empty()))
      f.bad(std::string("model.") + key, "is set; byte-level BPE has none");
  const bool ignore_merges = f.flag(model, "model", "ignore_merges", false);
  const JsonValue& vocab = f.object(f.member(model, "model", "vocab"), "model.vocab");
  const std::size_t n = vocab.members.size();
  std::vector<std::string> tokens(n);
  std::vector<bool> seen(n, false);
  for (const auto& [token, id] : vocab.members) {
    if (!id.is_integer || id.integer < 0 || std::uint64_t(id.integer) >= n)
      f.bad("model.vocab", "gives '", token, "' the id ", id.kind == JsonValue::Kind::number ? id.text : id.kind_name(),
            "; an integer in [0, ", n, ") was expected");
    if (seen[std::size_t(id.integer)]) f.bad("model.vocab", "gives the id ", id.integer, " to two tokens");
    seen[std::size_t(id.integer)] = true;
    tokens[std::size_t(id.integer)] = detail::gpt2_file_token_bytes(where, source, token, "model.vocab token");
  }
  const JsonValue& merges_json = f.member(model, "model", "merges");
  if (merges_json.kind != JsonValue::Kind::array) f.bad("model.merges", "is ", merges_json.kind_name(), "; an array was expected");
  if (merges_json.items.size() > n) f.bad("model.merges", "has ", merges_json.items.size(), " merges but the vocabulary ", n, " tokens");
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(merges_json.items.size());
  for (std::size_t r = 0; r < merges_json.items.size(); ++r) {
    const JsonValue& m = merges_json.items[r];
    const std::string field = "model.merges[" + std::to_string(r) + "]";
    std::string a, b;
    if (m.kind == JsonValue::Kind::string) {  // "a b"
      const std::size_t space = m.text.find(' ');
      if (space == 0 || space == std::string::npos || space + 1 == m.text.size() || m.text.find(' ', space + 1) != std::string::npos)
        f.bad(field, "is '", m.text.substr(0, 80), "'; two tokens separated by one space were expected");
      a = m.text.substr(0, space);
      b = m.text.substr(space + 1);
    } else if (m.kind == JsonValue::Kind::array && m.items.size() == 2) {  // ["a", "b"]
      a = f.text(m.items[0], field + "[0]");
      b = f.text(m.items[1], field + "[1]");
    } else {
      f.bad(field, "is ", m.kind_name(), "; \"a b\" or [\"a\", \"b\"] was expected");
    }
    merges.emplace_back(detail::gpt2_file_token_bytes(where, source, a, "merge part"),
                        detail::gpt2_file_token_bytes(where, source, b, "merge part"));
  }
  // normalizer
  bool nfc = false;
  if (const JsonValue* norm = root.find("normalizer"); norm != nullptr && norm->kind != JsonValue::Kind::null) {
    const std::string t = f.type(*norm, "normalizer");
    if (t == "NFC") nfc = true;
    else f.bad("normalizer.type", "is '", t, "'; null or NFC was expected");
  }
  // pre_tokenizer
  std::vector<HfTokenizer::Split> splits;
  bool byte_level = false;
  const JsonValue& pre = f.member(root, "the file", "pre_tokenizer");
  if (pre.kind != JsonValue::Kind::null) {
    if (f.type(pre, "pre_tokenizer") == "Sequence") {
      const JsonValue& list = f.member(pre, "pre_tokenizer", "pretokenizers");
      if (list.kind != JsonValue::Kind::array) f.bad("pre_tokenizer.pretokenizers", "is ", list.kind_name(), "; an array was expected");
      for (std::size_t k = 0; k < list.items.size(); ++k)
        byte_level |= f.pre_tokenizer(list.items[k], "pre_tokenizer.pretokenizers[" + std::to_string(k) + "]", splits);
    } else {
      byte_level = f.pre_tokenizer(pre, "pre_tokenizer", splits);
    }
  }
  if (!byte_level) f.bad("pre_tokenizer", "has no ByteLevel step; only byte-level BPE tokenizers are read");
  if (const JsonValue* dec = root.find("decoder"); dec != nullptr && dec->kind != JsonValue::Kind::null) {
    const std::string t = f.type(*dec, "decoder");
    if (t != "ByteLevel") f.bad("decoder.type", "is '", t, "'; ByteLevel was expected");
  }
  // added_tokens
  std::vector<HfTokenizer::AddedToken> added;
  if (const JsonValue* list = root.find("added_tokens"); list != nullptr && list->kind != JsonValue::Kind::null) {
    if (list->kind != JsonValue::Kind::array) f.bad("added_tokens", "is ", list->kind_name(), "; an array was expected");
    for (std::size_t k = 0; k < list->items.size(); ++k) {
      const std::string field = "added_tokens[" + std::to_string(k) + "]";
      const JsonValue& a = f.object(list->items[k], field);
      const JsonValue& id = f.member(a, field, "id");
      if (!id.is_integer || id.integer < 0 || id.integer >= (std::int64_t(1) << 24))
        f.bad(field + ".id", "is ", id.kind == JsonValue::Kind::number ? id.text : id.kind_name(), "; an id in [0, 2^24) was expected");
      for (const char* key : {"single_word", "lstrip", "rstrip"})
        if (f.flag(a, field, key, false)) f.bad(field + "." + key, "is true; only false is read");
      added.push_back({int(id.integer), f.text(f.member(a, field, "content"), field + ".content"), f.flag(a, field, "special", false)});
    }
  }
  try {
    return HfTokenizer(Gpt2Tokenizer(std::move(tokens), merges), std::move(added), std::move(splits), nfc,
                       ignore_merges, source);
  } catch (const format_error& e) {  // the vocabulary's own check, said of this file
    const std::string what = e.what();
    const std::size_t cut = what.find("Gpt2Tokenizer: ");
    fail<format_error>(where, "'", source, "': ", cut == std::string::npos ? what : what.substr(cut + 15));
  }
}

/// Reads a tokenizer.json file (at most 256 MiB).
inline HfTokenizer read_hf_tokenizer(const std::string& path) {
  const std::vector<char> bytes = detail::read_file_bytes("read_hf_tokenizer", path, 2, "a JSON object",
                                                          std::int64_t(256) << 20, "more than the 256 MiB a tokenizer.json may have");
  return parse_hf_tokenizer(std::string_view(bytes.data(), bytes.size()), path);
}

LMSHRINK_NAMESPACE_END
