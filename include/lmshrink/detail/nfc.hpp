#pragma once
#if !defined(LMSHRINK_INSIDE_LIBRARY) && !defined(LMSHRINK_TESTING_INTERNALS)
#error "lmshrink/detail/ is internal: include the public header instead (lmshrink/files.hpp, lmshrink/random.hpp, ...; docs/design.md)"
#endif
// Unicode Normalization Form C (UAX #15): canonical decomposition, canonical ordering, canonical
// composition, with the tables of unicode_nfc.hpp and Hangul computed. Bytes that are not UTF-8
// pass through unchanged and block composition across them.

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "../config.hpp"
#include "unicode_nfc.hpp"
#include "utf8.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace detail {

inline constexpr std::uint32_t kRawByte = 0x80000000u;  // a byte that is not UTF-8, kept as is

inline std::uint8_t combining_class(std::uint32_t cp) {
  const auto it = std::upper_bound(std::begin(kCombiningClasses), std::end(kCombiningClasses), cp,
                                   [](std::uint32_t c, const CombiningClassRange& r) { return c < r.first; });
  return it != std::begin(kCombiningClasses) && cp <= (it - 1)->last ? (it - 1)->ccc : 0;
}

inline void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp & kRawByte) out += char(cp & 0xFF);
  else if (cp < 0x80) out += char(cp);
  else if (cp < 0x800) { out += char(0xC0 | (cp >> 6)); out += char(0x80 | (cp & 0x3F)); }
  else if (cp < 0x10000) { out += char(0xE0 | (cp >> 12)); out += char(0x80 | ((cp >> 6) & 0x3F)); out += char(0x80 | (cp & 0x3F)); }
  else { out += char(0xF0 | (cp >> 18)); out += char(0x80 | ((cp >> 12) & 0x3F)); out += char(0x80 | ((cp >> 6) & 0x3F)); out += char(0x80 | (cp & 0x3F)); }
}

namespace hangul {
inline constexpr std::uint32_t s_base = 0xAC00, l_base = 0x1100, v_base = 0x1161, t_base = 0x11A7;
inline constexpr std::uint32_t l_count = 19, v_count = 21, t_count = 28, n_count = v_count * t_count,
                               s_count = l_count * n_count;
}  // namespace hangul

inline void decompose(std::uint32_t cp, std::vector<std::uint32_t>& out) {
  using namespace hangul;
  if (cp >= s_base && cp < s_base + s_count) {
    const std::uint32_t s = cp - s_base;
    out.push_back(l_base + s / n_count);
    out.push_back(v_base + (s % n_count) / t_count);
    if (s % t_count) out.push_back(t_base + s % t_count);
    return;
  }
  const auto it = std::lower_bound(std::begin(kDecompositions), std::end(kDecompositions), cp,
                                   [](const Decomposition& d, std::uint32_t c) { return d.cp < c; });
  if (it != std::end(kDecompositions) && it->cp == cp)
    out.insert(out.end(), kDecompositionPool + it->offset, kDecompositionPool + it->offset + it->length);
  else
    out.push_back(cp);
}

/// The primary composite of (first, second), or 0.
inline std::uint32_t compose(std::uint32_t first, std::uint32_t second) {
  using namespace hangul;
  if (first >= l_base && first < l_base + l_count && second >= v_base && second < v_base + v_count)
    return s_base + ((first - l_base) * v_count + (second - v_base)) * t_count;
  if (first >= s_base && first < s_base + s_count && (first - s_base) % t_count == 0 && second > t_base &&
      second < t_base + t_count)
    return first + (second - t_base);
  const auto it = std::lower_bound(std::begin(kCompositions), std::end(kCompositions), std::make_pair(first, second),
                                   [](const Composition& c, const std::pair<std::uint32_t, std::uint32_t>& p) {
                                     return c.first < p.first || (c.first == p.first && c.second < p.second);
                                   });
  return it != std::end(kCompositions) && it->first == first && it->second == second ? it->composite : 0;
}

/// `text` in Normalization Form C.
inline std::string nfc(std::string_view text) {
  // Code points below U+0300 are all starters that neither decompose nor compose with what
  // precedes them: text of such code points (lead bytes below 0xCC) is already NFC.
  if (std::all_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0xCC; }))
    return std::string(text);
  std::vector<std::uint32_t> d;
  for (std::size_t i = 0; i < text.size();) {
    const auto [cp, n] = next_code_point(text, i);
    if (cp == 0xFFFFFFFFu) d.push_back(kRawByte | static_cast<unsigned char>(text[i]));
    else decompose(cp, d);
    i += n;
  }
  const auto ccc = [](std::uint32_t cp) { return cp & kRawByte ? std::uint8_t(0) : combining_class(cp); };
  // Canonical ordering: each run of non-starters sorted (stably) by combining class.
  for (std::size_t i = 0; i < d.size();) {
    if (ccc(d[i]) == 0) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < d.size() && ccc(d[j]) != 0) ++j;
    std::stable_sort(d.begin() + std::ptrdiff_t(i), d.begin() + std::ptrdiff_t(j),
                     [&](std::uint32_t a, std::uint32_t b) { return ccc(a) < ccc(b); });
    i = j;
  }
  // Canonical composition.
  std::vector<std::uint32_t> out;
  std::size_t starter = 0;
  int last_class = -1;  // -1: no starter yet
  for (const std::uint32_t cp : d) {
    const int cls = ccc(cp);
    if (last_class >= 0 && !(out[starter] & kRawByte) && !(cp & kRawByte) && (last_class < cls || last_class == 0)) {
      if (const std::uint32_t c = compose(out[starter], cp)) {
        out[starter] = c;
        continue;
      }
    }
    if (cls == 0) {
      starter = out.size();
      last_class = 0;
    } else if (last_class >= 0) {
      last_class = cls;
    }
    out.push_back(cp);
  }
  std::string s;
  for (const std::uint32_t cp : out) append_utf8(s, cp);
  return s;
}

}  // namespace detail
LMSHRINK_NAMESPACE_END
