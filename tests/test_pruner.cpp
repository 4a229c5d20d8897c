#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <lmshrink/optim.hpp>
#include <lmshrink/pruner.hpp>
#include <lmshrink/svd_init.hpp>
#include <vector>

#include "test_helpers.hpp"

using Catch::Matchers::Contains;
using lmshrink::Index;
using Layer = lmshrink::LowRankSparseLinear<double>;
using M = lmshrink::RowMatrix<double>;

namespace {

lmshrink::PrunerOptions options(lmshrink::MaskMode mode) {
  lmshrink::PrunerOptions o;
  o.schedule.total_steps = 60;
  o.schedule.initial_warmup = 5;
  o.schedule.final_warmup = 15;
  o.schedule.final_keep = 0.3;
  o.schedule.mask_interval = 5;
  o.importance.window = 5;
  o.importance.beta1 = 0.85;
  o.mode = mode;
  return o;
}

/// Two layers of different shapes fitted to fixed linear targets with SGD.
struct Setup {
  std::vector<Layer> layers;
  std::vector<Layer::Gradients> grads;
  std::vector<M> x, target;
  std::vector<Layer::Cache> caches;
  lmshrink::Sgd<double> sgd{lmshrink::SgdOptions{0.02, 0.0}};

  Setup() {
    const Index shapes[2][3] = {{16, 24, 3}, {10, 12, 2}};
    for (int l = 0; l < 2; ++l) {
      const Index out = shapes[l][0], in = shapes[l][1], r = shapes[l][2];
      Layer layer(out, in, r);
      layer.U() = test::random_matrix<double>(out, r, 10 + l, 0.3);
      layer.V() = test::random_matrix<double>(r, in, 20 + l, 0.3);
      layer.S() = test::random_matrix<double>(out, in, 30 + l, 0.3);
      layers.push_back(layer);
      x.push_back(test::random_matrix<double>(32, in, 40 + l));
      target.push_back(x.back() * test::random_matrix<double>(out, in, 50 + l).transpose());
    }
    for (auto& layer : layers) {
      grads.push_back(layer.make_gradients());
      caches.push_back(layer.make_cache(32));
    }
  }

  void train_step() {
    for (std::size_t l = 0; l < layers.size(); ++l) {
      M y(x[l].rows(), layers[l].out_features());
      layers[l].forward(x[l], y, caches[l]);
      const M dy = (y - target[l]) * (2.0 / static_cast<double>(y.rows()));
      grads[l].set_zero();
      layers[l].backward(x[l], dy, caches[l], grads[l]);
      sgd.step(layers[l], grads[l]);
    }
  }
};

/// An independent, loop-by-loop implementation of the reference decisions (rows, global).
struct Naive {
  double beta1;
  Index window;
  lmshrink::CubicSchedule schedule;
  std::vector<M> ema, wm;

  void update(const std::vector<Layer>& layers, const std::vector<Layer::Gradients>& grads,
              Index g) {
    if (ema.empty())
      for (const auto& l : layers) {
        ema.push_back(M::Zero(l.out_features(), l.in_features()));
        wm.push_back(M::Zero(l.out_features(), l.in_features()));
      }
    const Index local = g % window;
    for (std::size_t l = 0; l < layers.size(); ++l)
      for (Index i = 0; i < ema[l].rows(); ++i)
        for (Index j = 0; j < ema[l].cols(); ++j) {
          const double s = std::abs(layers[l].S()(i, j) * grads[l].S(i, j));
          if (local == 0) {
            ema[l](i, j) = beta1 * ema[l](i, j) + (1 - beta1) * wm[l](i, j);
            wm[l](i, j) = s;
          } else {
            wm[l](i, j) = (wm[l](i, j) * static_cast<double>(local) + s) / static_cast<double>(local + 1);
          }
        }
  }

  // keep ratio by the schedule formula written out again here
  std::pair<double, bool> sched(Index g) const {
    const auto& s = schedule;
    if (g <= s.initial_warmup) return {1.0, false};
    if (g > s.total_steps - s.final_warmup) return {s.final_keep, true};
    const double c = 1.0 - double(g - s.initial_warmup) /
                               double(s.total_steps - s.initial_warmup - s.final_warmup);
    return {s.final_keep + (1 - s.final_keep) * c * c * c, g % s.mask_interval == 0};
  }

  std::vector<std::vector<int>> decide(double keep) const {
    std::vector<double> expanded;  // every entry carries its row's mean score
    std::vector<std::vector<double>> row_score(ema.size());
    for (std::size_t l = 0; l < ema.size(); ++l)
      for (Index i = 0; i < ema[l].rows(); ++i) {
        double sum = 0;
        for (Index j = 0; j < ema[l].cols(); ++j) sum += ema[l](i, j);
        const double mean = sum / static_cast<double>(ema[l].cols());
        row_score[l].push_back(mean);
        for (Index j = 0; j < ema[l].cols(); ++j) expanded.push_back(mean);
      }
    const Index k = static_cast<Index>(std::floor(expanded.size() * (1 - keep)));
    std::vector<std::vector<int>> keep_rows(ema.size());
    std::sort(expanded.begin(), expanded.end());
    const double tau = k == 0 ? -1e300 : expanded[static_cast<std::size_t>(k - 1)];
    for (std::size_t l = 0; l < ema.size(); ++l)
      for (double s : row_score[l]) keep_rows[l].push_back(s < tau ? 0 : 1);
    return keep_rows;
  }
};

}  // namespace

TEST_CASE("every mask decision matches an independent naive implementation", "[pruner]") {
  Setup setup;
  const auto opt = options(lmshrink::MaskMode::reference);
  lmshrink::Pruner<double> pruner(opt);
  pruner.add("a", setup.layers[0], setup.grads[0]);
  pruner.add("b", setup.layers[1], setup.grads[1]);
  Naive naive{0.85, 5, opt.schedule, {}, {}};
  int mask_steps = 0, regrown = 0;
  std::vector<std::vector<int>> last(2);
  for (Index g = 0; g < 70; ++g) {
    setup.train_step();
    // Between mask steps the reference lets pruned rows regrow.
    for (int l = 0; l < 2; ++l)
      for (std::size_t i = 0; i < last[l].size(); ++i)
        if (!last[l][i] && setup.layers[l].S().row(Index(i)).norm() > 0) ++regrown;
    naive.update(setup.layers, setup.grads, g);
    const auto report = pruner.after_optimizer_step(g);
    const auto s = naive.sched(g);
    CAPTURE(g);
    REQUIRE(report.keep == Approx(s.first).epsilon(1e-15));
    REQUIRE(report.masked == s.second);
    for (int l = 0; l < 2; ++l) {
      REQUIRE((pruner.importance(l).ema() - naive.ema[l]).cwiseAbs().maxCoeff() <= 1e-12);
      REQUIRE((pruner.importance(l).window_mean() - naive.wm[l]).cwiseAbs().maxCoeff() <= 1e-12);
    }
    if (!s.second) continue;
    ++mask_steps;
    const auto expected = naive.decide(s.first);
    for (int l = 0; l < 2; ++l) {
      for (std::size_t i = 0; i < expected[l].size(); ++i) {
        REQUIRE(int(pruner.row_mask(l)[Index(i)]) == expected[l][i]);
        if (!expected[l][i]) REQUIRE(setup.layers[l].S().row(Index(i)).norm() == 0);
      }
      last[l] = expected[l];
    }
  }
  REQUIRE(mask_steps == 8 + 24);  // 10, 15, …, 45 (cubic phase), then every step 46..69
  REQUIRE(regrown > 0);           // reference mode does not mask gradients
  // At the end: about p_final of the pooled entries are live.
  const auto report = pruner.after_optimizer_step(70);
  REQUIRE(report.entries == 16 * 24 + 10 * 12);
  REQUIRE(report.live_entries <= Index(0.3 * report.entries) + 24);
  REQUIRE(report.live_entries >= Index(0.3 * report.entries) - 24);
}

TEST_CASE("persistent masks never regrow and only shrink", "[pruner]") {
  Setup setup;
  lmshrink::Pruner<double> pruner(options(lmshrink::MaskMode::persistent));
  pruner.add("a", setup.layers[0], setup.grads[0]);
  pruner.add("b", setup.layers[1], setup.grads[1]);
  std::vector<lmshrink::RowMask> previous = {pruner.row_mask(0), pruner.row_mask(1)};
  for (Index g = 0; g < 60; ++g) {
    setup.train_step();
    pruner.after_optimizer_step(g);
    for (int l = 0; l < 2; ++l) {
      const auto& mask = pruner.row_mask(l);
      REQUIRE(setup.layers[l].row_mask() == mask);  // pushed to the layer
      for (Index i = 0; i < mask.size(); ++i) {
        REQUIRE(mask[i] <= previous[l][i]);
        if (!mask[i]) REQUIRE(setup.layers[l].S().row(i).norm() == 0);
        // This step's backward ran under the previous mask: those rows got no gradient.
        if (!previous[l][i]) REQUIRE(setup.grads[l].S.row(i).norm() == 0);
      }
      previous[l] = mask;
    }
  }
  const auto acc = pruner.accounting(0.1);
  REQUIRE(acc.layers.size() == 2);
  REQUIRE(acc.layers[0].low_rank == 3 * 40);
  REQUIRE(acc.layers[1].low_rank == 2 * 22);
  REQUIRE(acc.dense == 16 * 24 + 10 * 12);
  REQUIRE(acc.live == acc.layers[0].live() + acc.layers[1].live());
  REQUIRE(acc.achieved_ratio == Approx(double(acc.live) / acc.dense));
  REQUIRE(acc.nominal_ratio == Approx(0.1 + 0.3));
  REQUIRE(acc.live - 164 <= Index(0.3 * acc.dense) + 24);
}

TEST_CASE("columns and elements granularity, per-layer thresholds", "[pruner]") {
  for (auto gran : {lmshrink::Granularity::columns, lmshrink::Granularity::elements}) {
    Setup setup;
    auto opt = options(lmshrink::MaskMode::persistent);
    opt.granularity = gran;
    opt.scope = lmshrink::ThresholdScope::per_layer;
    lmshrink::Pruner<double> pruner(opt);
    pruner.add("a", setup.layers[0], setup.grads[0]);
    pruner.add("b", setup.layers[1], setup.grads[1]);
    for (Index g = 0; g < 60; ++g) {
      setup.train_step();
      pruner.after_optimizer_step(g);
    }
    for (int l = 0; l < 2; ++l) {
      const auto& em = pruner.element_mask(l);
      const double live = double((em.array() != 0).count()) / double(em.size());
      CAPTURE(int(gran), l, live);
      REQUIRE(live <= 0.3 + 1e-9 + 1.0 / double(em.size()) * double(em.rows()));  // per layer
      REQUIRE(live > 0.15);
      REQUIRE(setup.layers[l].has_element_mask());
      if (gran == lmshrink::Granularity::columns)
        for (Index j = 0; j < em.cols(); ++j)  // whole columns
          REQUIRE((em.col(j).array() == em(0, j)).all());
    }
  }
}

TEST_CASE("a resumed pruner makes bit-identical decisions", "[pruner][state]") {
  const std::string path = LMSHRINK_TEST_TMP "/pruner_state.safetensors";
  auto opt = options(lmshrink::MaskMode::reference);
  opt.importance.beta2 = 0.7;  // exercise the uncertainty state too
  // Uninterrupted.
  Setup a;
  lmshrink::Pruner<double> pa(opt);
  pa.add("a", a.layers[0], a.grads[0]);
  pa.add("b", a.layers[1], a.grads[1]);
  for (Index g = 0; g < 50; ++g) {
    a.train_step();
    pa.after_optimizer_step(g);
  }
  // Interrupted at step 27 (mid-window), saved, and resumed into a new pruner.
  Setup b;
  {
    lmshrink::Pruner<double> first(opt);
    first.add("a", b.layers[0], b.grads[0]);
    first.add("b", b.layers[1], b.grads[1]);
    for (Index g = 0; g <= 27; ++g) {
      b.train_step();
      first.after_optimizer_step(g);
    }
    first.save(path);
  }
  lmshrink::Pruner<double> resumed(opt);
  resumed.add("a", b.layers[0], b.grads[0]);
  resumed.add("b", b.layers[1], b.grads[1]);
  resumed.load(path);
  REQUIRE(resumed.last_step() == 27);
  for (Index g = 28; g < 50; ++g) {
    b.train_step();
    resumed.after_optimizer_step(g);
  }
  for (int l = 0; l < 2; ++l) {
    REQUIRE(resumed.row_mask(l) == pa.row_mask(l));
    REQUIRE(resumed.importance(l).ema() == pa.importance(l).ema());
    REQUIRE(resumed.importance(l).window_mean() == pa.importance(l).window_mean());
    REQUIRE(resumed.importance(l).uncertainty() == pa.importance(l).uncertainty());
    REQUIRE(b.layers[l].S() == a.layers[l].S());
  }
  std::remove(path.c_str());
}

TEST_CASE("pruner misuse and bad state files are errors", "[pruner][errors]") {
  Setup setup;
  const auto opt = options(lmshrink::MaskMode::reference);
  lmshrink::Pruner<double> pruner(opt);
  REQUIRE_THROWS_WITH(pruner.after_optimizer_step(0), Contains("no layer was added"));
  pruner.add("a", setup.layers[0], setup.grads[0]);
  REQUIRE_THROWS_WITH(pruner.add("a", setup.layers[1], setup.grads[1]),
                      Contains("a layer named 'a' was already added"));
  REQUIRE_THROWS_WITH(pruner.add("b", setup.layers[1], setup.grads[0]),
                      Contains("grads.S is 16x24 but 10x12 was expected"));
  Layer::Gradients unsized;  // gradients never sized for the layer
  REQUIRE_THROWS_WITH(pruner.add("c", setup.layers[1], unsized),
                      Contains("grads.S is 0x0 but 10x12 was expected"));
  setup.train_step();
  pruner.after_optimizer_step(0);
  REQUIRE_THROWS_WITH(pruner.after_optimizer_step(2), Contains("step 2 follows step 0"));
  REQUIRE_THROWS_WITH(pruner.add("b", setup.layers[1], setup.grads[1]),
                      Contains("added after step 0"));
  REQUIRE_THROWS_AS(pruner.row_mask(3), lmshrink::value_error);

  auto bad = opt;
  bad.schedule.final_keep = 1.5;
  REQUIRE_THROWS_AS(lmshrink::Pruner<double>(bad), lmshrink::value_error);
  bad = opt;
  bad.importance.beta1 = 2;
  REQUIRE_THROWS_AS(lmshrink::Pruner<double>(bad), lmshrink::value_error);

  const std::string path = LMSHRINK_TEST_TMP "/pruner_bad.safetensors";
  REQUIRE_THROWS_AS(pruner.load(path + ".missing"), lmshrink::io_error);
  pruner.save(path);
  std::ifstream in(path, std::ios::binary);
  const std::vector<char> good((std::istreambuf_iterator<char>(in)), {});
  const auto write = [&](const std::vector<char>& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), std::streamsize(bytes.size()));
  };
  // The state is a safetensors file: every cut of it is refused, at the header or in the data.
  for (const std::size_t cut : {std::size_t(0), std::size_t(7), std::size_t(100), good.size() - 1}) {
    CAPTURE(cut);
    write(std::vector<char>(good.begin(), good.begin() + std::ptrdiff_t(cut)));
    REQUIRE_THROWS_WITH(pruner.load(path), Contains("truncated"));
  }
  // A safetensors file that is not a pruner state (a checkpoint, say), and one of another version.
  write(good);
  lmshrink::SafeTensors foreign = lmshrink::read_safetensors(path);
  foreign.metadata.erase("lmshrink.pruner_state");
  lmshrink::write_safetensors(foreign, path);
  REQUIRE_THROWS_WITH(pruner.load(path), Contains("is not an lmshrink pruner state"));
  foreign.metadata["lmshrink.pruner_state"] = "2";
  lmshrink::write_safetensors(foreign, path);
  REQUIRE_THROWS_WITH(pruner.load(path), Contains("is not an lmshrink pruner state"));
  auto longer = good;
  longer.push_back(0);
  write(longer);
  REQUIRE_THROWS_WITH(pruner.load(path), Contains("1 trailing bytes"));
  // A tensor no layer has, and a mask of another dtype.
  lmshrink::SafeTensors extra = foreign;
  extra.metadata["lmshrink.pruner_state"] = "1";
  extra.put("c.ema", Eigen::MatrixXd::Zero(2, 2).eval());
  lmshrink::write_safetensors(extra, path);
  REQUIRE_THROWS_WITH(pruner.load(path), Contains("holds the tensor 'c.ema', which no layer of this pruner has"));
  lmshrink::SafeTensors retyped = foreign;
  retyped.metadata["lmshrink.pruner_state"] = "1";
  const std::vector<std::int32_t> ints(16, 1);
  retyped.tensors.erase("a.rows");
  retyped.put("a.rows", lmshrink::Dtype::i32, {16}, ints.data());
  lmshrink::write_safetensors(retyped, path);
  REQUIRE_THROWS_WITH(pruner.load(path), Contains("tensor 'a.rows' is I32 [16] but U8 [16] was expected"));
  write(good);
  lmshrink::Pruner<double> other(opt);
  other.add("b", setup.layers[1], setup.grads[1]);
  REQUIRE_THROWS_WITH(other.load(path), Contains("layer 0 is 'a'"));
  lmshrink::Pruner<float> single(opt);
  lmshrink::LowRankSparseLinear<float> lf(16, 24, 3);
  auto gf = lf.make_gradients();
  single.add("a", lf, gf);
  REQUIRE_THROWS_WITH(single.load(path), Contains("8-byte scalars"));
  // A failed load changes nothing.
  REQUIRE(pruner.last_step() == 0);
  std::remove(path.c_str());
}

TEST_CASE("baselines from the same API: ITP and low-rank only", "[pruner]") {
  const M w = test::random_matrix<double>(12, 8, 3);
  auto dense = lmshrink::make_dense_layer<double>(w);
  REQUIRE(dense.rank() == 0);
  REQUIRE(dense.to_dense() == w);
  REQUIRE(dense.live_parameters() == 96);
  Layer low;
  lmshrink::SvdInitOptions svd;
  svd.rank = 2;
  lmshrink::svd_init<double>(w, low, svd);
  lmshrink::make_low_rank_only(low);
  REQUIRE(low.live_parameters() == 2 * 20);
  REQUIRE((low.to_dense() - low.U() * low.V()).norm() == 0);
  // ITP: the pruner on the dense layer prunes rows of W itself.
  auto grads = dense.make_gradients();
  auto opt = options(lmshrink::MaskMode::persistent);
  lmshrink::Pruner<double> pruner(opt);
  pruner.add("w", dense, grads);
  const M x = test::random_matrix<double>(16, 8, 4), target = test::random_matrix<double>(16, 12, 5);
  auto cache = dense.make_cache(16);
  lmshrink::Sgd<double> sgd({0.01, 0});
  for (Index g = 0; g < 60; ++g) {
    M y(16, 12);
    dense.forward(x, y, cache);
    grads.set_zero();
    dense.backward(x, (y - target) / 8.0, cache, grads);
    sgd.step(dense, grads);
    pruner.after_optimizer_step(g);
  }
  REQUIRE(dense.live_rows() <= 4);  // floor-rule: about 30 % of 12 rows
  REQUIRE(dense.live_rows() >= 3);
}

TEST_CASE("TensorAdamW matches the AdamW rule written out, step by step", "[optim]") {
  lmshrink::AdamWOptions o;
  o.lr = 0.05;
  o.weight_decay = 0.1;
  lmshrink::TensorAdamW<double> adam(o);
  std::vector<double> p = {1.0, -2.0, 0.5}, ref = p, m(3, 0.0), v(3, 0.0);
  for (int t = 1; t <= 4; ++t) {
    const std::vector<double> g = {0.3 * t, -0.2, 1.0 / t};
    if (t == 3) adam.set_lr(o.lr = 0.02);
    adam.step(p.data(), g.data(), 3);
    for (int i = 0; i < 3; ++i) {  // Loshchilov & Hutter, decoupled decay, bias-corrected moments
      m[i] = 0.9 * m[i] + 0.1 * g[i];
      v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i];
      ref[i] *= 1 - o.lr * o.weight_decay;
      const double mhat = m[i] / (1 - std::pow(0.9, t)), vhat = v[i] / (1 - std::pow(0.999, t));
      ref[i] -= o.lr * mhat / (std::sqrt(vhat) + 1e-8);
    }
    for (int i = 0; i < 3; ++i) REQUIRE(p[i] == Approx(ref[i]).epsilon(1e-12));
  }
  REQUIRE(adam.steps() == 4);
  CHECK_THROWS_WITH(adam.step(p.data(), p.data(), 2), Catch::Contains("the tensor has 2 values but the optimizer's moments have 3"));
  CHECK_THROWS_AS(lmshrink::TensorAdamW<float>(lmshrink::AdamWOptions{0.0}), lmshrink::value_error);
  CHECK_THROWS_AS(adam.set_lr(-1), lmshrink::value_error);
}

TEST_CASE("AdamW: one hand-computed step, and masked moments", "[optim]") {
  Layer layer(2, 2, 1);
  layer.U().setOnes();
  layer.V().setOnes();
  layer.S().setOnes();
  auto g = layer.make_gradients();
  g.U.setConstant(0.5);
  g.V.setConstant(0.5);
  g.S.setConstant(0.5);
  lmshrink::AdamWOptions o;
  o.lr = 0.1;
  o.weight_decay = 0.01;
  lmshrink::AdamW<double> adam(layer, o);
  adam.step(layer, g);
  // m̂ = 0.5, v̂ = 0.25: p = 1·(1 − 0.1·0.01) − 0.1·0.5/(0.5 + 1e-8)
  const double expected = 0.999 - 0.1 * 0.5 / (0.5 + 1e-8);
  REQUIRE(layer.U()(0, 0) == Approx(expected).epsilon(1e-12));
  REQUIRE(layer.S()(1, 1) == Approx(expected).epsilon(1e-12));
  lmshrink::RowMask rows(2);
  rows << 1, 0;
  layer.set_row_mask(rows);
  adam.step(layer, g);
  REQUIRE(layer.S().row(1).norm() == 0);
  REQUIRE(adam.first_moment_S().row(1).norm() == 0);
  REQUIRE(adam.second_moment_S().row(1).norm() == 0);
  REQUIRE(adam.first_moment_S().row(0).norm() > 0);
  REQUIRE_THROWS_AS(lmshrink::AdamW<double>(layer, {0.0}), lmshrink::value_error);
  auto wrong = g;
  wrong.S.resize(3, 3);
  REQUIRE_THROWS_AS(adam.step(layer, wrong), lmshrink::shape_error);
}

namespace {

/// A pruner over two rank-0 layers whose S rows have the given magnitudes; importance from
/// gradients `grad_scale`·S (Taylor |S∘∇S| = grad_scale·S²), one step past the warm-up.
struct Scored {
  std::vector<Layer> layers;
  std::vector<Layer::Gradients> grads;
  Scored(const std::vector<std::vector<double>>& row_values, double grad_scale) {
    for (const auto& rows : row_values) {
      Layer layer(Index(rows.size()), 4, 0);
      for (std::size_t i = 0; i < rows.size(); ++i) layer.S().row(Index(i)).setConstant(rows[i]);
      layers.push_back(layer);
    }
    for (auto& l : layers) {
      grads.push_back(l.make_gradients());
      grads.back().S = grad_scale * l.S();
    }
  }
  lmshrink::Pruner<double> pruner(lmshrink::PrunerOptions o) {
    o.importance.window = 1;
    o.importance.beta1 = 0;  // score = this step's sensitivity
    lmshrink::Pruner<double> p(o);
    for (std::size_t l = 0; l < layers.size(); ++l)
      p.add("l" + std::to_string(l), layers[l], grads[l]);
    return p;
  }
};

// No schedule mask before step 4; tests call steps 0 and 1 (the moving average holds step 0's
// sensitivity from step 1 on), then mask() by hand.
lmshrink::PrunerOptions one_shot(double keep) {
  lmshrink::PrunerOptions o;
  o.schedule = {10, 3, 2, keep, 1};
  return o;
}

void two_steps(lmshrink::Pruner<double>& p) {
  p.after_optimizer_step(0);
  p.after_optimizer_step(1);
}

std::vector<int> rows_of(const lmshrink::Pruner<double>& p, Index layer) {
  std::vector<int> r;
  for (Index i = 0; i < p.row_mask(layer).size(); ++i) r.push_back(p.row_mask(layer)[i]);
  return r;
}

}  // namespace

TEST_CASE("scores that cannot rank the rows: an error without priors, the priors with them",
          "[pruner][prior]") {
  Scored s({{1, 2, 3, 4}, {5, 6}}, 0.0);  // zero gradients: every Taylor score is 0
  {
    auto p = s.pruner(one_shot(0.5));
    two_steps(p);
    REQUIRE_THROWS_WITH(p.mask(0.5), Contains("cannot rank the groups") && Contains("no prior"));
  }
  auto p = s.pruner(one_shot(0.5));
  p.set_prior(0, (Eigen::VectorXd(4) << 4, 1, 3, 2).finished());
  p.set_prior(1, (Eigen::VectorXd(2) << 0.5, 9).finished());
  const auto step = p.mask(0.5);  // before any step: one-shot pruning on the priors
  REQUIRE(step.source == lmshrink::ScoreSource::prior);
  // 24 entries, k = 12: τ = the prior 2 (the third row of 4 entries from the bottom); rows
  // strictly below it go (0.5 and 1) and the boundary row survives, as the reference rule does.
  REQUIRE(rows_of(p, 0) == std::vector<int>{1, 0, 1, 1});
  REQUIRE(rows_of(p, 1) == std::vector<int>{0, 1});
  REQUIRE(step.live_entries == 16);
  // Keeping everything needs no ranking: no error and no fallback.
  auto q = s.pruner(one_shot(0.5));
  two_steps(q);
  REQUIRE_NOTHROW(q.mask(1.0));
}

TEST_CASE("priors break ties of the importance scores only", "[pruner][prior]") {
  Scored s({{1, 1, 1, 2}}, 1.0);  // Taylor scores 1, 1, 1, 4
  auto p = s.pruner(one_shot(0.5));
  p.set_prior(0, (Eigen::VectorXd(4) << 3, 1, 2, 0).finished());
  two_steps(p);
  // k = 8: τ = (1, prior 2); below it lexicographically is only the tied row with prior 1.
  const auto step = p.mask(0.5);
  REQUIRE(step.source == lmshrink::ScoreSource::importance);
  REQUIRE(rows_of(p, 0) == std::vector<int>{1, 0, 1, 1});  // row 3 has prior 0 but score 4
  // Without a prior the reference rule keeps every tied row (strictly below τ is pruned).
  Scored t({{1, 1, 1, 2}}, 1.0);
  auto r = t.pruner(one_shot(0.5));
  two_steps(r);
  r.mask(0.5);
  REQUIRE(rows_of(r, 0) == std::vector<int>{1, 1, 1, 1});
}

TEST_CASE("normalised global threshold and a per-layer minimum keep small layers alive",
          "[pruner][allocation]") {
  // Layer 1's rows are 10x smaller: one global threshold over raw scores empties it.
  const std::vector<std::vector<double>> rows = {{4, 5, 6, 7, 8, 9}, {0.4, 0.5, 0.6, 0.7, 0.8, 0.9}};
  {
    Scored s(rows, 1.0);
    auto p = s.pruner(one_shot(0.5));
    two_steps(p);
    p.mask(0.5);  // k = 24 of 48: τ is layer 1's best row, the only one left
    REQUIRE(rows_of(p, 1) == std::vector<int>{0, 0, 0, 0, 0, 1});
    REQUIRE(rows_of(p, 0) == std::vector<int>{1, 1, 1, 1, 1, 1});
  }
  {
    Scored s(rows, 1.0);
    auto o = one_shot(0.5);
    o.scope = lmshrink::ThresholdScope::global_normalized;
    auto p = s.pruner(o);
    two_steps(p);
    // Normalised, the layers tie row for row (up to rounding); τ sits at the rows 2, so both
    // layers lose rows 0 and 1 and keep rows 3 to 5, and at least one row 2 survives.
    const auto step = p.mask(0.5);
    for (Index l = 0; l < 2; ++l) {
      const auto r = rows_of(p, l);
      REQUIRE(r[0] == 0);
      REQUIRE(r[1] == 0);
      REQUIRE((r[3] && r[4] && r[5]));
    }
    REQUIRE(rows_of(p, 0)[2] + rows_of(p, 1)[2] >= 1);
    REQUIRE((step.live_entries == 28 || step.live_entries == 32));
  }
  {
    Scored s(rows, 1.0);
    auto o = one_shot(0.5);
    o.min_layer_keep = 0.3;  // ceil(0.3·24) = 8 entries: the two best rows of layer 1
    auto p = s.pruner(o);
    two_steps(p);
    // k = 24 stays counted over all 48 entries; the threshold runs over the unreserved rows.
    const auto step = p.mask(0.5);
    REQUIRE(rows_of(p, 1) == std::vector<int>{0, 0, 0, 0, 1, 1});
    REQUIRE(rows_of(p, 0) == std::vector<int>{0, 1, 1, 1, 1, 1});
    REQUIRE(step.live_entries == 28);
  }
}

TEST_CASE("priors and allocation options are checked", "[pruner][errors]") {
  Scored s({{1, 2, 3}}, 1.0);
  auto p = s.pruner(one_shot(0.5));
  REQUIRE_THROWS_WITH(p.set_prior(0, Eigen::VectorXd::Ones(4)),
                      Contains("layer 'l0' has 3 groups but the prior has 4 values"));
  REQUIRE_THROWS_WITH(p.set_prior(0, (Eigen::VectorXd(3) << 1, -1, 2).finished()),
                      Contains("prior value 1 of layer 'l0' is -1"));
  REQUIRE_THROWS_AS(p.set_prior(0, (Eigen::VectorXd(3) << 1, std::nan(""), 2).finished()),
                    lmshrink::value_error);
  REQUIRE_THROWS_AS(p.set_prior(3, Eigen::VectorXd::Ones(3)), lmshrink::value_error);
  REQUIRE_THROWS_WITH(p.mask(1.5), Contains("keep must be in [0, 1], got 1.5"));
  auto o = one_shot(0.5);
  o.min_layer_keep = 1.2;
  REQUIRE_THROWS_WITH(lmshrink::Pruner<double>(o), Contains("min_layer_keep must be in [0, 1]"));
  o.min_layer_keep = 0.6;  // more than the final share of 0.5: the budget cannot be met
  REQUIRE_THROWS_WITH(lmshrink::Pruner<double>(o), Contains("min_layer_keep 0.6 exceeds the final share to keep 0.5"));
  o.min_layer_keep = 0.2;
  auto q = s.pruner(o);
  REQUIRE_THROWS_WITH(q.mask(0.1), Contains("min_layer_keep 0.2 exceeds the share to keep 0.1"));
}
