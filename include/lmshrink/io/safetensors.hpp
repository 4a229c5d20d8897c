#pragma once
// safetensors files (https://huggingface.co/docs/safetensors), read and written, and the
// storage of compressed layers in them.
//
// Layout: an 8-byte little-endian header length N, N bytes of JSON
//   {"__metadata__": {"key": "value", …},
//    "name": {"dtype": "F32", "shape": [rows, cols], "data_offsets": [begin, end]}, …}
// then the tensor bytes (offsets relative to the end of the header), little-endian, row-major.
// Reading accepts F64, F32, F16, BF16, I64, I32 and U8 and converts to what is asked for; files
// are checked before any value is used: header bounds, JSON syntax, duplicate names, shapes
// against byte ranges, ranges inside the file and not overlapping. Writes are atomic.
//
//   lmshrink::SafeTensors st;
//   st.put("model.norm.weight", gains);
//   lmshrink::put_compressed_layer(st, "model.layers.0.mlp.up_proj", layer, "losparse");
//   lmshrink::write_safetensors(st, "small.safetensors");
//   auto back = lmshrink::read_safetensors("small.safetensors");
//   auto layer2 = lmshrink::get_compressed_layer<float>(back, "model.layers.0.mlp.up_proj");

#include <Eigen/Core>
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "../config.hpp"
#pragma push_macro("LMSHRINK_INSIDE_LIBRARY")
#define LMSHRINK_INSIDE_LIBRARY
#include "../detail/atomic_file.hpp"
#include "../detail/json.hpp"
#include "../detail/read_file.hpp"
#pragma pop_macro("LMSHRINK_INSIDE_LIBRARY")
#include "../errors.hpp"
#include "../low_rank_sparse_linear.hpp"
#include "../types.hpp"

LMSHRINK_NAMESPACE_BEGIN

enum class Dtype { f64, f32, f16, bf16, i64, i32, u8 };

inline const char* dtype_name(Dtype d) {
  switch (d) {
    case Dtype::f64: return "F64";
    case Dtype::f32: return "F32";
    case Dtype::f16: return "F16";
    case Dtype::bf16: return "BF16";
    case Dtype::i64: return "I64";
    case Dtype::i32: return "I32";
    case Dtype::u8: return "U8";
  }
  return "?";
}

inline std::size_t dtype_size(Dtype d) {
  switch (d) {
    case Dtype::f64: case Dtype::i64: return 8;
    case Dtype::f32: case Dtype::i32: return 4;
    case Dtype::f16: case Dtype::bf16: return 2;
    case Dtype::u8: return 1;
  }
  return 0;
}

/// Bounds on what a file may make lmshrink allocate. Sizes of tensors are justified by the file's
/// own bytes. What a file describes without storing is not: a compressed layer's dense S
/// (out × in) and its element mask (a rank-0 layer with no kept rows is a few bytes on disk). The
/// rule: everything the readers build from one SafeTensors beyond its stored tensors (the dense S
/// and masks of every layer read from it, counted once per layer) is at most
/// `derived_fixed_bytes + derived_bytes_per_stored_byte × stored_bytes()`, and no layer has more
/// than `max_layer_elements` entries. Raise them for a file whose layers are mostly pruned away.
struct ReadLimits {
  std::int64_t max_layer_elements = std::int64_t(1) << 28;
  std::int64_t derived_fixed_bytes = std::int64_t(64) << 20;  // 64 MiB
  std::int64_t derived_bytes_per_stored_byte = 256;
};

/// The largest dimension a stored tensor may have (2^40), checked on each dimension alone.
inline constexpr std::int64_t kMaxTensorDimension = std::int64_t(1) << 40;

namespace detail {
/// The number of elements of `shape`, or -1 when a dimension is negative or above
/// kMaxTensorDimension, or when the product of the non-zero dimensions times 8 bytes would
/// overflow (checked whatever the order and even when another dimension is 0).
inline std::int64_t checked_elements(const std::vector<std::int64_t>& shape) {
  std::uint64_t product = 1;
  bool zero = false;
  for (std::int64_t d : shape) {
    if (d < 0 || d > kMaxTensorDimension) return -1;
    if (d == 0) {
      zero = true;
      continue;
    }
    if (product > (std::uint64_t(1) << 60) / std::uint64_t(d)) return -1;
    product *= std::uint64_t(d);
  }
  return zero ? 0 : std::int64_t(product);
}

inline std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string s;
  for (auto d : shape) s += (s.empty() ? "" : "x") + std::to_string(d);
  return "[" + s + "]";
}
}  // namespace detail

struct StoredTensor {
  Dtype dtype = Dtype::f32;
  std::vector<std::int64_t> shape;
  std::vector<unsigned char> bytes;  // little-endian values, row-major

  /// Elements of the shape; -1 for an impossible shape (see detail::checked_elements).
  std::int64_t elements() const { return detail::checked_elements(shape); }
};

namespace detail {

inline float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t(h >> 15) << 31;
  const int exp = (h >> 10) & 0x1f;
  const std::uint32_t mant = h & 0x3ffu;
  float f;
  if (exp == 0) {
    f = std::ldexp(float(mant), -24);
  } else if (exp == 31) {
    f = mant ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  } else {
    f = std::ldexp(float(mant | 0x400u), exp - 25);
  }
  std::uint32_t bits;
  std::memcpy(&bits, &f, 4);
  bits |= sign;
  std::memcpy(&f, &bits, 4);
  return f;
}

/// A strict reader of the small JSON subset safetensors headers use, streaming (it keeps only
/// what it returns), on the shared JSON lexer.
class HeaderParser : JsonLexer {
 public:
  HeaderParser(const char* where, const std::string& path, const char* p, std::size_t n)
      : JsonLexer(where, path, ": header ", std::string_view(p, n)) {}

  void parse(std::map<std::string, StoredTensor>& tensors,
             std::map<std::string, std::string>& metadata,
             std::map<std::string, std::pair<std::uint64_t, std::uint64_t>>& ranges) {
    expect('{');
    if (peek() == '}') {
      ++p_;
      finish();
      return;
    }
    for (;;) {
      const std::string name = string();
      expect(':');
      if (name == "__metadata__") {
        if (!metadata.empty()) bad("'__metadata__' appears twice");
        expect('{');
        if (peek() != '}') {
          for (;;) {
            const std::string key = string();
            expect(':');
            const std::string value = string();
            if (!metadata.emplace(key, value).second) bad("metadata key '", key, "' appears twice");
            if (peek() == ',') { ++p_; continue; }
            break;
          }
        }
        expect('}');
      } else {
        if (tensors.count(name)) bad("tensor '", name, "' appears twice");
        StoredTensor t;
        std::pair<std::uint64_t, std::uint64_t> range{0, 0};
        bool has_dtype = false, has_shape = false, has_offsets = false;
        expect('{');
        for (;;) {
          const std::string key = string();
          expect(':');
          if (key == "dtype") {
            t.dtype = dtype(string(), name);
            has_dtype = true;
          } else if (key == "shape") {
            expect('[');
            if (peek() != ']') {
              for (;;) {
                const std::uint64_t d = integer();
                if (d > std::uint64_t(kMaxTensorDimension))
                  bad("gives tensor '", name, "' the dimension ", d, "; at most 2^40 is supported");
                if (t.shape.size() >= 16) bad("gives tensor '", name, "' more than 16 dimensions");
                t.shape.push_back(std::int64_t(d));
                if (peek() == ',') { ++p_; continue; }
                break;
              }
            }
            expect(']');
            has_shape = true;
          } else if (key == "data_offsets") {
            expect('[');
            range.first = integer();
            expect(',');
            range.second = integer();
            expect(']');
            has_offsets = true;
          } else {
            bad("tensor '", name, "' has an unknown field '", key, "'");
          }
          if (peek() == ',') { ++p_; continue; }
          break;
        }
        expect('}');
        if (!has_dtype || !has_shape || !has_offsets)
          bad("tensor '", name, "' lacks dtype, shape or data_offsets");
        tensors.emplace(name, std::move(t));
        ranges.emplace(name, range);
      }
      if (peek() == ',') { ++p_; continue; }
      break;
    }
    expect('}');
    finish();
  }

 private:
  Dtype dtype(const std::string& s, const std::string& name) const {
    for (Dtype d : {Dtype::f64, Dtype::f32, Dtype::f16, Dtype::bf16, Dtype::i64, Dtype::i32, Dtype::u8})
      if (s == dtype_name(d)) return d;
    bad("gives tensor '", name, "' the dtype '", s,
        "'; F64, F32, F16, BF16, I64, I32 or U8 was expected");
  }
};

}  // namespace detail

/// Named tensors and string metadata, as stored in one safetensors file.
class SafeTensors {
 public:
  std::map<std::string, StoredTensor> tensors;
  std::map<std::string, std::string> metadata;

  bool contains(const std::string& name) const { return tensors.count(name) != 0; }

  void put(const std::string& name, Dtype dtype, std::vector<std::int64_t> shape, const void* data) {
    const std::int64_t n = detail::checked_elements(shape);
    if (n < 0 || shape.size() > 16)
      detail::fail<value_error>("SafeTensors::put", "tensor '", name, "' has the shape ",
                                detail::shape_text(shape), "; at most 16 dimensions, each in "
                                "[0, 2^40], with fewer than 2^57 elements were expected");
    StoredTensor t;
    t.dtype = dtype;
    t.shape = std::move(shape);
    t.bytes.resize(std::size_t(n) * dtype_size(dtype));
    if (!t.bytes.empty()) std::memcpy(t.bytes.data(), data, t.bytes.size());
    tensors[name] = std::move(t);
  }

  /// Stores a float or double matrix (rows, cols) row-major, or a vector (size).
  template <class Derived>
  void put(const std::string& name, const Eigen::MatrixBase<Derived>& m) {
    using S = typename Derived::Scalar;
    static_assert(std::is_same<S, float>::value || std::is_same<S, double>::value,
                  "SafeTensors::put stores float or double tensors");
    const Dtype d = std::is_same<S, float>::value ? Dtype::f32 : Dtype::f64;
    if (Derived::IsVectorAtCompileTime) {
      const Eigen::Matrix<S, Eigen::Dynamic, 1> v = m;
      put(name, d, {std::int64_t(v.size())}, v.data());
    } else {
      const RowMatrix<S> r = m;
      put(name, d, {std::int64_t(r.rows()), std::int64_t(r.cols())}, r.data());
    }
  }

  /// The bytes the file stores: every tensor's data and the metadata's text.
  std::int64_t stored_bytes() const {
    std::int64_t n = 0;
    for (const auto& [name, t] : tensors) n += std::int64_t(t.bytes.size() + name.size());
    for (const auto& [k, v] : metadata) n += std::int64_t(k.size() + v.size());
    return n;
  }

  /// Charges `bytes` that a reader is about to allocate for `what` (once per name, the largest
  /// charge kept) against `limits`' budget for this file; format_error, before anything is
  /// allocated, when the total would exceed it.
  void charge_derived_bytes(const char* where, const std::string& what, std::int64_t bytes,
                            const ReadLimits& limits) const {
    std::int64_t total = bytes;
    for (const auto& [name, b] : derived_bytes_)
      if (name != what) total += b;
    const std::int64_t stored = stored_bytes();
    const std::int64_t per = limits.derived_bytes_per_stored_byte;
    const std::int64_t budget =
        limits.derived_fixed_bytes + (per > 0 && stored > (std::int64_t(1) << 62) / per ? std::int64_t(1) << 62 : per * stored);
    if (total > budget)
      detail::fail<format_error>(where, what, " needs ", bytes, " bytes of dense buffers the file does "
                                 "not store (", total, " with the layers read before it), but a file of ",
                                 stored, " bytes may make the readers allocate at most ", budget,
                                 " (ReadLimits: ", limits.derived_fixed_bytes, " + ",
                                 limits.derived_bytes_per_stored_byte, " per stored byte; raise them for "
                                 "a file whose layers are mostly pruned away)");
    auto& kept = derived_bytes_[what];
    kept = std::max(kept, bytes);
  }

  void put_int32(const std::string& name, const std::vector<std::int32_t>& v) {
    put(name, Dtype::i32, {std::int64_t(v.size())}, v.data());
  }

  /// The tensor `name` as a (rows, cols) matrix of Scalar; format_error when it is missing or
  /// has another shape; numeric_error when a value is not finite.
  template <class Scalar>
  RowMatrix<Scalar> matrix(const std::string& name, Index rows, Index cols) const {
    if (rows < 0 || cols < 0)
      detail::fail<value_error>("SafeTensors::matrix", "tensor '", name, "' was asked as ", rows,
                                "x", cols, "; dimensions >= 0 were expected");
    const StoredTensor& t = get("SafeTensors::matrix", name, {rows, cols});
    RowMatrix<Scalar> m(rows, cols);
    convert("SafeTensors::matrix", name, t, m.data());
    return m;
  }

  template <class Scalar>
  Vector<Scalar> vector(const std::string& name, Index size) const {
    if (size < 0)
      detail::fail<value_error>("SafeTensors::vector", "tensor '", name, "' was asked with size ",
                                size, "; a size >= 0 was expected");
    const StoredTensor& t = get("SafeTensors::vector", name, {size});
    Vector<Scalar> v(size);
    convert("SafeTensors::vector", name, t, v.data());
    return v;
  }

  std::vector<std::int32_t> int32s(const std::string& name, Index size) const {
    static constexpr const char* where = "SafeTensors::int32s";
    if (size < 0)
      detail::fail<value_error>(where, "tensor '", name, "' was asked with size ", size,
                                "; a size >= 0 was expected");
    const StoredTensor& t = get(where, name, {size});
    if (t.dtype != Dtype::i32)
      detail::fail<format_error>(where, "tensor '", name, "' is ", dtype_name(t.dtype),
                                 "; I32 was expected");
    std::vector<std::int32_t> v(static_cast<std::size_t>(size));
    if (size > 0) std::memcpy(v.data(), t.bytes.data(), t.bytes.size());
    return v;
  }

  /// Metadata value, or format_error naming the key when absent.
  const std::string& meta(const std::string& key) const {
    auto it = metadata.find(key);
    if (it == metadata.end())
      detail::fail<format_error>("SafeTensors::meta", "metadata key '", key, "' is missing");
    return it->second;
  }

  /// Metadata value as an integer in [lo, hi]: an optional '-' and decimal digits, nothing else
  /// (no spaces, '+' or bytes after the number, including NUL).
  std::int64_t meta_int(const std::string& key, std::int64_t lo, std::int64_t hi) const {
    const std::string& s = meta(key);
    std::int64_t v = 0;
    const auto [end, status] = std::from_chars(s.data(), s.data() + s.size(), v, 10);
    if (s.empty() || status != std::errc() || end != s.data() + s.size() || v < lo || v > hi)
      detail::fail<format_error>("SafeTensors::meta_int", "metadata '", key, "' is '", s,
                                 "'; an integer in [", lo, ", ", hi, "] was expected");
    return v;
  }

 private:
  const StoredTensor& get(const char* where, const std::string& name,
                          std::vector<std::int64_t> shape) const {
    auto it = tensors.find(name);
    if (it == tensors.end()) detail::fail<format_error>(where, "tensor '", name, "' is missing");
    if (it->second.shape != shape)
      detail::fail<format_error>(where, "tensor '", name, "' has shape ",
                                 detail::shape_text(it->second.shape), " but ",
                                 detail::shape_text(shape), " was expected");
    if (it->second.bytes.size() != std::size_t(it->second.elements()) * dtype_size(it->second.dtype))
      detail::fail<format_error>(where, "tensor '", name, "' holds ", it->second.bytes.size(),
                                 " bytes; its shape and dtype need ",
                                 std::size_t(it->second.elements()) * dtype_size(it->second.dtype));
    return it->second;
  }

  template <class Scalar>
  static void convert(const char* where, const std::string& name, const StoredTensor& t, Scalar* out) {
    const std::size_t n = std::size_t(t.elements());
    const unsigned char* b = t.bytes.data();
    for (std::size_t i = 0; i < n; ++i) {
      double v = 0;
      switch (t.dtype) {
        case Dtype::f64: { double x; std::memcpy(&x, b + 8 * i, 8); v = x; break; }
        case Dtype::f32: { float x; std::memcpy(&x, b + 4 * i, 4); v = x; break; }
        case Dtype::f16: { std::uint16_t h; std::memcpy(&h, b + 2 * i, 2); v = detail::half_to_float(h); break; }
        case Dtype::bf16: {
          std::uint16_t h;
          std::memcpy(&h, b + 2 * i, 2);
          const std::uint32_t bits = std::uint32_t(h) << 16;
          float x;
          std::memcpy(&x, &bits, 4);
          v = x;
          break;
        }
        default:
          detail::fail<format_error>(where, "tensor '", name, "' is ", dtype_name(t.dtype),
                                     "; a floating-point dtype was expected");
      }
      if (!std::isfinite(v))
        detail::fail<numeric_error>(where, "tensor '", name, "' has a non-finite value at entry ", i);
      out[i] = Scalar(v);
      if (!std::isfinite(out[i]))  // checked after narrowing: an F64 1e300 is finite, its float is not
        detail::fail<numeric_error>(where, "tensor '", name, "' entry ", i, " is ", v, " (",
                                    dtype_name(t.dtype), "), beyond the largest ",
                                    std::is_same<Scalar, float>::value ? "float" : "value", " (",
                                    double(std::numeric_limits<Scalar>::max()), ") it is read as");
    }
  }

 private:
  mutable std::map<std::string, std::int64_t> derived_bytes_;  // charge_derived_bytes, by name
};

/// Parses a safetensors file held in memory (`source` names it in messages); every check is made
/// before it returns. The allocations are the tensors' bytes, at most `size` in all.
inline SafeTensors parse_safetensors(const char* data_begin, std::size_t size,
                                     const std::string& source = "<memory>") {
  static constexpr const char* where = "read_safetensors";
  const std::string& path = source;
  if (size < 8)
    detail::fail<format_error>(where, "'", path, "' is truncated: an 8-byte header length was "
                               "expected, the file has ", size, " bytes");
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<unsigned char>(data_begin[i]);
  const std::uint64_t rest = size - 8;
  if (header_len > rest || header_len > (std::uint64_t(100) << 20))
    detail::fail<format_error>(where, "'", path, "' declares a ", header_len,
                               "-byte header but has ", rest, " bytes after the length (and headers "
                               "are at most 100 MiB): not a safetensors file, or truncated");
  SafeTensors st;
  std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> ranges;
  detail::HeaderParser(where, path, data_begin + 8, std::size_t(header_len)).parse(st.tensors, st.metadata, ranges);
  const std::uint64_t data_size = rest - header_len;
  const char* data = data_begin + 8 + header_len;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> used;
  for (auto& [name, t] : st.tensors) {
    const auto r = ranges.at(name);
    const std::int64_t n = t.elements();
    if (n < 0)
      detail::fail<format_error>(where, "'", path, "': tensor '", name, "' has the impossible shape ",
                                 detail::shape_text(t.shape));
    const std::uint64_t want = std::uint64_t(n) * dtype_size(t.dtype);
    if (r.first > r.second || r.second > data_size)
      detail::fail<format_error>(where, "'", path, "': tensor '", name, "' has data_offsets [",
                                 r.first, ", ", r.second, "] outside the ", data_size,
                                 " data bytes (truncated file?)");
    if (r.second - r.first != want)
      detail::fail<format_error>(where, "'", path, "': tensor '", name, "' has ",
                                 r.second - r.first, " bytes but its shape and dtype need ", want);
    used.push_back(r);
  }
  // Disjoint ranges before any copy, so the copies add up to at most the file's data bytes.
  std::sort(used.begin(), used.end());
  for (std::size_t i = 1; i < used.size(); ++i)
    if (used[i].first < used[i - 1].second)
      detail::fail<format_error>(where, "'", path, "': two tensors share bytes [", used[i].first,
                                 ", ", used[i - 1].second, ")");
  for (auto& [name, t] : st.tensors) {
    const auto r = ranges.at(name);
    t.bytes.assign(data + r.first, data + r.second);
  }
  return st;
}

/// Reads a whole safetensors file; every check is made before it returns.
inline SafeTensors read_safetensors(const std::string& path) {
  const std::vector<char> bytes = detail::read_file_bytes(
      "read_safetensors", path, 8, "an 8-byte header length", std::int64_t(1) << 40, "too large");
  return parse_safetensors(bytes.data(), bytes.size(), path);
}

namespace detail {
/// The JSON header write_safetensors puts after the length (padded to 8-byte alignment); the
/// tensors follow in name order.
inline std::string safetensors_header(const SafeTensors& st) {
  std::string header = "{";
  if (!st.metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : st.metadata) {
      if (!first) header += ',';
      first = false;
      detail::json_escape(header, k);
      header += ':';
      detail::json_escape(header, v);
    }
    header += '}';
  }
  std::uint64_t offset = 0;
  for (const auto& [name, t] : st.tensors) {
    if (header.size() > 1) header += ',';
    detail::json_escape(header, name);
    header += ":{\"dtype\":\"";
    header += dtype_name(t.dtype);
    header += "\",\"shape\":[";
    for (std::size_t i = 0; i < t.shape.size(); ++i)
      header += (i ? "," : "") + std::to_string(t.shape[i]);
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," +
              std::to_string(offset + t.bytes.size()) + "]}";
    offset += t.bytes.size();
  }
  header += '}';
  while ((8 + header.size()) % 8 != 0) header += ' ';  // aligns the data
  return header;
}
}  // namespace detail

/// Writes `st` to `path` atomically (see detail/atomic_file.hpp: the destination is the old or
/// the new file whatever happens, and no temporary file is left behind).
inline void write_safetensors(const SafeTensors& st, const std::string& path) {
  const std::string header = detail::safetensors_header(st);
  detail::write_file_atomically("write_safetensors", path, [&](std::FILE* f) {
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(std::uint64_t(header.size()) >> (8 * i));
    if (std::fwrite(len, 1, 8, f) != 8) return false;
    if (std::fwrite(header.data(), 1, header.size(), f) != header.size()) return false;
    for (const auto& [name, t] : st.tensors)
      if (!t.bytes.empty() && std::fwrite(t.bytes.data(), 1, t.bytes.size(), f) != t.bytes.size())
        return false;
    return true;
  });
}

/// Stores a layer under `prefix`: "<prefix>.U" (out, r) and ".V" (r, in) when r > 0, the live
/// rows of S as ".S_rows" (k, in) with their indices ".S_index" (k, I32), ".S_mask" (k, in, U8)
/// when the layer has an element mask, ".bias" when it has one; metadata "<prefix>.rank",
/// ".out_features", ".in_features", ".kept_rows" and ".method" (free text, e.g. "losparse").
template <class Scalar>
void put_compressed_layer(SafeTensors& st, const std::string& prefix,
                          const LowRankSparseLinear<Scalar>& layer, const std::string& method) {
  const Index out = layer.out_features(), in = layer.in_features(), r = layer.rank();
  if (r > 0) {
    st.put(prefix + ".U", layer.U());
    st.put(prefix + ".V", layer.V());
  }
  std::vector<std::int32_t> index;
  for (const auto& run : layer.live_row_runs())
    for (Index i = run.first; i < run.first + run.second; ++i) index.push_back(std::int32_t(i));
  RowMatrix<Scalar> rows(Index(index.size()), in);
  std::vector<std::uint8_t> mask;
  for (std::size_t k = 0; k < index.size(); ++k) {
    rows.row(Index(k)) = layer.S().row(index[k]);
    if (!layer.has_element_mask()) continue;
    for (Index j = 0; j < in; ++j) {
      const bool live = layer.element_mask()(index[k], j) != 0;
      mask.push_back(live ? 1 : 0);
      if (!live) rows(Index(k), j) = Scalar(0);
    }
  }
  st.put(prefix + ".S_rows", Dtype(std::is_same<Scalar, float>::value ? Dtype::f32 : Dtype::f64),
         {std::int64_t(index.size()), std::int64_t(in)}, rows.data());
  st.put_int32(prefix + ".S_index", index);
  if (layer.has_element_mask())
    st.put(prefix + ".S_mask", Dtype::u8, {std::int64_t(index.size()), std::int64_t(in)}, mask.data());
  if (layer.has_bias()) st.put(prefix + ".bias", layer.bias());
  st.metadata[prefix + ".rank"] = std::to_string(r);
  st.metadata[prefix + ".out_features"] = std::to_string(out);
  st.metadata[prefix + ".in_features"] = std::to_string(in);
  st.metadata[prefix + ".kept_rows"] = std::to_string(index.size());
  st.metadata[prefix + ".method"] = method;
}

/// True when `prefix` names a layer stored by put_compressed_layer.
inline bool has_compressed_layer(const SafeTensors& st, const std::string& prefix) {
  return st.metadata.count(prefix + ".rank") != 0;
}

/// Rebuilds a layer stored by put_compressed_layer; its rank, shape and kept rows come from the
/// file. Pruned rows of S are zero and masked. Every tensor is checked before the layer is built;
/// the layer's dense S (out × in) must fit `limits.max_layer_elements`.
template <class Scalar>
LowRankSparseLinear<Scalar> get_compressed_layer(const SafeTensors& st, const std::string& prefix,
                                                 const ReadLimits& limits = {}) {
  static constexpr const char* where = "get_compressed_layer";
  const Index max_dim = Index(1) << 24;
  const Index out = st.meta_int(prefix + ".out_features", 1, max_dim);
  const Index in = st.meta_int(prefix + ".in_features", 1, max_dim);
  const Index r = st.meta_int(prefix + ".rank", 0, std::min(out, in));
  const Index k = st.meta_int(prefix + ".kept_rows", 0, out);
  if (out * in > limits.max_layer_elements)  // out, in <= 2^24: no overflow
    detail::fail<format_error>(where, "layer '", prefix, "' is ", out, "x", in, " (", out * in,
                               " entries of S) but at most ", limits.max_layer_elements,
                               " are allowed (ReadLimits::max_layer_elements; raise it for a "
                               "layer this large)");
  // The dense S and, when stored, the element mask (built twice: here and in the layer).
  const bool has_mask = st.contains(prefix + ".S_mask");
  st.charge_derived_bytes(where, "layer '" + prefix + "'",
                          out * in * (std::int64_t(sizeof(Scalar)) + (has_mask ? 2 : 0)) + out, limits);
  // The stored tensors first: their sizes are justified by the file's bytes.
  RowMatrix<Scalar> U, V;
  if (r > 0) {
    U = st.matrix<Scalar>(prefix + ".U", out, r);
    V = st.matrix<Scalar>(prefix + ".V", r, in);
  }
  const std::vector<std::int32_t> index = st.int32s(prefix + ".S_index", k);
  for (Index i = 0; i < k; ++i) {
    const std::int32_t row = index[std::size_t(i)];
    if (row < 0 || row >= out || (i > 0 && row <= index[std::size_t(i - 1)]))
      detail::fail<format_error>(where, "'", prefix, ".S_index' entry ", i, " is ", row,
                                 "; strictly increasing rows in [0, ", out, ") were expected");
  }
  const RowMatrix<Scalar> rows = st.matrix<Scalar>(prefix + ".S_rows", k, in);
  const StoredTensor* stored_mask = nullptr;
  if (st.contains(prefix + ".S_mask")) {
    stored_mask = &st.tensors.at(prefix + ".S_mask");
    if (stored_mask->dtype != Dtype::u8 || stored_mask->shape != std::vector<std::int64_t>{k, in} ||
        stored_mask->bytes.size() != std::size_t(k * in))
      detail::fail<format_error>(where, "'", prefix, ".S_mask' is ", dtype_name(stored_mask->dtype),
                                 " ", detail::shape_text(stored_mask->shape), "; U8 [", k, "x", in,
                                 "] was expected");
  }
  const bool bias = st.contains(prefix + ".bias");
  Vector<Scalar> b;
  if (bias) b = st.vector<Scalar>(prefix + ".bias", out);

  LowRankSparseLinear<Scalar> layer(out, in, r, bias);
  if (r > 0) layer.set_low_rank(U, V);
  RowMask live = RowMask::Zero(out);
  layer.S().setZero();
  for (Index i = 0; i < k; ++i) {
    const std::int32_t row = index[std::size_t(i)];
    layer.S().row(row) = rows.row(i);
    live[row] = 1;
  }
  layer.set_row_mask(live);
  if (stored_mask != nullptr) {
    ElementMask em = ElementMask::Zero(out, in);
    for (Index i = 0; i < k; ++i)
      for (Index j = 0; j < in; ++j)
        em(index[std::size_t(i)], j) = stored_mask->bytes[std::size_t(i * in + j)] ? 1 : 0;
    layer.set_element_mask(em);
  }
  layer.apply_masks();
  layer.release_sparse();  // a low-rank-only layer holds no S
  if (bias) layer.bias() = b;
  return layer;
}

LMSHRINK_NAMESPACE_END
