#pragma once
#if !defined(LMSHRINK_INSIDE_LIBRARY) && !defined(LMSHRINK_TESTING_INTERNALS)
#error "lmshrink/detail/ is internal: include the public header instead (lmshrink/files.hpp, lmshrink/random.hpp, ...; docs/design.md)"
#endif
// A bounds-checked reader of the protocol-buffers wire format (varints, fixed 32/64-bit values,
// length-delimited fields), enough to read a message whose schema the caller knows, such as
// SentencePiece's tokenizer.model. Every read is checked against the bytes that remain: a
// truncated or hostile file is a format_error naming the file, the message and the byte offset.

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>

#include "../config.hpp"
#include "../errors.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace detail {

class ProtoReader {
 public:
  enum WireType : int { varint_type = 0, fixed64_type = 1, bytes_type = 2, fixed32_type = 5 };

  /// `bytes` is one message; `base` is its offset in the file, for messages.
  ProtoReader(const char* where, const std::string& source, std::string_view bytes, std::string message,
              std::size_t base = 0)
      : where_(where), source_(source), bytes_(bytes), message_(std::move(message)), base_(base) {}

  /// Reads the next field's key; false at the end of the message.
  bool next() {
    if (at_ == bytes_.size()) return false;
    const std::size_t key_at = at_;
    const std::uint64_t key = read_varint();
    field_ = key >> 3;
    wire_ = int(key & 7);
    if (field_ == 0 || field_ > 536870911u)
      fail_at(key_at, "a field number in [1, 2^29) was expected, got ", field_);
    if (wire_ != varint_type && wire_ != fixed64_type && wire_ != bytes_type && wire_ != fixed32_type)
      fail_at(key_at, "field ", field_, " has wire type ", wire_,
              " (groups and unknown types are not read); 0, 1, 2 or 5 was expected");
    return true;
  }

  std::uint64_t field() const { return field_; }
  int wire_type() const { return wire_; }

  std::uint64_t varint() {
    expect(varint_type, "a varint");
    return read_varint();
  }
  /// A varint read as proto's int32 (negative values are sign-extended to 64 bits on the wire).
  std::int32_t int32() {
    const std::size_t start = at_;
    const auto v = std::int64_t(varint());
    if (v < INT32_MIN || v > INT32_MAX) fail_at(start, "field ", field_, " holds ", v, ", outside int32");
    return std::int32_t(v);
  }
  bool boolean() { return varint() != 0; }
  float fixed32_float() {
    expect(fixed32_type, "a 32-bit value");
    need(4, "a 32-bit value");
    float v;
    std::memcpy(&v, bytes_.data() + at_, 4);
    at_ += 4;
    return v;
  }
  /// A length-delimited field's bytes (a string or an embedded message).
  std::string_view bytes() {
    expect(bytes_type, "a length-delimited value");
    const std::uint64_t n = read_varint();
    if (n > bytes_.size() - at_)
      fail_at(at_, "field ", field_, " declares ", n, " bytes but ", bytes_.size() - at_, " remain in the ",
              message_);
    const std::string_view out = bytes_.substr(at_, std::size_t(n));
    at_ += std::size_t(n);
    return out;
  }
  /// A reader of an embedded message field.
  ProtoReader message(std::string name) {
    const std::string_view body = bytes();
    return ProtoReader(where_, source_, body, std::move(name), base_ + at_ - body.size());
  }
  void skip() {
    switch (wire_) {
      case varint_type: (void)read_varint(); break;
      case fixed64_type: need(8, "a 64-bit value"); at_ += 8; break;
      case fixed32_type: need(4, "a 32-bit value"); at_ += 4; break;
      default: (void)bytes(); break;
    }
  }

  template <class... Parts>
  [[noreturn]] void fail_here(Parts&&... parts) const {
    fail_at(at_, std::forward<Parts>(parts)...);
  }

 private:
  template <class... Parts>
  [[noreturn]] void fail_at(std::size_t at, Parts&&... parts) const {
    fail<format_error>(where_, "'", source_, "' is not a valid ", message_, " at byte ", base_ + at, ": ",
                       std::forward<Parts>(parts)...);
  }
  void need(std::size_t n, const char* what) const {
    if (bytes_.size() - at_ < n)
      fail_at(at_, "field ", field_, " is truncated: ", what, " needs ", n, " bytes, ", bytes_.size() - at_,
              " remain");
  }
  void expect(int wire, const char* what) const {
    if (wire_ != wire) fail_at(at_, "field ", field_, " has wire type ", wire_, " but ", what, " was expected");
  }
  std::uint64_t read_varint() {
    std::uint64_t v = 0;
    const std::size_t start = at_;
    for (int shift = 0; shift < 64; shift += 7) {
      if (at_ == bytes_.size()) fail_at(start, "a varint is truncated");
      const auto b = static_cast<unsigned char>(bytes_[at_++]);
      if (shift == 63 && b > 1) fail_at(start, "a varint overflows 64 bits");
      v |= std::uint64_t(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    fail_at(start, "a varint is longer than 10 bytes");
  }

  const char* where_;
  const std::string& source_;
  std::string_view bytes_;
  std::string message_;
  std::size_t base_ = 0;
  std::size_t at_ = 0;
  std::uint64_t field_ = 0;
  int wire_ = 0;
};

}  // namespace detail
LMSHRINK_NAMESPACE_END
