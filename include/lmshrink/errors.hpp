#pragma once
// Exceptions thrown for bad input. Every message starts with a greppable id and names the
// function, what was expected and what was given, e.g.
//   "[lmshrink.shape] LowRankSparseLinear::forward: x has 1024 columns but in_features is 768"

#include <sstream>
#include <stdexcept>
#include <string>
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

template <class... Parts>
std::string concat(Parts&&... parts) {
  std::ostringstream out;
  (out << ... << std::forward<Parts>(parts));
  return out.str();
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

/// Throws Error("[lmshrink.<kind>] <where>: <parts...>").
template <class Error, class... Parts>
[[noreturn]] void fail(const char* where, Parts&&... parts) {
  throw Error(concat(error_id<Error>(), where, ": ", std::forward<Parts>(parts)...));
}

}  // namespace detail

LMSHRINK_NAMESPACE_END
