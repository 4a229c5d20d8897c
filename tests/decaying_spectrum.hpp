#pragma once
// A seeded matrix with a known spectrum, for test_svd_init and bench_svd (kept out of
// test_helpers.hpp so that other test files do not instantiate the QR).
#include <Eigen/QR>
#include <cmath>
#include <cstdint>

#include "test_helpers.hpp"

namespace test {

// A (rows, cols) matrix with singular values decay^k, random orthogonal factors.
inline Eigen::MatrixXd decaying_spectrum(lmshrink::Index rows, lmshrink::Index cols, double decay,
                                         std::uint64_t seed) {
  const lmshrink::Index k = std::min(rows, cols);
  const Eigen::MatrixXd a = random_matrix<double>(rows, k, seed);
  const Eigen::MatrixXd b = random_matrix<double>(cols, k, seed + 1);
  const Eigen::MatrixXd qa = Eigen::HouseholderQR<Eigen::MatrixXd>(a).householderQ() *
                             Eigen::MatrixXd::Identity(rows, k);
  const Eigen::MatrixXd qb = Eigen::HouseholderQR<Eigen::MatrixXd>(b).householderQ() *
                             Eigen::MatrixXd::Identity(cols, k);
  Eigen::VectorXd s(k);
  for (lmshrink::Index i = 0; i < k; ++i) s[i] = std::pow(decay, static_cast<double>(i));
  return qa * s.asDiagonal() * qb.transpose();
}

}  // namespace test
