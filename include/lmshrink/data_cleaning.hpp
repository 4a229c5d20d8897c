#pragma once
// Pretraining-data cleaning: a streaming near-duplicate filter and a markup filter.
//
//   lmshrink::DocumentFilter filter;
//   for (const std::string& doc : corpus)
//     if (filter.add(doc) == lmshrink::Verdict::keep) out.push_back(doc);
//   filter.counts();   // seen, kept, duplicates, markup, empty
//
// Near-duplicate key: (length after removing punctuation, md5 of the first 4 and last 4 words).
// Punctuation is ASCII punctuation; words are the runs of non-whitespace left after removing it;
// the length counts the Unicode code points of those words (whitespace excluded). Two documents
// that differ only in punctuation, spacing, or in middle words of equal total length share a
// key; the first one seen is kept.
//
// Markup: a document is dropped when it contains an HTML tag (`<name ...>`, `</name>`,
// `<name/>`), a comment `<!--` or a doctype `<!DOCTYPE`; comparisons such as `a < b` are not tags.

#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "config.hpp"

LMSHRINK_NAMESPACE_BEGIN

// ---- md5 (RFC 1321) --------------------------------------------------------------------------

/// Incremental MD5. Used only as a duplicate key, never for security.
class Md5 {
 public:
  using Digest = std::array<std::uint8_t, 16>;

  Md5() = default;

  void update(const void* data, std::size_t size) {
    const auto* p = static_cast<const std::uint8_t*>(data);
    total_bytes_ += size;
    if (buffered_ > 0) {
      const std::size_t take = std::min(size, std::size_t(64) - buffered_);
      std::memcpy(buffer_ + buffered_, p, take);
      buffered_ += take;
      p += take;
      size -= take;
      if (buffered_ < 64) return;
      block(buffer_);
      buffered_ = 0;
    }
    for (; size >= 64; p += 64, size -= 64) block(p);
    std::memcpy(buffer_, p, size);
    buffered_ = size;
  }
  void update(std::string_view s) { update(s.data(), s.size()); }

  /// The digest of everything given so far; the object is spent afterwards.
  Digest finish() {
    const std::uint64_t bits = total_bytes_ * 8;
    const std::uint8_t one = 0x80, zero = 0;
    update(&one, 1);
    while (buffered_ != 56) update(&zero, 1);
    std::uint8_t length[8];
    for (int i = 0; i < 8; ++i) length[i] = std::uint8_t(bits >> (8 * i));
    update(length, 8);
    Digest d{};
    const std::uint32_t words[4] = {a_, b_, c_, d_};
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j) d[std::size_t(4 * i + j)] = std::uint8_t(words[i] >> (8 * j));
    return d;
  }

  static Digest digest(std::string_view s) {
    Md5 m;
    m.update(s);
    return m.finish();
  }

  static std::string hex(const Digest& d) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string s;
    for (std::uint8_t byte : d) {
      s += digits[byte >> 4];
      s += digits[byte & 15];
    }
    return s;
  }

 private:
  static std::uint32_t rotl(std::uint32_t x, int c) { return (x << c) | (x >> (32 - c)); }

  void block(const std::uint8_t* p) {
    static constexpr std::uint32_t K[64] = {
        0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613,
        0xfd469501, 0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193,
        0xa679438e, 0x49b40821, 0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d,
        0x02441453, 0xd8a1e681, 0xe7d3fbc8, 0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed,
        0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a, 0xfffa3942, 0x8771f681, 0x6d9d6122,
        0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70, 0x289b7ec6, 0xeaa127fa,
        0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665, 0xf4292244,
        0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
        0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb,
        0xeb86d391};
    static constexpr int R[64] = {7,  12, 17, 22, 7,  12, 17, 22, 7,  12, 17, 22, 7,  12, 17, 22,
                                  5,  9,  14, 20, 5,  9,  14, 20, 5,  9,  14, 20, 5,  9,  14, 20,
                                  4,  11, 16, 23, 4,  11, 16, 23, 4,  11, 16, 23, 4,  11, 16, 23,
                                  6,  10, 15, 21, 6,  10, 15, 21, 6,  10, 15, 21, 6,  10, 15, 21};
    std::uint32_t m[16];
    for (int i = 0; i < 16; ++i)
      m[i] = std::uint32_t(p[4 * i]) | std::uint32_t(p[4 * i + 1]) << 8 |
             std::uint32_t(p[4 * i + 2]) << 16 | std::uint32_t(p[4 * i + 3]) << 24;
    std::uint32_t a = a_, b = b_, c = c_, d = d_;
    for (int i = 0; i < 64; ++i) {
      std::uint32_t f;
      int g;
      if (i < 16) {
        f = (b & c) | (~b & d);
        g = i;
      } else if (i < 32) {
        f = (d & b) | (~d & c);
        g = (5 * i + 1) % 16;
      } else if (i < 48) {
        f = b ^ c ^ d;
        g = (3 * i + 5) % 16;
      } else {
        f = c ^ (b | ~d);
        g = (7 * i) % 16;
      }
      const std::uint32_t next = b + rotl(a + f + K[i] + m[g], R[i]);
      a = d;
      d = c;
      c = b;
      b = next;
    }
    a_ += a;
    b_ += b;
    c_ += c;
    d_ += d;
  }

  std::uint32_t a_ = 0x67452301, b_ = 0xefcdab89, c_ = 0x98badcfe, d_ = 0x10325476;
  std::uint8_t buffer_[64] = {};
  std::size_t buffered_ = 0;
  std::uint64_t total_bytes_ = 0;
};

// ---- keys and filters ----------------------------------------------------------------------

/// The near-duplicate key of a document.
struct DuplicateKey {
  std::uint64_t length = 0;  // code points of the words, punctuation and whitespace removed
  Md5::Digest digest{};      // md5 of the first 4 and last 4 words joined by single spaces
  bool operator==(const DuplicateKey& o) const {
    return length == o.length && digest == o.digest;
  }
};

namespace detail {

inline bool is_ascii_punct(unsigned char c) {
  return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
         (c >= 123 && c <= 126);
}
inline bool is_ascii_space(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

struct DuplicateKeyHash {
  std::size_t operator()(const DuplicateKey& k) const {
    std::uint64_t h = k.length * 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 8; ++i) h ^= std::uint64_t(k.digest[std::size_t(i)]) << (8 * i);
    return std::size_t(h ^ (h >> 29));
  }
};

}  // namespace detail

/// Words of `doc` with ASCII punctuation removed (runs of non-whitespace; empty runs dropped).
inline std::vector<std::string> words_without_punctuation(std::string_view doc) {
  std::vector<std::string> words;
  std::string current;
  for (char ch : doc) {
    const auto c = static_cast<unsigned char>(ch);
    if (detail::is_ascii_space(c)) {
      if (!current.empty()) words.push_back(std::move(current));
      current.clear();
    } else if (!detail::is_ascii_punct(c)) {
      current += ch;
    }
  }
  if (!current.empty()) words.push_back(std::move(current));
  return words;
}

inline DuplicateKey duplicate_key(std::string_view doc) {
  const auto words = words_without_punctuation(doc);
  DuplicateKey key;
  for (const auto& w : words)
    for (char ch : w)
      key.length += (static_cast<unsigned char>(ch) & 0xC0) != 0x80;  // UTF-8 lead bytes
  std::string ends;
  const std::size_t n = words.size();
  for (std::size_t i = 0; i < n; ++i) {
    if (i >= 4 && i + 4 < n) continue;  // the first 4 and the last 4 (all when n ≤ 8)
    if (!ends.empty()) ends += ' ';
    ends += words[i];
  }
  key.digest = Md5::digest(ends);
  return key;
}

/// True when `doc` contains an HTML tag, comment or doctype.
inline bool has_markup(std::string_view doc) {
  const auto alpha = [](unsigned char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; };
  for (std::size_t i = 0; i + 1 < doc.size(); ++i) {
    if (doc[i] != '<') continue;
    std::size_t j = i + 1;
    if (doc[j] == '!') {
      if (doc.substr(j, 3) == "!--") return true;
      std::string head(doc.substr(j + 1, 7));
      for (char& ch : head) ch = static_cast<char>(ch | 0x20);
      if (head == "doctype") return true;
      continue;
    }
    if (doc[j] == '/') ++j;
    if (j >= doc.size() || !alpha(static_cast<unsigned char>(doc[j]))) continue;
    while (j < doc.size() && (alpha(static_cast<unsigned char>(doc[j])) ||
                              (doc[j] >= '0' && doc[j] <= '9') || doc[j] == '-'))
      ++j;
    if (j >= doc.size()) return false;
    const char next = doc[j];
    if (next == '>') return true;
    if (next == '/' && j + 1 < doc.size() && doc[j + 1] == '>') return true;
    if (detail::is_ascii_space(static_cast<unsigned char>(next))) {
      // An attribute list must close with '>' before the next '<' or line end.
      for (std::size_t k = j; k < doc.size() && doc[k] != '<' && doc[k] != '\n'; ++k)
        if (doc[k] == '>') return true;
    }
  }
  return false;
}

enum class Verdict { keep, duplicate, markup, empty };

struct FilterCounts {
  std::uint64_t seen = 0, kept = 0, duplicates = 0, markup = 0, empty = 0;
};

struct FilterOptions {
  bool drop_duplicates = true;
  bool drop_markup = true;
  bool drop_empty = true;  ///< documents with no word left after removing punctuation
};

/// Streaming filter: call add() once per document in corpus order; memory grows by one key
/// (24 bytes plus hash-set overhead) per kept document.
class DocumentFilter {
 public:
  DocumentFilter() = default;
  explicit DocumentFilter(const FilterOptions& options) : options_(options) {}

  Verdict add(std::string_view doc) {
    ++counts_.seen;
    if (options_.drop_markup && has_markup(doc)) {
      ++counts_.markup;
      return Verdict::markup;
    }
    const DuplicateKey key = duplicate_key(doc);
    if (options_.drop_empty && key.length == 0) {
      ++counts_.empty;
      return Verdict::empty;
    }
    if (options_.drop_duplicates && !seen_.insert(key).second) {
      ++counts_.duplicates;
      return Verdict::duplicate;
    }
    ++counts_.kept;
    return Verdict::keep;
  }

  const FilterCounts& counts() const { return counts_; }

 private:
  FilterOptions options_;
  FilterCounts counts_;
  std::unordered_set<DuplicateKey, detail::DuplicateKeyHash> seen_;
};

inline const char* to_string(Verdict v) {
  switch (v) {
    case Verdict::keep: return "keep";
    case Verdict::duplicate: return "duplicate";
    case Verdict::markup: return "markup";
    case Verdict::empty: return "empty";
  }
  return "?";
}

LMSHRINK_NAMESPACE_END
