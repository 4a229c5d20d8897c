#pragma once
// A 64-bit digest of bytes: not cryptographic; it tells whether two states are the same bits
// (data-parallel ranks' states, a cache's inputs).
//
//   lmshrink::Digest d;
//   d.add(bytes, n);            // raw bytes
//   d.add(matrix);              // an Eigen matrix or vector: its shape, then its values
//   std::uint64_t key = d.value();

#include <Eigen/Core>
#include <cstdint>
#include <cstring>

#include "config.hpp"

LMSHRINK_NAMESPACE_BEGIN
/// Bytes in, 64 bits out; the same bytes in the same pieces give the same value.
class Digest {
 public:
  explicit Digest(std::uint64_t seed = 0x6c6d736872696e6bull) : h_(seed) {}
  void add(const void* data, std::size_t bytes) {
    const auto* p = static_cast<const unsigned char*>(data);
    std::size_t i = 0;
    for (; i + 8 <= bytes; i += 8) {
      std::uint64_t w;
      std::memcpy(&w, p + i, 8);
      mix(w);
    }
    std::uint64_t tail = 0;
    for (std::size_t k = 0; i + k < bytes; ++k) tail |= std::uint64_t(p[i + k]) << (8 * k);
    mix(tail ^ (std::uint64_t(bytes) << 56));
    length_ += bytes;
  }
  /// A dense matrix or vector: its shape, then its values' bytes (contiguous, no copy).
  template <class Derived>
  void add(const Eigen::PlainObjectBase<Derived>& m) {
    const std::int64_t shape[2] = {std::int64_t(m.rows()), std::int64_t(m.cols())};
    add(shape, sizeof shape);
    add(m.data(), std::size_t(m.size()) * sizeof(typename Derived::Scalar));
  }
  void add(std::int64_t v) { add(&v, sizeof v); }
  std::uint64_t value() const {
    std::uint64_t z = h_ ^ length_;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }

 private:
  void mix(std::uint64_t w) {
    h_ ^= w * 0x9e3779b97f4a7c15ull;
    h_ = ((h_ << 31) | (h_ >> 33)) * 0xff51afd7ed558ccdull;
  }
  std::uint64_t h_;
  std::uint64_t length_ = 0;
};

LMSHRINK_NAMESPACE_END
