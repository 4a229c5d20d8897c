#pragma once
// Exceptions thrown for bad input. Every message starts with a greppable id and names the
// function, what was expected and what was given, e.g.
//   "[lmshrink.shape] LowRankSparseLinear::forward: x has 1024 columns but in_features is 768"

#include <cstddef>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "config.hpp"

LMSHRINK_NAMESPACE_BEGIN

/// Base of every exception lmshrink throws.
class error : public std::runtime_error {
 public:
  explicit error(const std::string& message) : std::runtime_error(message) {}
};

/// Operand shapes disagree ("[lmshrink.shape]").
class shape_error : public error {
 public:
  using error::error;
};

/// A value is outside its allowed range: ratio, rank, option ("[lmshrink.value]").
class value_error : public error {
 public:
  using error::error;
};

/// NaN or Inf where finite numbers are required ("[lmshrink.numeric]").
class numeric_error : public error {
 public:
  using error::error;
};

/// A file cannot be opened, read or written ("[lmshrink.io]").
class io_error : public error {
 public:
  using error::error;
};

/// A file's content is truncated, corrupt or inconsistent with its header ("[lmshrink.format]").
class format_error : public error {
 public:
  using error::error;
};

/// An API was used in the wrong order or state ("[lmshrink.state]").
class state_error : public error {
 public:
  using error::error;
};

namespace detail {

/// One part of a message: the value and how to stream it. Parts are formatted by one function
/// for every message (`std::ostream << part`), so a call of `fail` with N parts compiles to N
/// pairs of pointers and one call, not to a stream of its own.
struct MessagePart {
  const void* value;
  void (*put)(std::ostream&, const void*);
};

template <class T>
void put_part(std::ostream& out, const void* value) {
  out << *static_cast<const T*>(value);
}

// An array part streams as its first element's address does (a string literal as its text).
template <class Element>
void put_array_part(std::ostream& out, const void* first) {
  out << static_cast<const Element*>(first);
}

template <class T>
MessagePart message_part(const T& value) {
  if constexpr (std::is_array_v<T>) {
    return {static_cast<const void*>(&value[0]), &put_array_part<std::remove_extent_t<T>>};
  } else {
    return {static_cast<const void*>(&value), &put_part<T>};
  }
}

inline std::string join(const MessagePart* parts, std::size_t count) {
  std::ostringstream out;
  for (std::size_t k = 0; k < count; ++k) parts[k].put(out, parts[k].value);
  return out.str();
}

/// The parts streamed one after another into one string. (Each list ends with an empty part, so
/// that no array has size zero.)
template <class... Parts>
std::string concat(const Parts&... parts) {
  const MessagePart list[sizeof...(Parts) + 1] = {message_part(parts)..., MessagePart{}};
  return join(list, sizeof...(Parts));
}

template <class Error>
const char* error_id() {
  if constexpr (std::is_same_v<Error, shape_error>) return "[lmshrink.shape] ";
  else if constexpr (std::is_same_v<Error, value_error>) return "[lmshrink.value] ";
  else if constexpr (std::is_same_v<Error, numeric_error>) return "[lmshrink.numeric] ";
  else if constexpr (std::is_same_v<Error, io_error>) return "[lmshrink.io] ";
  else if constexpr (std::is_same_v<Error, format_error>) return "[lmshrink.format] ";
  else if constexpr (std::is_same_v<Error, state_error>) return "[lmshrink.state] ";
  else return "[lmshrink] ";
}

/// `text` safe to print: control characters (C0, DEL, C1) and bytes that are not valid UTF-8
/// become \xNN (\u00NN for C1), so that a message quoting a hostile file cannot carry raw bytes
/// to a terminal or a log. Valid UTF-8 is kept as it is.
inline std::string printable(const std::string& text) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
  for (std::size_t i = 0; i < text.size();) {
    const unsigned char c = byte(i);
    if (c >= 0x20 && c < 0x7F) {
      out += char(c);
      ++i;
      continue;
    }
    std::size_t n = 0;  // length of a valid multi-byte sequence starting here
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) n = 3;
    else if (c >= 0xF0 && c <= 0xF4) n = 4;
    bool valid = n > 0 && i + n <= text.size();
    for (std::size_t k = 1; valid && k < n; ++k) valid = (byte(i + k) & 0xC0) == 0x80;
    if (valid && n >= 3) {  // no overlong forms, surrogates or code points above U+10FFFF
      const unsigned char d = byte(i + 1);
      if ((c == 0xE0 && d < 0xA0) || (c == 0xED && d > 0x9F) || (c == 0xF0 && d < 0x90) || (c == 0xF4 && d > 0x8F))
        valid = false;
    }
    if (valid && c == 0xC2 && byte(i + 1) < 0xA0) {  // C1 controls U+0080..U+009F
      out += "\\u00";
      out += hex[byte(i + 1) >> 4];
      out += hex[byte(i + 1) & 15];
      i += 2;
    } else if (valid) {
      out.append(text, i, n);
      i += n;
    } else {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
      ++i;
    }
  }
  return out;
}

template <class Error>
[[noreturn]] void throw_error(const char* where, const MessagePart* parts, std::size_t count) {
  throw Error(printable(error_id<Error>() + std::string(where) + ": " + join(parts, count)));
}

}  // namespace detail

/// Throws Error("[lmshrink.<kind>] <where>: <parts...>"): the library's message form, for code
/// built on it (a program's own checks read like the library's). Parts are streamed with <<;
/// control characters and invalid UTF-8 become \xNN escapes, so a message quoting a hostile
/// file cannot carry raw bytes to a terminal.
///   lmshrink::fail<lmshrink::value_error>("my_trainer", "--steps must be >= 1, got ", steps);
template <class Error, class... Parts>
[[noreturn]] void fail(const char* where, const Parts&... parts) {
  static_assert(std::is_base_of_v<error, Error>, "fail throws an lmshrink::error");
  const detail::MessagePart list[sizeof...(Parts) + 1] = {detail::message_part(parts)..., detail::MessagePart{}};
  detail::throw_error<Error>(where, list, sizeof...(Parts));
}

namespace detail {
using lmshrink::fail;
}  // namespace detail

LMSHRINK_NAMESPACE_END
