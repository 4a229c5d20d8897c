#pragma once
#if !defined(LMSHRINK_INSIDE_LIBRARY) && !defined(LMSHRINK_TESTING_INTERNALS)
#error "lmshrink/detail/ is internal: include the public header instead (lmshrink/files.hpp, lmshrink/random.hpp, ...; docs/design.md)"
#endif
// A strict JSON reader (RFC 8259) for the files that come with checkpoints and tokenizers:
// config.json, model.safetensors.index.json, encoder.json. It builds a small tree; duplicate
// keys, invalid UTF-8, lone surrogates, trailing bytes, leading zeros and nesting deeper than
// `max_depth` are errors, and `max_values` bounds what a hostile file can make it allocate.

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <limits>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../errors.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace detail {

/// Appends `s` as a JSON string literal.
inline void json_escape(std::string& out, const std::string& s) {
  out += '"';
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += char(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += char(c);
    }
  }
  out += '"';
}

struct JsonValue {
  enum class Kind { null, boolean, number, string, array, object };
  Kind kind = Kind::null;
  bool boolean = false;
  double number = 0;
  bool is_integer = false;      // a number literal without fraction or exponent that fits int64
  std::int64_t integer = 0;     // its value when is_integer
  std::string text;             // a string's value; a number's literal
  std::vector<JsonValue> items;                            // array elements
  std::vector<std::pair<std::string, JsonValue>> members;  // object members in file order

  /// The member `key` of an object, or nullptr.
  const JsonValue* find(std::string_view key) const {
    for (const auto& m : members)
      if (m.first == key) return &m.second;
    return nullptr;
  }
  const char* kind_name() const {
    switch (kind) {
      case Kind::null: return "null";
      case Kind::boolean: return "a boolean";
      case Kind::number: return "a number";
      case Kind::string: return "a string";
      case Kind::array: return "an array";
      case Kind::object: return "an object";
    }
    return "?";
  }
};

/// Appends `v` as compact JSON text (numbers as their literal).
inline void json_dump(std::string& out, const JsonValue& v) {
  switch (v.kind) {
    case JsonValue::Kind::null: out += "null"; break;
    case JsonValue::Kind::boolean: out += v.boolean ? "true" : "false"; break;
    case JsonValue::Kind::number: out += v.text; break;
    case JsonValue::Kind::string: json_escape(out, v.text); break;
    case JsonValue::Kind::array:
      out += '[';
      for (std::size_t i = 0; i < v.items.size(); ++i) {
        if (i) out += ", ";
        json_dump(out, v.items[i]);
      }
      out += ']';
      break;
    case JsonValue::Kind::object:
      out += '{';
      for (std::size_t i = 0; i < v.members.size(); ++i) {
        if (i) out += ", ";
        json_escape(out, v.members[i].first);
        out += ": ";
        json_dump(out, v.members[i].second);
      }
      out += '}';
      break;
  }
}

struct JsonLimits {
  int max_depth = 64;
  std::int64_t max_values = 1 << 20;
};

/// The lexical layer of strict JSON, shared by the tree parser below and by the safetensors
/// header reader: whitespace, punctuation, strings (escapes, surrogate pairs, UTF-8 validated)
/// and non-negative integers. Errors read "<where>: '<source>'<context> <what>".
class JsonLexer {
 public:
  JsonLexer(const char* where, const std::string& source, const char* context, std::string_view text)
      : where_(where), source_(source), context_(context), begin_(text.data()), p_(text.data()),
        end_(text.data() + text.size()) {}

  template <class... Parts>
  [[noreturn]] void bad(const Parts&... parts) const {
    fail<format_error>(where_, "'", source_, "'", context_, parts...);
  }

  void skip_space() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }
  char peek() {
    skip_space();
    if (p_ >= end_) bad("ends early");
    return *p_;
  }
  void expect(char c) {
    if (peek() != c) bad("has '", *p_, "' at byte ", p_ - begin_, " where '", c, "' was expected");
    ++p_;
  }
  /// Only whitespace may follow.
  void finish() {
    skip_space();
    if (p_ != end_) bad("has trailing bytes at byte ", p_ - begin_);
  }

  /// A string; the next character (after whitespace) must be its opening quote.
  std::string string() {
    expect('"');
    std::string s;
    for (;;) {
      if (p_ >= end_) bad("ends inside a string");
      const unsigned char c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        ++p_;
        return s;
      }
      if (c < 0x20) bad("has a control character inside a string at byte ", p_ - begin_);
      if (c >= 0x80) {
        const std::size_t n = utf8_sequence();
        s.append(p_, n);
        p_ += n;
        continue;
      }
      ++p_;
      if (c != '\\') {
        s += char(c);
        continue;
      }
      if (p_ >= end_) bad("ends inside a string");
      const char e = *p_++;
      switch (e) {
        case '"': s += '"'; break;
        case '\\': s += '\\'; break;
        case '/': s += '/'; break;
        case 'b': s += '\b'; break;
        case 'f': s += '\f'; break;
        case 'n': s += '\n'; break;
        case 'r': s += '\r'; break;
        case 't': s += '\t'; break;
        case 'u': {
          std::uint32_t cp = hex4();
          if (cp >= 0xDC00 && cp < 0xE000) bad("has an unpaired surrogate at byte ", p_ - begin_);
          if (cp >= 0xD800 && cp < 0xDC00) {
            if (end_ - p_ < 6 || p_[0] != '\\' || p_[1] != 'u')
              bad("has an unpaired surrogate at byte ", p_ - begin_);
            p_ += 2;
            const std::uint32_t lo = hex4();
            if (lo < 0xDC00 || lo >= 0xE000) bad("has an unpaired surrogate at byte ", p_ - begin_);
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          append_utf8(s, cp);
          break;
        }
        default: bad("has an invalid escape '\\", e, "' at byte ", p_ - begin_);
      }
    }
  }

  /// A non-negative integer literal (digits only).
  std::uint64_t integer() {
    if (peek() < '0' || *p_ > '9') bad("has '", *p_, "' where a non-negative integer was expected");
    std::uint64_t v = 0;
    while (p_ < end_ && *p_ >= '0' && *p_ <= '9') {
      const std::uint64_t d = std::uint64_t(*p_++ - '0');
      if (v > (std::numeric_limits<std::uint64_t>::max() - d) / 10) bad("has an integer that overflows");
      v = v * 10 + d;
    }
    return v;
  }

  static void append_utf8(std::string& s, std::uint32_t cp) {
    if (cp < 0x80) {
      s += char(cp);
    } else if (cp < 0x800) {
      s += char(0xC0 | (cp >> 6));
      s += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      s += char(0xE0 | (cp >> 12));
      s += char(0x80 | ((cp >> 6) & 0x3F));
      s += char(0x80 | (cp & 0x3F));
    } else {
      s += char(0xF0 | (cp >> 18));
      s += char(0x80 | ((cp >> 12) & 0x3F));
      s += char(0x80 | ((cp >> 6) & 0x3F));
      s += char(0x80 | (cp & 0x3F));
    }
  }

 protected:
  /// The length of the valid UTF-8 sequence at p_ (a lead byte >= 0x80), else an error.
  std::size_t utf8_sequence() const {
    const auto b = [&](std::ptrdiff_t i) { return static_cast<unsigned char>(p_[i]); };
    const unsigned char c = b(0);
    std::size_t n = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
      n = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    }
    if (n == 0 || std::size_t(end_ - p_) < n || b(1) < lo || b(1) > hi)
      bad("has invalid UTF-8 at byte ", p_ - begin_);
    for (std::size_t i = 2; i < n; ++i)
      if (b(std::ptrdiff_t(i)) < 0x80 || b(std::ptrdiff_t(i)) > 0xBF)
        bad("has invalid UTF-8 at byte ", p_ - begin_);
    return n;
  }

  std::uint32_t hex4() {
    if (end_ - p_ < 4) bad("ends inside a \\u escape");
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = *p_++;
      v <<= 4;
      if (c >= '0' && c <= '9') v |= std::uint32_t(c - '0');
      else if (c >= 'a' && c <= 'f') v |= std::uint32_t(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= std::uint32_t(c - 'A' + 10);
      else bad("has an invalid \\u escape at byte ", p_ - begin_);
    }
    return v;
  }

  const char* where_;
  const std::string& source_;
  const char* context_;
  const char* begin_;
  const char* p_;
  const char* end_;
};

/// The tree parser (JsonValue) over JsonLexer, with nesting and value-count limits.
class JsonParser : JsonLexer {
 public:
  JsonParser(const char* where, const std::string& source, std::string_view text, JsonLimits limits)
      : JsonLexer(where, source, " is not valid JSON: it ", text), limits_(limits) {}

  JsonValue parse() {
    if (end_ - p_ >= 3 && std::string_view(p_, 3) == "\xEF\xBB\xBF") bad("starts with a byte order mark");
    JsonValue v = value(0);
    finish();
    return v;
  }

 private:
  void literal(std::string_view word) {
    if (std::size_t(end_ - p_) < word.size() || std::string_view(p_, word.size()) != word)
      bad("has an unknown word at byte ", p_ - begin_);
    p_ += word.size();
  }

  JsonValue value(int depth) {
    if (++count_ > limits_.max_values)
      bad("has more than ", limits_.max_values, " values, the limit for this file");
    if (depth > limits_.max_depth) bad("nests deeper than ", limits_.max_depth, " levels");
    JsonValue v;
    const char c = peek();
    if (c == '{') {
      ++p_;
      v.kind = JsonValue::Kind::object;
      if (peek() == '}') {
        ++p_;
        return v;
      }
      for (;;) {
        if (peek() != '"') bad("has '", *p_, "' at byte ", p_ - begin_, " where a key was expected");
        std::string key = string();
        expect(':');
        JsonValue member = value(depth + 1);
        v.members.emplace_back(std::move(key), std::move(member));
        if (peek() == ',') {
          ++p_;
          continue;
        }
        expect('}');
        check_unique_keys(v);
        return v;
      }
    }
    if (c == '[') {
      ++p_;
      v.kind = JsonValue::Kind::array;
      if (peek() == ']') {
        ++p_;
        return v;
      }
      for (;;) {
        v.items.push_back(value(depth + 1));
        if (peek() == ',') {
          ++p_;
          continue;
        }
        expect(']');
        return v;
      }
    }
    if (c == '"') {
      v.kind = JsonValue::Kind::string;
      v.text = string();
      return v;
    }
    if (c == 't' || c == 'f') {
      literal(c == 't' ? "true" : "false");
      v.kind = JsonValue::Kind::boolean;
      v.boolean = c == 't';
      return v;
    }
    if (c == 'n') {
      literal("null");
      return v;
    }
    if (c == '-' || (c >= '0' && c <= '9')) return number();
    bad("has '", c, "' at byte ", p_ - begin_, " where a value was expected");
  }

  void check_unique_keys(const JsonValue& object) const {
    std::vector<const std::string*> keys;
    keys.reserve(object.members.size());
    for (const auto& m : object.members) keys.push_back(&m.first);
    std::sort(keys.begin(), keys.end(), [](const std::string* a, const std::string* b) { return *a < *b; });
    for (std::size_t i = 1; i < keys.size(); ++i)
      if (*keys[i] == *keys[i - 1]) bad("has the key '", *keys[i], "' twice in one object");
  }

  JsonValue number() {
    const char* start = p_;
    const auto digits = [&] {
      const char* d = p_;
      while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_;
      if (p_ == d) bad("has a malformed number at byte ", start - begin_);
    };
    if (*p_ == '-') ++p_;
    if (p_ < end_ && *p_ == '0') {
      ++p_;
      if (p_ < end_ && *p_ >= '0' && *p_ <= '9') bad("has a number with a leading zero at byte ", start - begin_);
    } else {
      digits();
    }
    bool integral = true;
    if (p_ < end_ && *p_ == '.') {
      ++p_;
      digits();
      integral = false;
    }
    if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
      ++p_;
      if (p_ < end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      digits();
      integral = false;
    }
    JsonValue v;
    v.kind = JsonValue::Kind::number;
    v.text.assign(start, p_);
    const auto r = std::from_chars(start, p_, v.number);
    if (r.ec == std::errc::result_out_of_range)
      bad("has the number ", v.text, ", out of the range of a double");
    if (r.ec != std::errc() || r.ptr != p_) bad("has a malformed number at byte ", start - begin_);
    if (integral) {
      const auto ri = std::from_chars(start, p_, v.integer);
      v.is_integer = ri.ec == std::errc() && ri.ptr == p_;
    }
    return v;
  }

  JsonLimits limits_;
  std::int64_t count_ = 0;
};

/// Parses `text` (named `source` in errors) into a tree; format_error on anything not strict JSON.
inline JsonValue parse_json(const char* where, const std::string& source, std::string_view text,
                            JsonLimits limits = {}) {
  return JsonParser(where, source, text, limits).parse();
}

}  // namespace detail
LMSHRINK_NAMESPACE_END
