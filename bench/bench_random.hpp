#pragma once
// Seeded random inputs of the compact benchmarks (bench_compact, bench_pack_forms).

#include <algorithm>
#include <numeric>
#include <vector>

#include <lmshrink/random.hpp>
#include <lmshrink/types.hpp>

namespace bench {

/// (r, c) draws of N(0, 1) from `seed`, row by row.
inline lmshrink::RowMatrix<float> random_normal(lmshrink::Index r, lmshrink::Index c, std::uint64_t seed) {
  lmshrink::SplitMix64 rng(seed);
  lmshrink::RowMatrix<float> m(r, c);
  for (lmshrink::Index i = 0; i < m.size(); ++i) m.data()[i] = float(rng.normal());
  return m;
}

/// `count` distinct indices of [0, n), sorted.
inline std::vector<lmshrink::Index> pick(lmshrink::Index n, lmshrink::Index count, std::uint64_t seed) {
  using lmshrink::Index;
  std::vector<Index> all(static_cast<std::size_t>(n));
  std::iota(all.begin(), all.end(), Index(0));
  lmshrink::SplitMix64 rng(seed);
  for (Index i = n - 1; i > 0; --i)
    std::swap(all[std::size_t(i)], all[std::size_t(Index(rng.uniform() * double(i + 1)) % (i + 1))]);
  all.resize(static_cast<std::size_t>(count));
  std::sort(all.begin(), all.end());
  return all;
}

}  // namespace bench
