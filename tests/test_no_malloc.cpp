// Proves that forward and backward (and the compact forward, and the distillation losses)
// allocate nothing once the caches and gradients are sized.
// Eigen counts every heap allocation it makes under EIGEN_RUNTIME_NO_MALLOC; eigen_assert is
// made to throw so the check works in Release builds too. Allocations through operator new
// (standard containers) are counted by the replacement below.
#include <atomic>
#include <cstdlib>
#include <new>
#include <stdexcept>

namespace {
std::atomic<long> g_new_calls{0};
void* counted_alloc(std::size_t n) {
  ++g_new_calls;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* counted_aligned_alloc(std::size_t n, std::align_val_t al) {
  ++g_new_calls;
  const auto a = static_cast<std::size_t>(al);
  const std::size_t size = ((n == 0 ? 1 : n) + a - 1) / a * a;  // aligned_alloc wants a multiple
  if (void* p = std::aligned_alloc(a, size)) return p;
  throw std::bad_alloc();
}
}  // namespace
// Every form of operator new and delete, so the counting is complete and every block is freed by
// the allocator that made it (sanitizers check the pairing).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"  // malloc/free pair by construction
#endif
void* operator new(std::size_t n) { return counted_alloc(n); }
void* operator new[](std::size_t n) { return counted_alloc(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try { return counted_alloc(n); } catch (...) { return nullptr; }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  try { return counted_alloc(n); } catch (...) { return nullptr; }
}
void* operator new(std::size_t n, std::align_val_t a) { return counted_aligned_alloc(n, a); }
void* operator new[](std::size_t n, std::align_val_t a) { return counted_aligned_alloc(n, a); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

#define EIGEN_RUNTIME_NO_MALLOC
#define eigen_assert(x) \
  do {                  \
    if (!(x)) throw std::logic_error("eigen_assert failed: " #x); \
  } while (false)

#include <catch2/catch.hpp>
#include <lmshrink/compact.hpp>
#include <lmshrink/distillation.hpp>
#include <lmshrink/low_rank_sparse_linear.hpp>

#include "test_helpers.hpp"

using lmshrink::Index;
using test::Matrix;

namespace {

struct NoMalloc {
  NoMalloc() { Eigen::internal::set_is_malloc_allowed(false); }
  ~NoMalloc() { Eigen::internal::set_is_malloc_allowed(true); }
};

template <class F>
bool allocates(F&& f) {
  const long before = g_new_calls.load();
  try {
    NoMalloc guard;
    f();
  } catch (const std::logic_error&) {
    return true;
  }
  return g_new_calls.load() != before;
}

}  // namespace

TEST_CASE("the no-malloc check itself detects an allocation", "[alloc]") {
  REQUIRE(allocates([] { Eigen::MatrixXf m(64, 64); m.setZero(); }));
  REQUIRE(allocates([] { std::vector<int> v(3); (void)v; }));
  REQUIRE_FALSE(allocates([] {}));
}

TEMPLATE_TEST_CASE("forward and backward allocate nothing once sized", "[alloc]", float, double) {
  using S = TestType;
  // stories260K shapes (64x64, 32x64, 172x64, 64x172), and odd ones, at the cache's capacity and
  // below it, with and without masks.
  const auto shape = GENERATE(std::make_tuple(64, 64, 8, 64), std::make_tuple(32, 64, 4, 33),
                              std::make_tuple(172, 64, 16, 48), std::make_tuple(64, 172, 16, 48),
                              std::make_tuple(7, 5, 5, 3), std::make_tuple(13, 17, 1, 1));
  const Index out = std::get<0>(shape), in = std::get<1>(shape), rank = std::get<2>(shape),
              tokens = std::get<3>(shape);
  const bool bias = GENERATE(false, true);
  // masks 3: live rows of S that are all zero (the reference pruning mode's), which forward skips
  const int masks = GENERATE(0, 1, 2, 3);
  const auto form = GENERATE(lmshrink::ProductForm::automatic, lmshrink::ProductForm::factored,
                             lmshrink::ProductForm::merged);
  CAPTURE(out, in, rank, tokens, bias, masks, int(form));

  lmshrink::LowRankSparseLinear<S> layer(out, in, rank, bias);
  layer.set_product_form(form);
  layer.U() = test::random_matrix<S>(out, rank, 1);
  layer.V() = test::random_matrix<S>(rank, in, 2);
  layer.S() = test::random_matrix<S>(out, in, 3);
  if (masks == 3)
    for (Index i = 0; i < out; ++i)
      if (i % 4 == 1) layer.S().row(i).setZero();
  if (masks == 1 || masks == 2) {
    lmshrink::RowMask m(out);
    for (Index i = 0; i < out; ++i) m[i] = i % 4 != 2;
    layer.set_row_mask(m);
  }
  if (masks == 2) {
    lmshrink::ElementMask m(out, in);
    for (Index i = 0; i < m.size(); ++i) m.data()[i] = i % 5 != 0;
    layer.set_element_mask(m);
  }
  auto cache = layer.make_cache(tokens);
  auto grads = layer.make_gradients();
  const Matrix<S> x = test::random_matrix<S>(tokens, in, 4);
  const Matrix<S> dy = test::random_matrix<S>(tokens, out, 5);
  Matrix<S> y(tokens, out), dx = Matrix<S>::Zero(tokens, in);
  const Index fewer = std::max<Index>(1, tokens / 3);

  REQUIRE_FALSE(allocates([&] {
    layer.forward(x, y, cache);
    grads.set_zero();
    layer.backward(x, dy, cache, dx, grads);
    layer.backward(x, dy, cache, grads);
    // A smaller batch through the pointer overloads, on the same cache.
    layer.forward(x.data(), fewer, in, y.data(), out, cache);
    layer.backward(x.data(), fewer, in, dy.data(), out, cache, dx.data(), in, grads);
    layer.zero_masked(grads.S);
  }));
}

TEMPLATE_TEST_CASE("the compact forward allocates nothing once its workspace is sized", "[alloc]",
                   float, double) {
  using S = TestType;
  const auto format = GENERATE(lmshrink::SparseFormat::rows, lmshrink::SparseFormat::csr);
  const Index rank = GENERATE(Index(0), Index(12));
  lmshrink::LowRankSparseLinear<S> layer(172, 64, rank, true);
  layer.U() = test::random_matrix<S>(172, rank, 1);
  layer.V() = test::random_matrix<S>(rank, 64, 2);
  layer.S() = test::random_matrix<S>(172, 64, 3);
  lmshrink::RowMask m(172);
  for (Index i = 0; i < 172; ++i) m[i] = i % 3 == 0;
  layer.set_row_mask(m);
  const auto compact = lmshrink::CompactLinear<S>::pack(layer, {format});
  const Index tokens = 300;  // more than one token block
  auto ws = compact.make_workspace(tokens);
  const Matrix<S> x = test::random_matrix<S>(tokens, 64, 4);
  Matrix<S> y(tokens, 172);
  REQUIRE_FALSE(allocates([&] {
    compact.forward(x, y, ws);
    compact.forward(x.topRows(1), y.topRows(1), ws);
    compact.forward(x.data(), 17, 64, y.data(), 172, ws);
  }));
  // A workspace sized for fewer tokens grows, which the check sees.
  auto small = compact.make_workspace(0);
  if (rank > 0 || format == lmshrink::SparseFormat::csr)
    REQUIRE(allocates([&] { compact.forward(x, y, small); }));
}

TEST_CASE("vocabulary-sized losses allocate nothing, even at GPT-2's 50,257 tokens", "[alloc]") {
  const Index tokens = 4, vocab = 50257, hidden = 64;
  const Matrix<float> s = test::random_matrix<float>(tokens, vocab, 1);
  const Matrix<float> t = test::random_matrix<float>(tokens, vocab, 2);
  const Matrix<float> hs = test::random_matrix<float>(tokens, hidden, 3);
  const Matrix<float> ht = test::random_matrix<float>(tokens, hidden, 4);
  Eigen::VectorXi y(tokens);
  y << 0, 50256, 17, 1234;
  lmshrink::RowMask mask = lmshrink::RowMask::Ones(tokens);
  mask[1] = 0;
  Matrix<float> g(tokens, vocab), gh(tokens, hidden);
  lmshrink::LossOptions o;
  o.temperature = 2;
  o.mask = &mask;
  double sum = 0;
  REQUIRE_FALSE(allocates([&] {
    sum += lmshrink::kl_divergence<float>(s, t, g, o);
    sum += lmshrink::reverse_kl_divergence<float>(s, t, g, o);
    sum += lmshrink::jsd_divergence<float>(s, t, g, 0.5, o);
    sum += lmshrink::cross_entropy<float>(s, y, g, o);
    sum += lmshrink::soft_hard_loss<float>(s, t, y, g, 0.5, o);
    sum += lmshrink::mse_loss<float>(s, t, g, o);
    sum += lmshrink::distilgpt2_loss<float>(s, t, y, hs, ht, g, gh, {}, o).total;
    sum += lmshrink::annealing_kd_loss<float>({10.0, 100}, 5, s, t, y, g, o);
  }));
  REQUIRE(std::isfinite(sum));
}
