// The model tier's shared ops (lmshrink/models/): every backward against central differences in
// double, the KV-cache step against the whole-sequence attention, RoPE's table growth and
// inverse, scoring against a hand computation, and bad input.
#include <lmshrink/models/rope.hpp>
#include <catch2/catch.hpp>
#include <cmath>
#include <lmshrink/models/activations.hpp>
#include <lmshrink/models/attention.hpp>
#include <lmshrink/models/norms.hpp>
#include <lmshrink/models/scoring.hpp>
#include <vector>

#include "test_helpers.hpp"

namespace models = lmshrink::models;
using lmshrink::Index;
using MatD = test::Matrix<double>;
using VecD = lmshrink::Vector<double>;

namespace {

VecD random_vector(Index n, std::uint64_t seed, double scale = 1.0) {
  return test::random_matrix<double>(n, 1, seed, scale).col(0);
}

// Central differences of f at every entry of m (or of the first `limit`), against `analytic`.
void check_gradient(double* data, Index size, const std::function<double()>& f, const double* analytic,
                    double tolerance = 1e-7) {
  for (Index i = 0; i < size; ++i) {
    const double numeric = test::central_difference(data + i, 1e-6, f);
    INFO("entry " << i << ": analytic " << analytic[i] << ", numeric " << numeric);
    CHECK(std::abs(analytic[i] - numeric) <= tolerance * (1 + std::abs(numeric)));
  }
}

}  // namespace

TEST_CASE("rms_norm backward matches finite differences and accumulates", "[models][norms]") {
  MatD x = test::random_matrix<double>(4, 6, 1);
  VecD g = random_vector(6, 2);
  const MatD dy = test::random_matrix<double>(4, 6, 3);
  MatD y(4, 6);
  VecD r(4);
  const auto loss = [&] {
    models::rms_norm_forward<double>(x, g, 1e-5, y, r);
    return dy.cwiseProduct(y).sum();
  };
  loss();
  const MatD dx0 = test::random_matrix<double>(4, 6, 4);  // accumulated onto
  const VecD dg0 = random_vector(6, 5);
  MatD dx = dx0;
  VecD dg = dg0;
  models::rms_norm_backward<double>(x, g, r, dy, dx, dg);
  const MatD dx_only = dx - dx0;
  const VecD dg_only = dg - dg0;
  check_gradient(x.data(), x.size(), loss, dx_only.data());
  check_gradient(g.data(), g.size(), loss, dg_only.data());
  // The forward itself: row 0 against the formula.
  loss();
  const double rms = std::sqrt(x.row(0).squaredNorm() / 6 + 1e-5);
  CHECK((y.row(0) - x.row(0).cwiseProduct(g.transpose()) / rms).norm() < 1e-14);
}

TEST_CASE("layer_norm backward matches finite differences and accumulates", "[models][norms]") {
  MatD x = test::random_matrix<double>(3, 7, 11, 2.0);
  VecD w = random_vector(7, 12), b = random_vector(7, 13);
  const MatD dy = test::random_matrix<double>(3, 7, 14);
  MatD xhat(3, 7), y(3, 7);
  VecD r(3);
  const auto loss = [&] {
    models::layer_norm_forward<double>(x, w, b, 1e-5, xhat, r, y);
    return dy.cwiseProduct(y).sum();
  };
  loss();
  MatD dx = MatD::Constant(3, 7, 0.5);
  VecD dw = VecD::Constant(7, 0.25), db = VecD::Constant(7, -1.0);
  models::layer_norm_backward<double>(xhat, r, w, dy, dx, dw, db);
  const MatD dx_only = dx.array() - 0.5;
  const VecD dw_only = dw.array() - 0.25, db_only = db.array() + 1.0;
  check_gradient(x.data(), x.size(), loss, dx_only.data());
  check_gradient(w.data(), w.size(), loss, dw_only.data());
  check_gradient(b.data(), b.size(), loss, db_only.data());
  loss();
  const double mean = x.row(1).mean();
  const double sd = std::sqrt((x.row(1).array() - mean).square().mean() + 1e-5);
  CHECK((y.row(1).transpose() - (((x.row(1).transpose().array() - mean) / sd) * w.array() + b.array()).matrix())
            .norm() < 1e-13);
}

TEST_CASE("norms name the shapes they expected", "[models][norms][errors]") {
  MatD x = test::random_matrix<double>(2, 4, 1), y(2, 4);
  VecD r(2), g = VecD::Ones(3);
  CHECK_THROWS_WITH(models::rms_norm_forward<double>(x, g, 1e-5, y, r),
                    Catch::Contains("gain has 3 entries but 4 were expected"));
  VecD g4 = VecD::Ones(4);
  MatD y_bad(3, 4);
  CHECK_THROWS_AS(models::rms_norm_forward<double>(x, g4, 1e-5, y_bad, r), lmshrink::shape_error);
  MatD xhat(2, 4);
  VecD b3 = VecD::Zero(3);
  CHECK_THROWS_WITH(models::layer_norm_forward<double>(x, g4, b3, 1e-5, xhat, r, y),
                    Catch::Contains("bias has 3 entries but 4 were expected"));
}

TEST_CASE("RoPE rotates pairs by position, grows its table and its inverse is the backward", "[models][rope]") {
  models::RopeTable<double> rope(64, 4, 10000.0);
  CHECK(rope.covered() == 0);
  MatD m = test::random_matrix<double>(2 * 5, 8, 21);  // two sequences of 5 tokens, 2 heads of 4
  const MatD before = m;
  rope.rotate_rows(m, 5, +1);
  CHECK(rope.covered() == 5);
  // Position 0 is the identity; a rotation keeps every pair's length.
  CHECK((m.row(0) - before.row(0)).norm() == 0);
  CHECK((m.row(5) - before.row(5)).norm() == 0);
  for (Index row = 0; row < m.rows(); ++row)
    for (Index i = 0; i < m.cols(); i += 2)
      CHECK(std::hypot(m(row, i), m(row, i + 1)) == Approx(std::hypot(before(row, i), before(row, i + 1))));
  // Pair j = 1 of a head at position 3 turns by 3·10000^(−2/4) = 0.03 (angles in float).
  const double angle = double(3.0f * (1.0f / std::pow(10000.0f, 0.5f)));
  CHECK(m(3, 2) == Approx(before(3, 2) * std::cos(angle) - before(3, 3) * std::sin(angle)).epsilon(1e-6));
  // The transpose undoes it (to float precision: the angles' cos and sin are floats), and is
  // exactly the gradient of Σ dy∘rotate(x).
  rope.rotate_rows(m, 5, -1);
  CHECK((m - before).norm() < 1e-6 * before.norm());
  const MatD dy = test::random_matrix<double>(10, 8, 22);
  MatD x = before;
  const auto loss = [&] {
    MatD r = x;
    rope.rotate_rows(r, 5, +1);
    return dy.cwiseProduct(r).sum();
  };
  MatD dx = dy;
  rope.rotate_rows(dx, 5, -1);
  check_gradient(x.data(), x.size(), loss, dx.data());
  // The table grows by doubling up to the context, and refuses positions beyond it.
  rope.cover(11);
  CHECK(rope.covered() == 11);
  rope.cover(12);
  CHECK(rope.covered() == 22);
  rope.cover(64);
  CHECK(rope.covered() == 64);
  CHECK_THROWS_WITH(rope.cover(65), Catch::Contains("position 64 is beyond the model's context of 64"));
  MatD odd(4, 6);
  CHECK_THROWS_WITH(rope.rotate_rows(odd, 4, +1), Catch::Contains("width 6 is not a whole number of heads of 4"));
  CHECK_THROWS_WITH(rope.rotate_rows(m, 3, +1), Catch::Contains("10 rows are not whole sequences of 3 tokens"));
  CHECK_THROWS_AS(models::RopeTable<float>(8, 3, 10000.0), lmshrink::value_error);
}

TEST_CASE("RoPE scaling: linear and Llama 3's frequencies equal the published formula in double", "[models][rope]") {
  // Llama 3.1's constants: theta 500000, head size 128, factor 8, frequency factors 1 and 4,
  // original context 8192. The reference follows Hugging Face's _compute_llama3_parameters,
  // written here in double.
  const int hs = 128;
  const double theta = 500000, factor = 8, low = 1, high = 4, original = 8192, pi = 3.14159265358979323846;
  lmshrink::RopeScaling llama3;
  llama3.type = "llama3";
  llama3.factor = factor;
  llama3.low_freq_factor = low;
  llama3.high_freq_factor = high;
  llama3.original_max_positions = 8192;
  int kept = 0, divided = 0, blended = 0;
  for (int j = 0; j < hs / 2; ++j) {
    const double f = 1.0 / std::pow(theta, 2.0 * j / hs);
    const double wavelength = 2 * pi / f;
    double want = f;
    if (wavelength > original / low) {
      want = f / factor;
      ++divided;
    } else if (wavelength >= original / high) {
      const double smooth = (original / wavelength - low) / (high - low);
      want = (1 - smooth) * f / factor + smooth * f;
      ++blended;
    } else {
      ++kept;
    }
    const float got = models::scaled_rope_frequency(float(f), llama3);
    INFO("pair " << j);
    CHECK(double(got) == Approx(want).epsilon(2e-6));
  }
  CHECK(kept > 0);  // every regime occurs at these constants
  CHECK(divided > 0);
  CHECK(blended > 0);
  lmshrink::RopeScaling linear;
  linear.type = "linear";
  linear.factor = 4;
  CHECK(models::scaled_rope_frequency(0.5f, linear) == 0.125f);
  CHECK(models::scaled_rope_frequency(0.5f, lmshrink::RopeScaling{}) == 0.5f);
  // The table turns pair j at position p by p·scaled(f_j): linear scaling by 4 at position 8
  // is the unscaled rotation at position 2.
  models::RopeTable<double> scaled(64, 4, 10000.0, linear), plain(64, 4, 10000.0);
  const MatD x = test::random_matrix<double>(1, 4, 23);
  MatD a = x, b = x;
  scaled.cover(9);
  plain.cover(3);
  scaled.rotate(a.data(), 4, 8);
  plain.rotate(b.data(), 4, 2);
  CHECK((a - b).norm() < 1e-6 * x.norm());
}

TEST_CASE("SwiGLU and GELU backwards match finite differences", "[models][activations]") {
  MatD a = test::random_matrix<double>(3, 5, 31, 2.0), b = test::random_matrix<double>(3, 5, 32);
  const MatD dh = test::random_matrix<double>(3, 5, 33);
  MatD h(3, 5);
  const auto swiglu = [&] {
    models::swiglu_forward<double>(a, b, h);
    return dh.cwiseProduct(h).sum();
  };
  swiglu();
  CHECK(h(1, 2) == Approx(a(1, 2) / (1 + std::exp(-a(1, 2))) * b(1, 2)).epsilon(1e-14));
  MatD da(3, 5), db(3, 5);
  models::swiglu_backward<double>(a, b, dh, da, db);
  check_gradient(a.data(), a.size(), swiglu, da.data());
  check_gradient(b.data(), b.size(), swiglu, db.data());

  MatD x = test::random_matrix<double>(4, 6, 34, 2.0), g(4, 6);
  const MatD dg = test::random_matrix<double>(4, 6, 35);
  const auto gelu = [&] {
    models::gelu_forward<double>(x, g);
    return dg.cwiseProduct(g).sum();
  };
  gelu();
  // gelu(1) with the tanh approximation (PyTorch's gelu(approximate="tanh")).
  CHECK(models::gelu_tanh(1.0) == Approx(0.8411919906082768).epsilon(1e-15));
  MatD dx(4, 6);
  models::gelu_backward<double>(x, dg, dx);
  check_gradient(x.data(), x.size(), gelu, dx.data());
}

TEST_CASE("causal attention backward matches finite differences, with grouped-query heads", "[models][attention]") {
  const models::AttentionShape s{2, 5, 4, 2, 3};  // 2 sequences of 5 tokens, 4 heads sharing 2 kv heads
  MatD q = test::random_matrix<double>(10, 12, 41), k = test::random_matrix<double>(10, 6, 42),
       v = test::random_matrix<double>(10, 6, 43);
  const MatD datt = test::random_matrix<double>(10, 12, 44);
  std::vector<MatD> p(8);
  MatD att(10, 12);
  const auto loss = [&] {
    models::causal_attention_forward<double>(s, q, k, v, p, att);
    return datt.cwiseProduct(att).sum();
  };
  loss();
  MatD dp, dq(10, 12), dk = MatD::Constant(10, 6, 9.0), dv = MatD::Constant(10, 6, 9.0);
  models::causal_attention_backward<double>(s, q, k, v, p, datt, dp, dq, dk, dv);
  check_gradient(q.data(), q.size(), loss, dq.data());
  check_gradient(k.data(), k.size(), loss, dk.data());
  check_gradient(v.data(), v.size(), loss, dv.data());
  // Causality: the first token of each sequence attends only to itself.
  loss();
  CHECK((att.block(0, 0, 1, 3) - v.block(0, 0, 1, 3)).norm() < 1e-14);
  CHECK((att.block(5, 9, 1, 3) - v.block(5, 3, 1, 3)).norm() < 1e-14);
  // A single reused probability matrix gives the same output (scoring), but no backward.
  std::vector<MatD> one(1);
  MatD att_one(10, 12);
  models::causal_attention_forward<double>(s, q, k, v, one, att_one);
  CHECK(att_one == att);
  CHECK_THROWS_WITH(models::causal_attention_backward<double>(s, q, k, v, one, datt, dp, dq, dk, dv),
                    Catch::Contains("p has 1 matrices but the backward needs the 8"));
  std::vector<MatD> three(3);
  CHECK_THROWS_AS(models::causal_attention_forward<double>(s, q, k, v, three, att), lmshrink::shape_error);
  const models::AttentionShape bad{2, 5, 4, 3, 3};
  CHECK_THROWS_WITH(models::causal_attention_forward<double>(bad, q, k, v, p, att),
                    Catch::Contains("heads a multiple of kv_heads"));
  MatD k_bad(10, 5);
  CHECK_THROWS_WITH(models::causal_attention_forward<double>(s, q, k_bad, v, p, att),
                    Catch::Contains("k is 10x5 but 10x6 was expected"));
}

TEST_CASE("blocked attention equals the kept-probability attention, forward and backward, and finite differences",
          "[models][attention]") {
  // 150 positions: two full blocks of 64 and a partial one, so every block case is reached.
  const models::AttentionShape s{2, 150, 4, 2, 3};
  const int rows = s.batch * s.n;
  MatD q = test::random_matrix<double>(rows, 12, 51, 2.0), k = test::random_matrix<double>(rows, 6, 52, 2.0),
       v = test::random_matrix<double>(rows, 6, 53);
  const MatD datt = test::random_matrix<double>(rows, 12, 54);
  std::vector<MatD> p(std::size_t(s.batch * s.heads));
  MatD want(rows, 12), got(rows, 12), lse;
  models::causal_attention_forward<double>(s, q, k, v, p, want);
  models::BlockedAttention<double> blocked;
  blocked.forward(s, q, k, v, lse, got);
  CHECK((got - want).cwiseAbs().maxCoeff() < 1e-13);
  CHECK(lse.rows() == 8);
  CHECK(lse.cols() == 150);
  MatD dp, dq_want(rows, 12), dk_want(rows, 6), dv_want(rows, 6);
  models::causal_attention_backward<double>(s, q, k, v, p, datt, dp, dq_want, dk_want, dv_want);
  MatD dq = MatD::Constant(rows, 12, 9.0), dk = MatD::Constant(rows, 6, 9.0), dv = MatD::Constant(rows, 6, 9.0);
  blocked.backward(s, q, k, v, got, lse, datt, dq, dk, dv);
  CHECK((dq - dq_want).cwiseAbs().maxCoeff() < 1e-12);
  CHECK((dk - dk_want).cwiseAbs().maxCoeff() < 1e-12);
  CHECK((dv - dv_want).cwiseAbs().maxCoeff() < 1e-12);
  // Central differences on entries spread over every block of q, k and v.
  const auto loss = [&] {
    MatD att(rows, 12), l;
    models::BlockedAttention<double> b;
    b.forward(s, q, k, v, l, att);
    return datt.cwiseProduct(att).sum();
  };
  for (const auto& [m, d] : {std::pair<MatD*, MatD*>{&q, &dq}, {&k, &dk}, {&v, &dv}})
    for (Index i = 0; i < m->size(); i += 97) {
      const double numeric = test::central_difference(m->data() + i, 1e-6, loss);
      INFO("entry " << i << ": analytic " << d->data()[i] << ", numeric " << numeric);
      CHECK(std::abs(d->data()[i] - numeric) <= 1e-7 * (1 + std::abs(numeric)));
    }
  // float: within float rounding of the double result.
  const lmshrink::RowMatrix<float> qf = q.cast<float>(), kf = k.cast<float>(), vf = v.cast<float>();
  lmshrink::RowMatrix<float> attf(rows, 12), lsef;
  models::BlockedAttention<float> bf;
  bf.forward(s, qf, kf, vf, lsef, attf);
  CHECK((attf.cast<double>() - want).cwiseAbs().maxCoeff() < 1e-5);
  MatD bad_lse(3, 150);
  CHECK_THROWS_WITH(blocked.backward(s, q, k, v, got, bad_lse, datt, dq, dk, dv), Catch::Contains("lse is 3x150 but 8x150 was expected"));
}

namespace {
// Attention by its definition, one query at a time: the reference the panelled kernels must equal.
MatD naive_attention(const models::AttentionShape& s, const MatD& q, const MatD& k, const MatD& v) {
  const int hs = s.head_size, group = s.heads / s.kv_heads;
  MatD att = MatD::Zero(q.rows(), q.cols());
  for (int b = 0; b < s.batch; ++b)
    for (int h = 0; h < s.heads; ++h)
      for (int i = 0; i < s.n; ++i) {
        std::vector<double> w(std::size_t(i) + 1);
        double max = -1e300, sum = 0;
        for (int j = 0; j <= i; ++j) {
          double dot = 0;
          for (int d = 0; d < hs; ++d) dot += q(b * s.n + i, h * hs + d) * k(b * s.n + j, (h / group) * hs + d);
          w[std::size_t(j)] = dot / std::sqrt(double(hs));
          max = std::max(max, w[std::size_t(j)]);
        }
        for (double& x : w) sum += (x = std::exp(x - max));
        for (int j = 0; j <= i; ++j)
          for (int d = 0; d < hs; ++d)
            att(b * s.n + i, h * hs + d) += w[std::size_t(j)] / sum * v(b * s.n + j, (h / group) * hs + d);
      }
  return att;
}
}  // namespace

TEST_CASE("the KV-cache step gives the whole-sequence attention row by row", "[models][attention]") {
  // Head size 3 takes the matrix-vector path, 8 and 16 the small-head kernels; 37 positions
  // cross the kernels' 16-position panels and six growths of the cache.
  const int n = 37, heads = 4, kv_heads = 2, layers = 2;
  for (const int hs : {3, 8, 16}) {
    INFO("head size " << hs);
    const models::AttentionShape s{1, n, heads, kv_heads, hs};
    for (int layer = 0; layer < layers; ++layer) {
      const MatD q = test::random_matrix<double>(n, heads * hs, 51 + layer),
                 k = test::random_matrix<double>(n, kv_heads * hs, 61 + layer),
                 v = test::random_matrix<double>(n, kv_heads * hs, 71 + layer);
      const MatD want = naive_attention(s, q, k, v);
      models::KvCache<double> cache(layers, 64, heads, kv_heads, hs);
      CHECK(cache.capacity() == 0);
      VecD out(heads * hs);
      for (int pos = 0; pos < n; ++pos) {
        cache.attend(layer, pos, q.row(pos).data(), k.row(pos).data(), v.row(pos).data(), out.data());
        CHECK((out.transpose() - want.row(pos)).norm() < 1e-13);  // across every growth of the cache
      }
      CHECK(cache.capacity() == 64);  // 1, 2, 4, ..., 64: memory for the positions used
      // float: within float rounding of the double result.
      const lmshrink::RowMatrix<float> qf = q.cast<float>(), kf = k.cast<float>(), vf = v.cast<float>();
      models::KvCache<float> cache_f(layers, 64, heads, kv_heads, hs);
      lmshrink::Vector<float> out_f(heads * hs);
      for (int pos = 0; pos < n; ++pos) {
        cache_f.attend(layer, pos, qf.row(pos).data(), kf.row(pos).data(), vf.row(pos).data(), out_f.data());
        CHECK((out_f.cast<double>().transpose() - want.row(pos)).cwiseAbs().maxCoeff() < 1e-5);
      }
      // A context of 2^20 positions costs nothing until it is used.
      models::KvCache<double> huge(layers, 1 << 20, heads, kv_heads, hs);
      huge.attend(layer, 0, q.data(), k.data(), v.data(), out.data());
      CHECK(huge.capacity() == 1);
      CHECK_THROWS_WITH(cache.attend(layer, 64, q.data(), k.data(), v.data(), out.data()),
                        Catch::Contains("layer 0") || Catch::Contains("position 64"));
    }
  }
}

TEST_CASE("score_logits is the mean NLL of a double log-softmax and counts top-1", "[models][scoring]") {
  test::Matrix<float> logits(2, 3);
  logits << 1.0f, 2.0f, 3.0f, 0.5f, 0.5f, -1.0f;
  const int targets[2] = {2, 0};
  const auto s = models::score_logits<float>(logits, targets);
  const double nll0 = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)) - 3.0;
  const double nll1 = std::log(2 * std::exp(0.5) + std::exp(-1.0)) - 0.5;
  CHECK(s.nll_sum == Approx(nll0 + nll1).epsilon(1e-12));
  CHECK(s.tokens == 2);
  CHECK(s.top1 == 2);  // row 1's tie goes to the first largest logit, 0
  const int bad[2] = {2, 3};
  CHECK_THROWS_WITH(models::score_logits<float>(logits, bad), Catch::Contains("target 3 at 1 is outside [0, 3)"));
}

TEST_CASE("panelled causal attention equals attention by its definition and finite differences past one panel",
          "[models][attention]") {
  // 150 positions: panels of 64, 64 and 22 query rows, each stopping at its last query's key.
  const models::AttentionShape s{2, 150, 4, 2, 3};
  const int rows = s.batch * s.n;
  MatD q = test::random_matrix<double>(rows, 12, 61, 2.0), k = test::random_matrix<double>(rows, 6, 62, 2.0),
       v = test::random_matrix<double>(rows, 6, 63);
  const MatD datt = test::random_matrix<double>(rows, 12, 64);
  std::vector<MatD> p(std::size_t(s.batch * s.heads));
  MatD att(rows, 12);
  models::causal_attention_forward<double>(s, q, k, v, p, att);
  CHECK((att - naive_attention(s, q, k, v)).cwiseAbs().maxCoeff() < 1e-13);
  MatD dp, dq = MatD::Constant(rows, 12, 9.0), dk = MatD::Constant(rows, 6, 9.0), dv = MatD::Constant(rows, 6, 9.0);
  models::causal_attention_backward<double>(s, q, k, v, p, datt, dp, dq, dk, dv);
  const auto loss = [&] { return datt.cwiseProduct(naive_attention(s, q, k, v)).sum(); };
  for (const auto& [m, d] : {std::pair<MatD*, MatD*>{&q, &dq}, {&k, &dk}, {&v, &dv}})
    for (Index i = 0; i < m->size(); i += 89) {
      const double numeric = test::central_difference(m->data() + i, 1e-6, loss);
      INFO("entry " << i << ": analytic " << d->data()[i] << ", numeric " << numeric);
      CHECK(std::abs(d->data()[i] - numeric) <= 1e-7 * (1 + std::abs(numeric)));
    }
  // The probabilities of the last panel's last row: every key, summing to 1.
  CHECK(std::abs(p[0].row(149).sum() - 1) < 1e-13);
}

TEST_CASE("small-head attention kernels equal attention by its definition and finite differences",
          "[models][attention]") {
  // Head sizes 8 and 16 run the small_head kernels. 150 positions: panels of 64, 64 and 22 rows,
  // key counts that are not multiples of 16 (scalar tails), rows not a multiple of 4; grouped heads.
  const int hs = GENERATE(8, 16);
  CAPTURE(hs);
  REQUIRE(models::small_head::handles(hs));
  const models::AttentionShape s{2, 150, 4, 2, hs};
  const int rows = s.batch * s.n;
  MatD q = test::random_matrix<double>(rows, 4 * hs, 71, 2.0), k = test::random_matrix<double>(rows, 2 * hs, 72, 2.0),
       v = test::random_matrix<double>(rows, 2 * hs, 73);
  const MatD datt = test::random_matrix<double>(rows, 4 * hs, 74);
  std::vector<MatD> p(std::size_t(s.batch * s.heads));
  models::AttentionWorkspace<double> work;
  MatD att(rows, 4 * hs);
  models::causal_attention_forward<double>(s, q, k, v, p, att, work);
  CHECK((att - naive_attention(s, q, k, v)).cwiseAbs().maxCoeff() < 1e-13);
  // Scoring's one reused probability matrix gives the same output.
  std::vector<MatD> one(1);
  MatD att_one(rows, 4 * hs);
  models::causal_attention_forward<double>(s, q, k, v, one, att_one, work);
  CHECK(att_one == att);
  MatD dp, dq = MatD::Constant(rows, 4 * hs, 9.0), dk = MatD::Constant(rows, 2 * hs, 9.0),
           dv = MatD::Constant(rows, 2 * hs, 9.0);
  models::causal_attention_backward<double>(s, q, k, v, p, datt, dp, dq, dk, dv, work);
  // The blocked attention (its own GEMM path) agrees on every gradient.
  MatD lse, att_blocked(rows, 4 * hs), dq_b(rows, 4 * hs), dk_b(rows, 2 * hs), dv_b(rows, 2 * hs);
  models::BlockedAttention<double> blocked;
  blocked.forward(s, q, k, v, lse, att_blocked);
  blocked.backward(s, q, k, v, att_blocked, lse, datt, dq_b, dk_b, dv_b);
  CHECK((dq - dq_b).cwiseAbs().maxCoeff() < 1e-12);
  CHECK((dk - dk_b).cwiseAbs().maxCoeff() < 1e-12);
  CHECK((dv - dv_b).cwiseAbs().maxCoeff() < 1e-12);
  const auto loss = [&] { return datt.cwiseProduct(naive_attention(s, q, k, v)).sum(); };
  for (const auto& [m, d] : {std::pair<MatD*, MatD*>{&q, &dq}, {&k, &dk}, {&v, &dv}})
    for (Index i = 0; i < m->size(); i += 131) {
      // A step of 1e-5: the loss sums 300 rows, so 1e-6 leaves rounding of about 1e-7.
      const double numeric = test::central_difference(m->data() + i, 1e-5, loss);
      INFO("entry " << i << ": analytic " << d->data()[i] << ", numeric " << numeric);
      CHECK(std::abs(d->data()[i] - numeric) <= 1e-7 * (1 + std::abs(numeric)));
    }
  // Float agrees with double.
  using MatF = lmshrink::RowMatrix<float>;
  const MatF qf = q.cast<float>(), kf = k.cast<float>(), vf = v.cast<float>(), dattf = datt.cast<float>();
  std::vector<MatF> pf(p.size());
  models::AttentionWorkspace<float> workf;
  MatF attf(rows, 4 * hs), dpf, dqf(rows, 4 * hs), dkf(rows, 2 * hs), dvf(rows, 2 * hs);
  models::causal_attention_forward<float>(s, qf, kf, vf, pf, attf, workf);
  models::causal_attention_backward<float>(s, qf, kf, vf, pf, dattf, dpf, dqf, dkf, dvf, workf);
  CHECK((attf.cast<double>() - att).cwiseAbs().maxCoeff() < 1e-5);
  CHECK((dqf.cast<double>() - dq).cwiseAbs().maxCoeff() < 1e-4 * (1 + dq.cwiseAbs().maxCoeff()));
  CHECK((dkf.cast<double>() - dk).cwiseAbs().maxCoeff() < 1e-4 * (1 + dk.cwiseAbs().maxCoeff()));
  CHECK((dvf.cast<double>() - dv).cwiseAbs().maxCoeff() < 1e-4 * (1 + dv.cwiseAbs().maxCoeff()));
}
