#pragma once
// The llama2.c tokenizer format (tok*.bin), read and written, and its BPE encoder and decoder
// with llama2.c's run.c semantics.
//
// File, little-endian: int32 max_token_length, then one record per token: float32 score,
// int32 length, `length` bytes (no terminator). The vocabulary size is the number of records.
//
//   auto tok = lmshrink::read_tokenizer("tok512.bin");
//   std::vector<int> ids = tok.encode("Once upon a time", /*bos=*/true, /*eos=*/false);
//   std::string text = tok.decode(ids);
//
// Encoding: [BOS], then the " " dummy prefix when the text is not empty, then one token per
// UTF-8 code point when the code point is a piece, else one byte token (id = byte + 3) per byte;
// then repeatedly merge the adjacent pair whose concatenation is the piece with the highest
// score, the leftmost pair on ties.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "../config.hpp"
#pragma push_macro("LMSHRINK_INSIDE_LIBRARY")
#define LMSHRINK_INSIDE_LIBRARY
#include "../detail/atomic_file.hpp"
#include "../detail/read_file.hpp"
#pragma pop_macro("LMSHRINK_INSIDE_LIBRARY")
#include "../errors.hpp"

LMSHRINK_NAMESPACE_BEGIN

class Tokenizer {
 public:
  static constexpr int kUnk = 0, kBos = 1, kEos = 2, kFirstByte = 3;

  Tokenizer() = default;

  /// Pieces and scores in id order; max_token_length is the longest piece (computed when 0).
  Tokenizer(std::vector<std::string> pieces, std::vector<float> scores, int max_token_length = 0)
      : pieces_(std::move(pieces)), scores_(std::move(scores)) {
    static constexpr const char* where = "Tokenizer";
    if (pieces_.size() != scores_.size())
      detail::fail<shape_error>(where, pieces_.size(), " pieces but ", scores_.size(), " scores");
    if (pieces_.size() < std::size_t(kFirstByte + 256))
      detail::fail<format_error>(where, "a vocabulary of at least ", kFirstByte + 256,
                                 " tokens (<unk>, BOS, EOS and 256 byte tokens) was expected, got ",
                                 pieces_.size());
    std::size_t longest = 0;
    for (std::size_t i = 0; i < pieces_.size(); ++i) {
      longest = std::max(longest, pieces_[i].size());
      if (!std::isfinite(scores_[i]))
        detail::fail<format_error>(where, "token ", i, " has a non-finite score");
      ids_.emplace(pieces_[i], int(i));  // the first id wins for a repeated piece
    }
    max_token_length_ = max_token_length > 0 ? max_token_length : int(longest);
    if (longest > std::size_t(max_token_length_))
      detail::fail<format_error>(where, "a piece of ", longest,
                                 " bytes is longer than max_token_length ", max_token_length_);
  }

  int vocab_size() const { return int(pieces_.size()); }
  int max_token_length() const { return max_token_length_; }
  const std::string& piece(int id) const { return pieces_.at(std::size_t(id)); }
  float score(int id) const { return scores_.at(std::size_t(id)); }
  /// The id of a piece, or -1.
  int find(std::string_view piece) const {
    const auto it = ids_.find(std::string(piece));
    return it == ids_.end() ? -1 : it->second;
  }

  std::vector<int> encode(std::string_view text, bool bos = true, bool eos = false) const {
    std::vector<int> tokens;
    if (bos) tokens.push_back(kBos);
    if (!text.empty()) {
      const int space = find(" ");
      if (space < 0)
        detail::fail<format_error>("Tokenizer::encode", "the vocabulary has no \" \" piece for "
                                                        "the dummy prefix");
      tokens.push_back(space);
    }
    // One token per code point, or its bytes.
    for (std::size_t i = 0; i < text.size();) {
      std::size_t len = 1;
      while (i + len < text.size() && len < 4 &&
             (static_cast<unsigned char>(text[i + len]) & 0xC0) == 0x80)
        ++len;
      const int id = find(text.substr(i, len));
      if (id >= 0) {
        tokens.push_back(id);
      } else {
        for (std::size_t b = 0; b < len; ++b)
          tokens.push_back(kFirstByte + static_cast<unsigned char>(text[i + b]));
      }
      i += len;
    }
    // Merges over the whole sequence (BOS and the prefix included, as run.c does); the id of
    // each adjacent pair's concatenation is kept and refreshed around each merge.
    std::vector<int> t = std::move(tokens);
    tokens.clear();
    std::vector<int> pair(t.size() > 0 ? t.size() - 1 : 0);
    const auto pair_id = [&](std::size_t i) { return find(pieces_[std::size_t(t[i])] + pieces_[std::size_t(t[i + 1])]); };
    for (std::size_t i = 0; i < pair.size(); ++i) pair[i] = pair_id(i);
    while (true) {
      int best = -1;
      float best_score = -1e10f;
      for (std::size_t i = 0; i < pair.size(); ++i)
        if (pair[i] >= 0 && scores_[std::size_t(pair[i])] > best_score) {
          best_score = scores_[std::size_t(pair[i])];
          best = int(i);
        }
      if (best < 0) break;
      const std::size_t b = std::size_t(best);
      t[b] = pair[b];
      t.erase(t.begin() + std::ptrdiff_t(b) + 1);
      pair.erase(pair.begin() + std::ptrdiff_t(b));
      if (b < pair.size()) pair[b] = pair_id(b);
      if (b > 0) pair[b - 1] = pair_id(b - 1);
    }
    tokens.insert(tokens.end(), t.begin(), t.end());
    if (eos) tokens.push_back(kEos);
    return tokens;
  }

  /// The text of `token` following `prev` (run.c's decode): a leading space is dropped after
  /// BOS, and byte tokens "<0xHH>" become their byte.
  std::string decode(int prev, int token) const {
    if (token < 0 || token >= vocab_size())
      detail::fail<value_error>("Tokenizer::decode", "token ", token, " is outside [0, ",
                                vocab_size(), ")");
    std::string_view p = pieces_[std::size_t(token)];
    if (prev == kBos && !p.empty() && p[0] == ' ') p.remove_prefix(1);
    unsigned int byte = 0;
    if (p.size() == 6 && std::sscanf(std::string(p).c_str(), "<0x%02X>", &byte) == 1)
      return std::string(1, char(byte));
    return std::string(p);
  }

  /// The text of a sequence: each token decoded after its predecessor; a leading BOS is not
  /// printed (run.c prints only generated tokens).
  std::string decode(const std::vector<int>& ids) const {
    std::string out;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (i == 0 && ids[0] == kBos) continue;
      out += decode(i == 0 ? -1 : ids[i - 1], ids[i]);
    }
    return out;
  }

  const std::vector<std::string>& pieces() const { return pieces_; }
  const std::vector<float>& scores() const { return scores_; }

 private:
  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::unordered_map<std::string, int> ids_;
  int max_token_length_ = 0;
};

/// The most tokens a tokenizer file may hold: 2^20, the largest vocab_size a llama2.c checkpoint
/// header can give.
inline constexpr std::size_t kMaxTokenizerVocab = std::size_t(1) << 20;

/// Parses a tok*.bin file held in memory (`source` names it in messages); `expected_vocab` > 0
/// also checks the number of tokens. Every record is at least 8 bytes, so the vocabulary's
/// memory is bounded by a small multiple of `size`.
inline Tokenizer parse_tokenizer(const char* data, std::size_t size, const std::string& source = "<memory>",
                                 int expected_vocab = 0) {
  static constexpr const char* where = "read_tokenizer";
  const std::string& path = source;
  if (size > (std::size_t(1) << 32))
    detail::fail<format_error>(where, "'", path, "' is ", size, " bytes, too large for a tokenizer");
  std::size_t at = 0;
  const auto take = [&](void* dst, std::size_t n, const char* what) {
    if (size - at < n)
      detail::fail<format_error>(where, "'", path, "' is truncated in ", what, " at byte ", at,
                                 ": ", n, " bytes were expected, ", size - at, " remain");
    if (n > 0) std::memcpy(dst, data + at, n);
    at += n;
  };
  std::int32_t max_len = 0;
  take(&max_len, 4, "the header");
  if (max_len <= 0 || max_len > 1024)
    detail::fail<format_error>(where, "'", path, "' has max_token_length ", max_len,
                               "; a value in [1, 1024] was expected (is this a tokenizer file?)");
  std::vector<std::string> pieces;
  std::vector<float> scores;
  while (at < size) {
    if (pieces.size() >= kMaxTokenizerVocab)
      detail::fail<format_error>(where, "'", path, "' holds more than ", kMaxTokenizerVocab,
                                 " tokens (the largest vocabulary a llama2.c header can name)");
    float score = 0;
    std::int32_t len = 0;
    take(&score, 4, "a token's score");
    take(&len, 4, "a token's length");
    if (len < 0 || len > max_len)
      detail::fail<format_error>(where, "'", path, "' token ", pieces.size(), " has length ", len,
                                 " but max_token_length is ", max_len);
    std::string piece(std::size_t(len), '\0');
    take(piece.data(), std::size_t(len), "a token's bytes");
    pieces.push_back(std::move(piece));
    scores.push_back(score);
  }
  if (expected_vocab > 0 && int(pieces.size()) != expected_vocab)
    detail::fail<format_error>(where, "'", path, "' has ", pieces.size(), " tokens but the model's "
                               "vocabulary has ", expected_vocab);
  return Tokenizer(std::move(pieces), std::move(scores), max_len);
}

/// Reads a tok*.bin file; `expected_vocab` > 0 also checks the number of tokens.
inline Tokenizer read_tokenizer(const std::string& path, int expected_vocab = 0) {
  const std::vector<char> bytes = detail::read_file_bytes(
      "read_tokenizer", path, 4, "a 4-byte header", std::int64_t(1) << 32, "too large for a tokenizer");
  return parse_tokenizer(bytes.data(), bytes.size(), path, expected_vocab);
}

/// Writes a tok*.bin file atomically (a temporary file renamed into place).
inline void write_tokenizer(const Tokenizer& tok, const std::string& path) {
  detail::write_file_atomically("write_tokenizer", path, [&](std::FILE* f) {
    const std::int32_t max_len = tok.max_token_length();
    if (std::fwrite(&max_len, 4, 1, f) != 1) return false;
    for (int i = 0; i < tok.vocab_size(); ++i) {
      const float score = tok.score(i);
      const auto len = std::int32_t(tok.piece(i).size());
      if (std::fwrite(&score, 4, 1, f) != 1 || std::fwrite(&len, 4, 1, f) != 1) return false;
      if (len > 0 && std::fwrite(tok.piece(i).data(), 1, std::size_t(len), f) != std::size_t(len))
        return false;
    }
    return true;
  });
}

LMSHRINK_NAMESPACE_END
