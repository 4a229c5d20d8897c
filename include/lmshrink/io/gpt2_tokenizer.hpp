#pragma once
// GPT-2's byte-level BPE tokenizer, from its two files: encoder.json (token → id; Hugging Face
// calls it vocab.json) and vocab.bpe (the merges in rank order; Hugging Face's merges.txt).
//
//   auto tok = lmshrink::read_gpt2_tokenizer("encoder.json", "vocab.bpe");
//   std::vector<int> ids = tok.encode("Hello world");   // {15496, 995}
//   std::string text = tok.decode(ids);
//
// Encoding, as GPT-2's encoder.py:
//  1. Pre-tokenisation splits the text with the pattern
//       's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//     (alternatives tried in order at each position, leftmost-first). \p{L} and \p{N} are the
//     Unicode general categories L and N, \s the White_Space property (tables generated from
//     Unicode detail::kUnicodeVersion by tools/gen_unicode_categories.py).
//  2. Each piece's bytes are one symbol each; the adjacent pair whose merge has the lowest rank is
//     merged everywhere in the piece (left to right, not overlapping), until no pair has a merge.
// Text is UTF-8. A byte that does not start a valid UTF-8 sequence is taken as one character of
// the "other" class ([^\s\p{L}\p{N}]), so any byte string encodes and decode(encode(s)) == s.
// Tokens are stored as their bytes: the files' printable stand-ins for bytes (GPT-2's
// bytes_to_unicode table) are undone on reading.

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
#include "../detail/read_file.hpp"
#include "../detail/unicode_categories.hpp"
#include "../detail/utf8.hpp"
#pragma pop_macro("LMSHRINK_INSIDE_LIBRARY")
#include "../errors.hpp"

LMSHRINK_NAMESPACE_BEGIN

namespace detail {

/// GPT-2's bytes_to_unicode: byte b is written as the code point byte_char(b) in its files.
/// Printable Latin-1 bytes stand for themselves; the other 68 take 256, 257, … in byte order.
inline std::uint32_t gpt2_byte_char(unsigned char b) {
  const auto printable = [](int c) { return (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF); };
  if (printable(b)) return b;
  std::uint32_t n = 0;
  for (int c = 0; c < b; ++c)
    if (!printable(c)) ++n;
  return 256 + n;
}

/// The inverse table: code point (< 512) → byte, or -1.
inline const std::vector<int>& gpt2_char_bytes() {
  static const std::vector<int> table = [] {
    std::vector<int> t(512, -1);
    for (int b = 0; b < 256; ++b) t[gpt2_byte_char(static_cast<unsigned char>(b))] = b;
    return t;
  }();
  return table;
}

}  // namespace detail

/// The offset of the first byte of a string that does not start a valid UTF-8 sequence, or
/// std::string::npos: check text before it is encoded.
using detail::first_invalid_utf8;

class Gpt2Tokenizer {
 public:
  Gpt2Tokenizer() = default;

  /// `tokens[id]` is the bytes of token id; `merges` the merged pairs (as bytes) in rank order.
  /// format_error when a byte has no token, a token appears twice, or a merge's parts or result
  /// are not tokens.
  Gpt2Tokenizer(std::vector<std::string> tokens,
                const std::vector<std::pair<std::string, std::string>>& merges)
      : tokens_(std::move(tokens)) {
    static constexpr const char* where = "Gpt2Tokenizer";
    std::unordered_map<std::string, int> ids;
    ids.reserve(tokens_.size());
    for (std::size_t i = 0; i < tokens_.size(); ++i) {
      if (tokens_[i].empty()) detail::fail<format_error>(where, "token ", i, " is empty");
      if (!ids.emplace(tokens_[i], int(i)).second)
        detail::fail<format_error>(where, "tokens ", ids[tokens_[i]], " and ", i, " are the same bytes");
    }
    for (int b = 0; b < 256; ++b) {
      const auto it = ids.find(std::string(1, char(b)));
      if (it == ids.end())
        detail::fail<format_error>(where, "byte ", b, " has no token; a byte-level vocabulary has "
                                   "all 256");
      byte_token_[std::size_t(b)] = it->second;
    }
    merges_.reserve(merges.size());
    for (std::size_t r = 0; r < merges.size(); ++r) {
      const auto a = ids.find(merges[r].first), b = ids.find(merges[r].second),
                 ab = ids.find(merges[r].first + merges[r].second);
      if (a == ids.end() || b == ids.end() || ab == ids.end())
        detail::fail<format_error>(where, "merge ", r + 1, " joins parts that are not both tokens "
                                   "or makes a piece that is not a token");
      merges_.emplace(pair_key(a->second, b->second), Merge{int(r), ab->second});  // first rank wins
    }
    const auto eot = ids.find("<|endoftext|>");
    end_of_text_ = eot == ids.end() ? -1 : eot->second;
    ids_ = std::move(ids);
  }

  int vocab_size() const { return int(tokens_.size()); }
  std::size_t merge_count() const { return merges_.size(); }
  /// The id of "<|endoftext|>" (50256 in GPT-2), or -1 when the vocabulary has none.
  int end_of_text() const { return end_of_text_; }
  const std::string& token_bytes(int id) const {
    check_id("Gpt2Tokenizer::token_bytes", id);
    return tokens_[std::size_t(id)];
  }

  /// The pre-tokenisation pieces of `text` (views into it); they concatenate to `text`.
  static std::vector<std::string_view> pre_tokenize(std::string_view text) {
    enum Class : unsigned char { kLetter, kNumber, kSpace, kOther };
    struct Unit {
      std::size_t begin, size;
      std::uint32_t cp;
      Class cls;
    };
    std::vector<Unit> u;
    for (std::size_t i = 0; i < text.size();) {
      const auto [cp, n] = detail::next_code_point(text, i);
      Class c = kOther;
      if (cp != 0xFFFFFFFFu)
        c = detail::is_letter(cp) ? kLetter : detail::is_number(cp) ? kNumber
                                            : detail::is_white_space(cp) ? kSpace : kOther;
      u.push_back({i, n, cp, c});
      i += n;
    }
    std::vector<std::string_view> pieces;
    const std::size_t n = u.size();
    const auto emit = [&](std::size_t from, std::size_t to) {
      pieces.push_back(text.substr(u[from].begin, u[to - 1].begin + u[to - 1].size - u[from].begin));
    };
    const auto is = [&](std::size_t k, std::uint32_t cp) { return k < n && u[k].cp == cp; };
    for (std::size_t i = 0; i < n;) {
      // 's 't 're 've 'm 'll 'd
      if (u[i].cp == '\'') {
        std::size_t len = 0;
        if (is(i + 1, 's') || is(i + 1, 't') || is(i + 1, 'm') || is(i + 1, 'd')) len = 2;
        else if ((is(i + 1, 'r') && is(i + 2, 'e')) || (is(i + 1, 'v') && is(i + 2, 'e')) ||
                 (is(i + 1, 'l') && is(i + 2, 'l')))
          len = 3;
        if (len) {
          emit(i, i + len);
          i += len;
          continue;
        }
      }
      // ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+', in that order
      bool matched = false;
      for (Class c : {kLetter, kNumber, kOther}) {
        std::size_t j = i;
        if (u[j].cp == ' ' && j + 1 < n && u[j + 1].cls == c) ++j;
        if (u[j].cls != c) continue;
        while (j < n && u[j].cls == c) ++j;
        emit(i, j);
        i = j;
        matched = true;
        break;
      }
      if (matched) continue;
      // '\s+(?!\S)', then '\s+': here u[i] is white space
      std::size_t k = i;
      while (k < n && u[k].cls == kSpace) ++k;
      if (k < n && k - i >= 2) --k;  // leave the last space to prefix the next piece
      emit(i, k);
      i = k;
    }
    return pieces;
  }

  /// The ids of `text`; never fails (see the header comment for bytes that are not UTF-8).
  std::vector<int> encode(std::string_view text) const {
    std::vector<int> ids, word;
    WordMerger merger;
    for (std::string_view piece : pre_tokenize(text)) encode_piece(piece, ids, word, merger);
    return ids;
  }

  /// Appends the ids of one pre-tokenised piece (its bytes merged by rank): the BPE step alone,
  /// for tokenizers that split text their own way (lmshrink/io/hf_tokenizer.hpp).
  void encode_piece(std::string_view piece, std::vector<int>& ids) const {
    std::vector<int> word;
    WordMerger merger;
    encode_piece(piece, ids, word, merger);
  }

  /// The id of the token with these bytes, or -1.
  int find(std::string_view bytes) const {
    const auto it = ids_.find(std::string(bytes));
    return it == ids_.end() ? -1 : it->second;
  }

  /// Pieces longer than this (in bytes) are merged by WordMerger, shorter ones by the plain loop.
  static constexpr std::size_t kShortPiece = 16;

  /// The bytes of the tokens, concatenated; value_error for an id outside [0, vocab_size).
  std::string decode(const std::vector<int>& ids) const {
    std::string text;
    for (int id : ids) {
      check_id("Gpt2Tokenizer::decode", id);
      text += tokens_[std::size_t(id)];
    }
    return text;
  }

 private:
  struct Merge {
    int rank, token;
  };
  class WordMerger;

  void encode_piece(std::string_view piece, std::vector<int>& ids, std::vector<int>& word, WordMerger& merger) const {
    if (tokens_.empty())
      detail::fail<state_error>("Gpt2Tokenizer::encode", "the tokenizer is empty; read one first");
    if (piece.size() > kShortPiece) {
      merger.reset(piece, byte_token_);
      merger.run(merges_);
      merger.append_tokens(ids);
      return;
    }
    // A short piece (nearly all of them): encoder.py's loop as it is, faster at this size.
    word.clear();
    for (char b : piece) word.push_back(byte_token_[static_cast<unsigned char>(b)]);
    for (;;) {
      int best_rank = -1, merged = -1;
      std::uint64_t best_pair = 0;
      for (std::size_t i = 0; i + 1 < word.size(); ++i) {
        const auto it = merges_.find(pair_key(word[i], word[i + 1]));
        if (it != merges_.end() && (best_rank < 0 || it->second.rank < best_rank)) {
          best_rank = it->second.rank;
          merged = it->second.token;
          best_pair = pair_key(word[i], word[i + 1]);
        }
      }
      if (best_rank < 0) break;
      std::size_t out = 0;
      for (std::size_t i = 0; i < word.size(); ++out) {
        if (i + 1 < word.size() && pair_key(word[i], word[i + 1]) == best_pair) {
          word[out] = merged;
          i += 2;
        } else {
          word[out] = word[i++];
        }
      }
      word.resize(out);
    }
    ids.insert(ids.end(), word.begin(), word.end());
  }
  static std::uint64_t pair_key(int a, int b) {
    return (std::uint64_t(std::uint32_t(a)) << 32) | std::uint32_t(b);
  }

  /// The merges of one piece in O(n log n): symbols in a linked list, candidate pairs in a min-heap
  /// by (rank, position). Each round takes every occurrence of the lowest-ranked pair and merges
  /// them left to right without overlap, and only then adds the pairs the merges made: exactly
  /// encoder.py's loop (find the lowest-ranked pair, merge it everywhere, repeat), whose cost is
  /// quadratic in the length of a piece.
  class WordMerger {
   public:
    void reset(std::string_view piece, const int (&byte_token)[256]) {
      const std::size_t n = piece.size();
      token_.resize(n);
      next_.resize(n);
      prev_.resize(n);
      for (std::size_t i = 0; i < n; ++i) {
        token_[i] = byte_token[static_cast<unsigned char>(piece[i])];
        next_[i] = i + 1 < n ? int(i + 1) : -1;
        prev_[i] = int(i) - 1;
      }
      heap_.clear();
      head_ = n > 0 ? 0 : -1;
    }

    void run(const std::unordered_map<std::uint64_t, Merge>& merges) {
      for (int i = head_; i >= 0 && next_[std::size_t(i)] >= 0; i = next_[std::size_t(i)]) push(merges, i);
      std::vector<int> round, merged;
      while (!heap_.empty()) {
        const int rank = heap_.front().rank;
        round.clear();
        while (!heap_.empty() && heap_.front().rank == rank) {
          std::pop_heap(heap_.begin(), heap_.end(), Later{});
          if (valid(heap_.back())) round.push_back(heap_.back().left);
          heap_.pop_back();
        }
        if (round.empty()) continue;
        std::sort(round.begin(), round.end());  // node index order is text order
        merged.clear();
        // One rank is one pair (a, b): every candidate of the round is an occurrence of it.
        const int a = token_[std::size_t(round[0])], b = token_[std::size_t(next_[std::size_t(round[0])])];
        const int ab = merges.at(pair_key(a, b)).token;
        for (int i : round) {
          const int j = next_[std::size_t(i)];
          // Still the pair: an earlier merge of this round may have taken one of its symbols.
          if (!alive(i) || j < 0 || token_[std::size_t(i)] != a || token_[std::size_t(j)] != b) continue;
          token_[std::size_t(i)] = ab;
          const int k = next_[std::size_t(j)];
          next_[std::size_t(i)] = k;
          if (k >= 0) prev_[std::size_t(k)] = i;
          token_[std::size_t(j)] = -1;  // removed
          merged.push_back(i);
        }
        for (int i : merged) {
          if (!alive(i)) continue;
          if (prev_[std::size_t(i)] >= 0) push(merges, prev_[std::size_t(i)]);
          if (next_[std::size_t(i)] >= 0) push(merges, i);
        }
      }
    }

    void append_tokens(std::vector<int>& out) const {
      for (int i = head_; i >= 0; i = next_[std::size_t(i)]) out.push_back(token_[std::size_t(i)]);
    }

   private:
    struct Candidate {
      int rank, left, a, b;  // the pair (a, b) starting at node `left`
    };
    struct Later {  // std heaps are max-heaps: the lowest rank, then the leftmost, on top
      bool operator()(const Candidate& x, const Candidate& y) const {
        return x.rank != y.rank ? x.rank > y.rank : x.left > y.left;
      }
    };
    bool alive(int i) const { return token_[std::size_t(i)] >= 0; }
    bool valid(const Candidate& c) const {
      if (!alive(c.left) || token_[std::size_t(c.left)] != c.a) return false;
      const int j = next_[std::size_t(c.left)];
      return j >= 0 && token_[std::size_t(j)] == c.b;
    }
    void push(const std::unordered_map<std::uint64_t, Merge>& merges, int i) {
      const int a = token_[std::size_t(i)], b = token_[std::size_t(next_[std::size_t(i)])];
      const auto it = merges.find(pair_key(a, b));
      if (it == merges.end()) return;
      heap_.push_back({it->second.rank, i, a, b});
      std::push_heap(heap_.begin(), heap_.end(), Later{});
    }

    std::vector<int> token_, next_, prev_;
    std::vector<Candidate> heap_;
    int head_ = -1;
  };
  void check_id(const char* where, int id) const {
    if (id < 0 || id >= vocab_size())
      detail::fail<value_error>(where, "token id ", id, " is outside [0, ", vocab_size(), ")");
  }

  std::vector<std::string> tokens_;
  std::unordered_map<std::string, int> ids_;
  std::unordered_map<std::uint64_t, Merge> merges_;
  int byte_token_[256] = {};
  int end_of_text_ = -1;
};

namespace detail {

/// A token as written in GPT-2's files (each character one of bytes_to_unicode's) → its bytes.
inline std::string gpt2_file_token_bytes(const char* where, const std::string& source,
                                         std::string_view token, const char* what) {
  const std::vector<int>& table = gpt2_char_bytes();
  std::string bytes;
  for (std::size_t i = 0; i < token.size();) {
    const auto [cp, n] = next_code_point(token, i);
    if (cp >= table.size() || table[cp] < 0)
      fail<format_error>(where, "'", source, "': ", what, " '", std::string(token),
                         "' has a character that is not one of GPT-2's 256 byte characters");
    bytes += char(table[cp]);
    i += n;
  }
  return bytes;
}

}  // namespace detail

/// Parses the contents of encoder.json (`vocab_json`) and vocab.bpe (`merges_text`); the names
/// are for messages. format_error when either is not in GPT-2's format.
inline Gpt2Tokenizer parse_gpt2_tokenizer(std::string_view vocab_json, const std::string& vocab_name,
                                          std::string_view merges_text,
                                          const std::string& merges_name) {
  static constexpr const char* where = "parse_gpt2_tokenizer";
  constexpr std::int64_t kMaxTokens = 1 << 21;
  const detail::JsonValue vocab =
      detail::parse_json(where, vocab_name, vocab_json, {2, kMaxTokens + 1});
  if (vocab.kind != detail::JsonValue::Kind::object)
    detail::fail<format_error>(where, "'", vocab_name, "' is ", vocab.kind_name(), "; an object "
                               "of token → id was expected");
  const std::size_t n = vocab.members.size();
  std::vector<std::string> tokens(n);
  std::vector<bool> seen(n, false);
  for (const auto& [token, id] : vocab.members) {
    if (!id.is_integer || id.integer < 0 || std::uint64_t(id.integer) >= n)
      detail::fail<format_error>(where, "'", vocab_name, "': token '", token, "' has the id ",
                                 id.kind == detail::JsonValue::Kind::number ? id.text : id.kind_name(),
                                 "; an integer in [0, ", n, ") was expected");
    if (seen[std::size_t(id.integer)])
      detail::fail<format_error>(where, "'", vocab_name, "': the id ", id.integer,
                                 " is given to two tokens");
    seen[std::size_t(id.integer)] = true;
    tokens[std::size_t(id.integer)] = detail::gpt2_file_token_bytes(where, vocab_name, token, "token");
  }
  std::vector<std::pair<std::string, std::string>> merges;
  std::size_t line_number = 0;
  for (std::size_t pos = 0; pos < merges_text.size();) {
    std::size_t eol = merges_text.find('\n', pos);
    if (eol == std::string_view::npos) eol = merges_text.size();
    std::string_view line = merges_text.substr(pos, eol - pos);
    pos = eol + 1;
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || (line_number == 1 && line.substr(0, 8) == "#version")) continue;
    const std::size_t space = line.find(' ');
    if (space == 0 || space == std::string_view::npos || space + 1 == line.size() ||
        line.find(' ', space + 1) != std::string_view::npos)
      detail::fail<format_error>(where, "'", merges_name, "' line ", line_number, " is '",
                                 std::string(line.substr(0, 80)), "'; two tokens separated by one "
                                 "space were expected");
    if (merges.size() >= n)  // checked before storing: a huge file is refused as it is parsed
      detail::fail<format_error>(where, "'", merges_name, "' has more merges than '", vocab_name, "' has tokens (",
                                 n, "); every merge makes a token");
    merges.emplace_back(detail::gpt2_file_token_bytes(where, merges_name, line.substr(0, space), "merge part"),
                        detail::gpt2_file_token_bytes(where, merges_name, line.substr(space + 1), "merge part"));
  }
  try {
    return Gpt2Tokenizer(std::move(tokens), merges);
  } catch (const format_error& e) {
    detail::fail<format_error>(where, "'", vocab_name, "' and '", merges_name, "': ", e.what());
  }
}

/// Reads encoder.json (or vocab.json) and vocab.bpe (or merges.txt).
inline Gpt2Tokenizer read_gpt2_tokenizer(const std::string& vocab_path, const std::string& merges_path) {
  static constexpr const char* where = "read_gpt2_tokenizer";
  constexpr std::int64_t kMaxBytes = std::int64_t(256) << 20;
  const std::vector<char> vocab =
      detail::read_file_bytes(where, vocab_path, 2, "a JSON object", kMaxBytes, "more than the 256 MiB a vocabulary may have");
  const std::vector<char> merges =
      detail::read_file_bytes(where, merges_path, 0, "", kMaxBytes, "more than the 256 MiB a merges file may have");
  return parse_gpt2_tokenizer(std::string_view(vocab.data(), vocab.size()), vocab_path,
                              std::string_view(merges.data(), merges.size()), merges_path);
}

LMSHRINK_NAMESPACE_END
