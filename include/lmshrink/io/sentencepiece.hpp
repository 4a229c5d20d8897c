#pragma once
// SentencePiece tokenizer.model files (Llama 2, TinyLlama, Mistral, llama2.c's tok*.model): the
// protobuf ModelProto read with bounds checks, and its BPE encoder and decoder with
// SentencePiece's own semantics, checked against Google's library on texts with every kind of
// whitespace, script, emoji, invalid UTF-8 and user-defined symbols (tests/test_sentencepiece.cpp).
//
//   auto tok = lmshrink::read_sentencepiece("tokenizer.model");
//   std::vector<int> ids = tok.encode("Once upon a time", /*bos=*/true);
//   std::string text = tok.decode(ids);
//
// Read: BPE models (model_type 2) with the "identity" normalizer (no precompiled character map),
// as every Llama-family SentencePiece tokenizer is; unigram models, character maps and
// whitespace-as-suffix are refused by name.
//
// Encoding: normalise (drop leading, trailing and repeated spaces when remove_extra_whitespaces;
// " " dummy prefix when add_dummy_prefix; spaces become U+2581 "▁"; each invalid UTF-8 byte
// becomes U+FFFD), split into characters with user-defined symbols kept whole, then repeatedly
// merge the adjacent pair whose concatenation is a piece with the highest score, the leftmost on
// ties. A symbol that is no piece becomes its UTF-8 bytes' <0xHH> pieces under byte fallback, or
// <unk> (one for a run of them). No BOS/EOS unless asked.
//
// Decoding: control pieces are empty, <unk> is the model's unk_surface, runs of byte pieces are
// decoded as UTF-8 (U+FFFD for each invalid byte), "▁" becomes " ", and the first piece loses
// one leading "▁" (the dummy prefix; with remove_extra_whitespaces, every piece until some
// text is written).

#include <cmath>
#include <cstdint>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "../config.hpp"
#pragma push_macro("LMSHRINK_INSIDE_LIBRARY")
#define LMSHRINK_INSIDE_LIBRARY
#include "../detail/protobuf_wire.hpp"
#include "../detail/read_file.hpp"
#include "../detail/utf8.hpp"
#pragma pop_macro("LMSHRINK_INSIDE_LIBRARY")
#include "../errors.hpp"

LMSHRINK_NAMESPACE_BEGIN

/// A piece's type, with SentencePiece's numbers.
enum class PieceType : std::uint8_t { normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6 };

/// The settings of a tokenizer.model beyond its pieces (trainer and normaliser specs), with
/// SentencePiece's defaults.
struct SentencePieceSettings {
  bool byte_fallback = false;
  bool add_dummy_prefix = true;
  bool remove_extra_whitespaces = true;
  bool escape_whitespaces = true;
  std::string unk_surface = " \xE2\x81\x87 ";  // " ⁇ "
  std::string bos_piece = "<s>", eos_piece = "</s>", pad_piece = "<pad>";
};

class SentencePieceTokenizer {
 public:
  SentencePieceTokenizer() = default;

  /// Pieces, scores and types in id order. format_error for what SentencePiece refuses too:
  /// empty or repeated pieces, no or two <unk>, byte pieces that are not <0x00>…<0xFF> or not all
  /// there under byte fallback.
  SentencePieceTokenizer(std::vector<std::string> pieces, std::vector<float> scores, std::vector<PieceType> types,
                         SentencePieceSettings settings = {}, const std::string& source = "SentencePieceTokenizer")
      : pieces_(std::move(pieces)), scores_(std::move(scores)), types_(std::move(types)), settings_(std::move(settings)) {
    static constexpr const char* where = "read_sentencepiece";
    if (pieces_.size() != scores_.size() || pieces_.size() != types_.size())
      fail<shape_error>(where, "'", source, "': ", pieces_.size(), " pieces, ", scores_.size(), " scores and ",
                        types_.size(), " types; one of each per piece was expected");
    int bytes_found = 0;
    std::vector<int> byte_ids(256, -1);
    for (std::size_t i = 0; i < pieces_.size(); ++i) {
      const std::string& p = pieces_[i];
      const PieceType t = types_[i];
      if (p.empty()) fail<format_error>(where, "'", source, "' piece ", i, " is empty");
      if (t < PieceType::normal || t > PieceType::byte)
        fail<format_error>(where, "'", source, "' piece ", i, " has type ", int(t), "; 1 to 6 was expected");
      const bool ordinary = t == PieceType::normal || t == PieceType::user_defined || t == PieceType::unused;
      if (!(ordinary ? pieces_by_text_ : reserved_by_text_).emplace(p, int(i)).second)
        fail<format_error>(where, "'", source, "' piece ", i, " '", p, "' is defined twice");
      if (t == PieceType::user_defined) {
        user_defined_.insert(p);
        user_defined_lengths_.insert(p.size());
      }
      if (t == PieceType::unknown) {
        if (unk_id_ >= 0) fail<format_error>(where, "'", source, "' has two <unk> pieces: ", unk_id_, " and ", i);
        unk_id_ = int(i);
      }
      if (t == PieceType::byte) {
        if (!settings_.byte_fallback)
          fail<format_error>(where, "'", source, "' piece ", i, " '", p, "' is a byte piece but byte_fallback is off");
        const int b = byte_of_piece(p);
        if (b < 0) fail<format_error>(where, "'", source, "' byte piece ", i, " is '", p, "'; <0x00> to <0xFF> was expected");
        if (byte_ids[std::size_t(b)] < 0) ++bytes_found;
        byte_ids[std::size_t(b)] = int(i);
      }
    }
    if (unk_id_ < 0) fail<format_error>(where, "'", source, "' has no <unk> piece (type 2)");
    if (settings_.byte_fallback && bytes_found != 256)
      fail<format_error>(where, "'", source, "' has byte_fallback on but ", bytes_found, " of the 256 byte pieces");
    if (settings_.byte_fallback) byte_ids_ = std::move(byte_ids);
    bos_id_ = control_id(settings_.bos_piece);
    eos_id_ = control_id(settings_.eos_piece);
    pad_id_ = control_id(settings_.pad_piece);
  }

  int vocab_size() const { return int(pieces_.size()); }
  const std::string& piece(int id) const { return pieces_.at(std::size_t(id)); }
  float score(int id) const { return scores_.at(std::size_t(id)); }
  PieceType type(int id) const { return types_.at(std::size_t(id)); }
  const SentencePieceSettings& settings() const { return settings_; }
  /// The ids of <unk>, and of the BOS, EOS and padding control pieces (-1 when absent).
  int unk_id() const { return unk_id_; }
  int bos_id() const { return bos_id_; }
  int eos_id() const { return eos_id_; }
  int pad_id() const { return pad_id_; }

  /// The id of a piece (control and byte pieces included), or -1.
  int find(std::string_view piece) const {
    const std::string key(piece);
    if (const auto it = reserved_by_text_.find(key); it != reserved_by_text_.end()) return it->second;
    if (const auto it = pieces_by_text_.find(key); it != pieces_by_text_.end()) return it->second;
    return -1;
  }

  /// SentencePiece's normalisation of `text` (identity normaliser).
  std::string normalize(std::string_view text) const {
    std::string out;
    std::size_t at = 0;
    if (settings_.remove_extra_whitespaces)
      while (at < text.size()) {
        const auto [unit, used] = next_unit(text, at);
        if (unit != " ") break;
        at += used;
      }
    if (at == text.size()) return out;
    const std::string_view space = settings_.escape_whitespaces ? std::string_view(kSpace) : std::string_view(" ");
    if (settings_.add_dummy_prefix) out += space;
    bool previous_space = settings_.remove_extra_whitespaces;
    while (at < text.size()) {
      auto [unit, used] = next_unit(text, at);
      while (previous_space && !unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
      if (!unit.empty()) {
        for (const char c : unit)
          if (c == ' ') out += space;
          else out += c;
        previous_space = unit.back() == ' ';
      }
      at += used;
      if (!settings_.remove_extra_whitespaces) previous_space = false;
    }
    if (settings_.remove_extra_whitespaces)
      while (out.size() >= space.size() && out.compare(out.size() - space.size(), space.size(), space) == 0)
        out.resize(out.size() - space.size());
    return out;
  }

  /// The ids of `text`, with BOS first and EOS last when asked (state_error when the model has
  /// none).
  std::vector<int> encode(std::string_view text, bool bos = false, bool eos = false) const {
    std::vector<int> ids;
    if (bos) ids.push_back(required(bos_id_, "BOS", settings_.bos_piece));
    const std::string normalized = normalize(text);
    encode_normalized(normalized, ids);
    if (eos) ids.push_back(required(eos_id_, "EOS", settings_.eos_piece));
    return ids;
  }

  /// The text of `ids`; value_error for an id outside the vocabulary.
  std::string decode(const std::vector<int>& ids) const {
    std::string out, pending_bytes;
    const auto flush_bytes = [&] {
      for (std::size_t at = 0; at < pending_bytes.size();) {
        const std::size_t n = utf8_length(pending_bytes, at);
        if (n == 0) {
          out += kReplacement;
          ++at;
        } else {
          out.append(pending_bytes, at, n);
          at += n;
        }
      }
      pending_bytes.clear();
    };
    // The dummy prefix: one leading "▁" is dropped from the first piece; with
    // remove_extra_whitespaces, from every piece until something is written.
    bool at_start = true;
    for (const int id : ids) {
      if (id < 0 || id >= vocab_size())
        fail<value_error>("SentencePieceTokenizer::decode", "token ", id, " is outside [0, ", vocab_size(), ")");
      const PieceType t = types_[std::size_t(id)];
      if (t == PieceType::byte) {
        pending_bytes += char(byte_of_piece(pieces_[std::size_t(id)]));
        continue;
      }
      flush_bytes();
      if (t == PieceType::control) continue;
      if (!out.empty()) at_start = false;  // bytes were written
      if (t == PieceType::unknown) {
        out += settings_.unk_surface;
      } else {
        std::string_view p = pieces_[std::size_t(id)];
        if (at_start && (settings_.add_dummy_prefix || settings_.remove_extra_whitespaces) &&
            p.substr(0, kSpace.size()) == kSpace)
          p.remove_prefix(kSpace.size());
        for (std::size_t at = 0; at < p.size();) {
          if (p.substr(at, kSpace.size()) == kSpace) {
            out += ' ';
            at += kSpace.size();
          } else {
            out += p[at++];
          }
        }
      }
      at_start = settings_.remove_extra_whitespaces && out.empty();
    }
    flush_bytes();
    return out;
  }

  /// The byte of a "<0xHH>" piece (upper-case hex), or -1.
  static int byte_of_piece(std::string_view p) {
    if (p.size() != 6 || p.substr(0, 3) != "<0x" || p[5] != '>') return -1;
    const auto hex = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1; };
    const int hi = hex(p[3]), lo = hex(p[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
  }

 private:
  static constexpr std::string_view kSpace = "\xE2\x96\x81";        // U+2581 ▁
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

  /// The length of the valid UTF-8 character at s[at], or 0.
  static std::size_t utf8_length(std::string_view s, std::size_t at = 0) {
    const auto [cp, n] = detail::next_code_point(s, at);
    return cp == 0xFFFFFFFFu ? 0 : n;
  }

  /// The longest user-defined symbol starting at `at`, or 0.
  std::size_t user_defined_at(std::string_view s, std::size_t at) const {
    std::size_t best = 0;
    for (const std::size_t n : user_defined_lengths_)
      if (n > best && n <= s.size() - at && user_defined_.count(std::string(s.substr(at, n)))) best = n;
    return best;
  }

  /// The normaliser's unit at `at`: a user-defined symbol, a character, or U+FFFD for one
  /// invalid byte; and the input bytes it used.
  std::pair<std::string_view, std::size_t> next_unit(std::string_view s, std::size_t at) const {
    if (const std::size_t n = user_defined_at(s, at)) return {s.substr(at, n), n};
    const std::size_t n = utf8_length(s, at);
    if (n == 0) return {kReplacement, 1};
    return {s.substr(at, n), n};
  }

  int control_id(const std::string& text) const {
    const auto it = reserved_by_text_.find(text);
    return it != reserved_by_text_.end() && types_[std::size_t(it->second)] == PieceType::control ? it->second : -1;
  }

  static int required(int id, const char* what, const std::string& piece) {
    if (id < 0)
      fail<state_error>("SentencePieceTokenizer::encode", "the model has no ", what, " control piece '", piece, "'");
    return id;
  }

  /// The id SentencePiece gives a final symbol: reserved pieces first, then ordinary ones, else <unk>.
  int symbol_id(std::string_view s) const {
    const int id = find(s);
    return id < 0 ? unk_id_ : id;
  }

  void encode_normalized(std::string_view text, std::vector<int>& ids) const {
    struct Symbol {
      std::size_t begin, size;
      int prev, next;
      bool frozen;
    };
    std::vector<Symbol> symbols;
    for (std::size_t at = 0; at < text.size();) {
      std::size_t n = user_defined_at(text, at);
      const bool frozen = n > 0;
      if (!frozen) {  // one character (the normalised text is valid UTF-8)
        n = utf8_length(text, at);
        if (n == 0) n = 1;
      }
      const int index = int(symbols.size());
      symbols.push_back({at, n, index - 1, at + n < text.size() ? index + 1 : -1, frozen});
      at += n;
    }
    struct Pair {
      float score;
      int left, right;
      std::size_t size;
    };
    const auto lower = [](const Pair& a, const Pair& b) { return a.score < b.score || (a.score == b.score && a.left > b.left); };
    std::priority_queue<Pair, std::vector<Pair>, decltype(lower)> agenda(lower);
    std::unordered_map<std::string, std::pair<std::string, std::string>> unused_parts;
    const auto consider = [&](int left, int right) {
      if (left < 0 || right < 0 || symbols[std::size_t(left)].frozen || symbols[std::size_t(right)].frozen) return;
      const Symbol& l = symbols[std::size_t(left)];
      const Symbol& r = symbols[std::size_t(right)];
      const std::string joined(text.substr(l.begin, l.size + r.size));
      const auto it = pieces_by_text_.find(joined);
      if (it == pieces_by_text_.end()) return;
      agenda.push({scores_[std::size_t(it->second)], left, right, joined.size()});
      if (types_[std::size_t(it->second)] == PieceType::unused)
        unused_parts[joined] = {std::string(text.substr(l.begin, l.size)), std::string(text.substr(r.begin, r.size))};
    };
    for (std::size_t i = 1; i < symbols.size(); ++i) consider(int(i) - 1, int(i));
    while (!agenda.empty()) {
      const Pair top = agenda.top();
      agenda.pop();
      Symbol& l = symbols[std::size_t(top.left)];
      Symbol& r = symbols[std::size_t(top.right)];
      if (l.size == 0 || r.size == 0 || l.size + r.size != top.size) continue;  // stale
      l.size += r.size;
      l.next = r.next;
      if (r.next >= 0) symbols[std::size_t(r.next)].prev = top.left;
      r.size = 0;
      consider(l.prev, top.left);
      consider(top.left, l.next);
    }
    bool previous_unknown = false;
    const auto emit = [&](std::string_view s, const auto& self) -> void {
      const int id = symbol_id(s);
      if (types_[std::size_t(id)] == PieceType::unused) {
        if (const auto it = unused_parts.find(std::string(s)); it != unused_parts.end()) {
          self(it->second.first, self);
          self(it->second.second, self);
          return;
        }
      }
      const bool unknown = id == unk_id_;
      if (unknown && settings_.byte_fallback) {
        for (const char c : s) ids.push_back(byte_ids_[static_cast<unsigned char>(c)]);
      } else if (!(unknown && previous_unknown)) {
        ids.push_back(id);
      }
      previous_unknown = unknown;
    };
    if (!symbols.empty())
      for (int i = 0; i >= 0; i = symbols[std::size_t(i)].next)
        emit(text.substr(symbols[std::size_t(i)].begin, symbols[std::size_t(i)].size), emit);
  }

  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::vector<PieceType> types_;
  SentencePieceSettings settings_;
  std::unordered_map<std::string, int> pieces_by_text_;    // normal, user-defined and unused pieces
  std::unordered_map<std::string, int> reserved_by_text_;  // unknown, control and byte pieces
  std::unordered_set<std::string> user_defined_;
  std::unordered_set<std::size_t> user_defined_lengths_;
  std::vector<int> byte_ids_;
  int unk_id_ = -1, bos_id_ = -1, eos_id_ = -1, pad_id_ = -1;
};

/// The most pieces a tokenizer.model may hold (Gemma's has 256,000).
inline constexpr std::size_t kMaxSentencePieces = std::size_t(1) << 22;

/// Parses a tokenizer.model held in memory (`source` names it in messages); `expected_vocab` > 0
/// also checks the number of pieces. Each piece takes at least 4 bytes of the file, so memory is
/// bounded by a small multiple of `size`.
inline SentencePieceTokenizer parse_sentencepiece(const char* data, std::size_t size,
                                                  const std::string& source = "<memory>", int expected_vocab = 0) {
  static constexpr const char* where = "read_sentencepiece";
  std::vector<std::string> pieces;
  std::vector<float> scores;
  std::vector<PieceType> types;
  SentencePieceSettings settings;
  int model_type = 1;  // SentencePiece's default: unigram
  bool charsmap = false, suffix = false, has_trainer = false, has_normalizer = false;
  std::string normalizer_name;
  detail::ProtoReader model(where, source, std::string_view(data, size), "SentencePiece model (tokenizer.model)");
  while (model.next()) {
    switch (model.field()) {
      case 1: {  // ModelProto.pieces
        if (pieces.size() >= kMaxSentencePieces)
          model.fail_here("more than ", kMaxSentencePieces, " pieces");
        detail::ProtoReader p = model.message("SentencePiece piece " + std::to_string(pieces.size()));
        std::string text;
        float score = 0;
        int type = 1;
        while (p.next()) {
          if (p.field() == 1) text = std::string(p.bytes());
          else if (p.field() == 2) score = p.fixed32_float();
          else if (p.field() == 3) type = p.int32();
          else p.skip();
        }
        if (!std::isfinite(score))
          fail<format_error>(where, "'", source, "' piece ", pieces.size(), " has a non-finite score");
        if (type < 1 || type > 6)
          fail<format_error>(where, "'", source, "' piece ", pieces.size(), " has type ", type, "; 1 to 6 was expected");
        pieces.push_back(std::move(text));
        scores.push_back(score);
        types.push_back(PieceType(type));
        break;
      }
      case 2: {  // TrainerSpec
        has_trainer = true;
        detail::ProtoReader t = model.message("SentencePiece trainer_spec");
        while (t.next()) {
          switch (t.field()) {
            case 3: model_type = t.int32(); break;
            case 24: suffix = t.boolean(); break;
            case 35: settings.byte_fallback = t.boolean(); break;
            case 44: settings.unk_surface = std::string(t.bytes()); break;
            case 46: settings.bos_piece = std::string(t.bytes()); break;
            case 47: settings.eos_piece = std::string(t.bytes()); break;
            case 48: settings.pad_piece = std::string(t.bytes()); break;
            default: t.skip();
          }
        }
        break;
      }
      case 3:    // NormalizerSpec
      case 5: {  // denormalizer_spec: only its character map matters
        const bool denormalizer = model.field() == 5;
        has_normalizer = has_normalizer || !denormalizer;
        detail::ProtoReader n = model.message(denormalizer ? "SentencePiece denormalizer_spec" : "SentencePiece normalizer_spec");
        while (n.next()) {
          if (n.field() == 1 && !denormalizer) normalizer_name = std::string(n.bytes());
          else if (n.field() == 2) charsmap = charsmap || !n.bytes().empty();
          else if (n.field() == 3 && !denormalizer) settings.add_dummy_prefix = n.boolean();
          else if (n.field() == 4 && !denormalizer) settings.remove_extra_whitespaces = n.boolean();
          else if (n.field() == 5 && !denormalizer) settings.escape_whitespaces = n.boolean();
          else n.skip();
        }
        break;
      }
      default: model.skip();
    }
  }
  if (pieces.empty()) fail<format_error>(where, "'", source, "' holds no pieces; is it a SentencePiece tokenizer.model?");
  // SentencePiece writes both specs after the pieces: a file cut short lacks them.
  for (const auto& [present, name] : {std::pair<bool, const char*>{has_trainer, "trainer_spec (field 2)"},
                                      {has_normalizer, "normalizer_spec (field 3)"}})
    if (!present)
      fail<format_error>(where, "'", source, "' has no ", name, ": it is truncated, or not a SentencePiece "
                         "tokenizer.model");
  if (model_type != 2)
    fail<format_error>(where, "'", source, "' has trainer_spec.model_type ", model_type,
                       model_type == 1 ? " (unigram)" : model_type == 3 ? " (word)" : model_type == 4 ? " (char)" : "",
                       "; only BPE models (2), as the Llama family uses, are read");
  if (charsmap)
    fail<format_error>(where, "'", source, "' has a precompiled character map (normalizer '", normalizer_name,
                       "'); only the identity normalizer, as the Llama family uses, is read");
  if (suffix)
    fail<format_error>(where, "'", source, "' has trainer_spec.treat_whitespace_as_suffix on, which is not read");
  if (expected_vocab > 0 && int(pieces.size()) != expected_vocab)
    fail<format_error>(where, "'", source, "' has ", pieces.size(), " pieces but the model's vocabulary has ",
                       expected_vocab);
  return SentencePieceTokenizer(std::move(pieces), std::move(scores), std::move(types), std::move(settings), source);
}

/// Reads a tokenizer.model file; `expected_vocab` > 0 also checks the number of pieces.
inline SentencePieceTokenizer read_sentencepiece(const std::string& path, int expected_vocab = 0) {
  const std::vector<char> bytes = detail::read_file_bytes("read_sentencepiece", path, 1, "a protobuf message",
                                                          std::int64_t(1) << 28, "too large for a tokenizer.model");
  return parse_sentencepiece(bytes.data(), bytes.size(), path, expected_vocab);
}

LMSHRINK_NAMESPACE_END
