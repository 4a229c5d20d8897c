#pragma once
#if !defined(LMSHRINK_INSIDE_LIBRARY) && !defined(LMSHRINK_TESTING_INTERNALS)
#error "lmshrink/detail/ is internal: include the public header instead (lmshrink/files.hpp, lmshrink/random.hpp, ...; docs/design.md)"
#endif
// Strict UTF-8 decoding (RFC 3629: no overlong forms, surrogates or code points past U+10FFFF),
// shared by the tokenizers.

#include <cstdint>
#include <string_view>
#include <utility>

#include "../config.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace detail {

/// Decodes one UTF-8 sequence at s[i]: its code point and length, or length 1 and code point
/// 0xFFFFFFFF for a byte that does not start a valid sequence.
inline std::pair<std::uint32_t, std::size_t> next_code_point(std::string_view s, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) return {c, 1};
  std::size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;
  std::uint32_t cp = 0;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
    cp = c & 0x1Fu;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    cp = c & 0x0Fu;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    cp = c & 0x07u;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  }
  const std::pair<std::uint32_t, std::size_t> invalid{0xFFFFFFFFu, 1};
  if (n == 0 || s.size() - i < n || b(i + 1) < lo || b(i + 1) > hi) return invalid;
  cp = (cp << 6) | (b(i + 1) & 0x3Fu);
  for (std::size_t k = 2; k < n; ++k) {
    if (b(i + k) < 0x80 || b(i + k) > 0xBF) return invalid;
    cp = (cp << 6) | (b(i + k) & 0x3Fu);
  }
  return {cp, n};
}

/// The offset of the first byte of `s` that does not start a valid UTF-8 sequence, or npos.
inline std::size_t first_invalid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto [cp, n] = next_code_point(s, i);
    if (cp == 0xFFFFFFFFu) return i;
    i += n;
  }
  return std::string_view::npos;
}

}  // namespace detail
LMSHRINK_NAMESPACE_END
