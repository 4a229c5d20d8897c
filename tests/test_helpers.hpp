#pragma once
// Helpers shared by the tests: seeded random matrices and finite differences.

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>
#include <lmshrink/random.hpp>
#include <lmshrink/types.hpp>

namespace test {

using lmshrink::Index;
template <class S>
using Matrix = lmshrink::RowMatrix<S>;

template <class S>
Matrix<S> random_matrix(Index rows, Index cols, std::uint64_t seed, double scale = 1.0) {
  lmshrink::SplitMix64 rng(seed);
  Matrix<S> m(rows, cols);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<S>(scale * rng.normal());
  return m;
}

/// Central difference of f with respect to *p.
inline double central_difference(double* p, double h, const std::function<double()>& f) {
  const double saved = *p;
  *p = saved + h;
  const double up = f();
  *p = saved - h;
  const double down = f();
  *p = saved;
  return (up - down) / (2 * h);
}

/// The uint16 little-endian token ids of a .u16 file (empty when it cannot be read).
inline std::vector<int> read_u16(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  const std::string b = s.str();
  std::vector<int> ids(b.size() / 2);
  for (std::size_t i = 0; i < ids.size(); ++i)
    ids[i] = static_cast<unsigned char>(b[2 * i]) | static_cast<unsigned char>(b[2 * i + 1]) << 8;
  return ids;
}

}  // namespace test
