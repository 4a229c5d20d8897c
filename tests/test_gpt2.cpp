// GPT-2 (examples/models/gpt2): the backward equals central differences in double on a tiny
// random model with biases, whose linear layers mix dense, low-rank + sparse with pruned rows,
// and low-rank only; the trainer's forward equals an independent straightforward implementation
// written here; the packed decoder (KV cache and full sequence) equals the trainer; a model
// written as a Hugging Face checkpoint and read back gives identical logits, and so does a
// compressed one saved in lmshrink's form. (Also, hidden, the
// writer of the main job's tiny GPT-2.)
#include <lmshrink/models/gpt2/hf.hpp>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <vector>

#include <lmshrink/random.hpp>

#include <lmshrink/models/gpt2/checkpoint.hpp>
#include <lmshrink/models/gpt2/decoder.hpp>
#include <lmshrink/models/gpt2/trainer.hpp>
#include <lmshrink/models/gpt2/synthetic.hpp>

#include "mixed_layer.hpp"
#include "test_helpers.hpp"

namespace {

template <class S>
lmshrink::models::gpt2::Weights<S> tiny_gpt2(std::mt19937& rng, bool compressed) {
  using W = lmshrink::models::gpt2::Weights<S>;
  std::normal_distribution<double> normal(0.0, 0.5);
  auto fill = [&](auto& m) {
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = S(normal(rng));
  };
  W w;
  auto& c = w.config;
  c.vocab_size = 11, c.dim = 8, c.hidden_dim = 16, c.n_layers = 2, c.n_heads = 2, c.n_positions = 6;
  w.wte.resize(c.vocab_size, c.dim);
  w.wpe.resize(c.n_positions, c.dim);
  fill(w.wte);
  fill(w.wpe);
  w.lnf_w = W::Vec::Constant(c.dim, S(1)) + S(0.2) * W::Vec::Random(c.dim);
  w.lnf_b = S(0.1) * W::Vec::Random(c.dim);
  const int outs[lmshrink::models::gpt2::kLinearKinds] = {c.dim, c.dim, c.dim, c.dim, c.hidden_dim, c.dim};
  const int ins[lmshrink::models::gpt2::kLinearKinds] = {c.dim, c.dim, c.dim, c.dim, c.dim, c.hidden_dim};
  for (int l = 0; l < c.n_layers; ++l) {
    for (auto* v : {&w.ln1_w, &w.ln2_w}) v->push_back(W::Vec::Constant(c.dim, S(1)) + S(0.2) * W::Vec::Random(c.dim));
    for (auto* v : {&w.ln1_b, &w.ln2_b}) v->push_back(S(0.1) * W::Vec::Random(c.dim));
    std::array<typename W::Layer, lmshrink::models::gpt2::kLinearKinds> layers;
    for (int k = 0; k < lmshrink::models::gpt2::kLinearKinds; ++k) {
      // dense, U·V + S with pruned rows, U·V only
      const int kind = compressed ? (l * lmshrink::models::gpt2::kLinearKinds + k) % 3 : 0;
      layers[std::size_t(k)] = test::mixed_layer<S>(outs[k], ins[k], kind, true, fill);
    }
    w.linear.push_back(std::move(layers));
  }
  return w;
}

using Wd = lmshrink::models::gpt2::Weights<double>;
using Net = lmshrink::models::gpt2::Trainer<double>;

// loss = Σ logits ∘ R + Σ_l block_output(l) ∘ B_l, so ∂loss/∂logits = R and ∂/∂block = B_l.
double loss(Net& net, const std::vector<int>& tokens, const Wd::Mat& r, const std::vector<Wd::Mat>& b) {
  double v = net.forward(tokens.data()).cwiseProduct(r).sum();
  for (std::size_t l = 0; l < b.size(); ++l) v += net.block_output(int(l)).cwiseProduct(b[l]).sum();
  return v;
}

template <class M, class G>
void check_tensor(const char* name, M& param, const G& grad, Net& net, const std::vector<int>& tokens,
                  const Wd::Mat& r, const std::vector<Wd::Mat>& b, double* worst) {
  for (Eigen::Index i = 0; i < param.size(); ++i) {
    const double saved = param.data()[i], h = 1e-5;
    param.data()[i] = saved + h;
    const double up = loss(net, tokens, r, b);
    param.data()[i] = saved - h;
    const double down = loss(net, tokens, r, b);
    param.data()[i] = saved;
    const double fd = (up - down) / (2 * h);
    const double err = std::abs(fd - grad.data()[i]) / std::max(1.0, std::abs(fd));
    *worst = std::max(*worst, err);
    if (err > 1e-6) {
      CAPTURE(name, i, fd, grad.data()[i]);
      FAIL_CHECK("gradient mismatch");
    }
  }
}

// An independent forward, written for clarity from the architecture's definition: one token
// at a time, attention over explicit loops, the fused c_attn of the model file.
lmshrink::RowMatrix<double> reference_forward(const lmshrink::models::gpt2::DenseModel& m, const std::vector<int>& tokens) {
  const auto& c = m.config;
  const int n = int(tokens.size()), d = c.dim, hs = c.head_size();
  using Vd = Eigen::VectorXd;
  const auto ln = [&](const Vd& x, const lmshrink::Vector<float>& w, const lmshrink::Vector<float>& b) {
    const double mean = x.mean();
    const double var = (x.array() - mean).square().mean();
    Vd y(x.size());
    for (Eigen::Index i = 0; i < x.size(); ++i) y[i] = (x[i] - mean) / std::sqrt(var + c.norm_eps) * w[i] + b[i];
    return y;
  };
  const auto gelu = [](double x) { return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); };
  const std::size_t count = tokens.size();
  std::vector<Vd> x(count);
  for (int t = 0; t < n; ++t) x[std::size_t(t)] = (m.wte.row(tokens[std::size_t(t)]) + m.wpe.row(t)).transpose().cast<double>();
  for (int l = 0; l < c.n_layers; ++l) {
    const std::size_t L = std::size_t(l);
    std::vector<Vd> q(count), k(count), v(count);
    for (int t = 0; t < n; ++t) {
      const Vd qkv = m.attn_w[L].cast<double>() * ln(x[std::size_t(t)], m.ln1_w[L], m.ln1_b[L]) + m.attn_b[L].cast<double>();
      q[std::size_t(t)] = qkv.segment(0, d);
      k[std::size_t(t)] = qkv.segment(d, d);
      v[std::size_t(t)] = qkv.segment(2 * d, d);
    }
    std::vector<Vd> next = x;
    for (int t = 0; t < n; ++t) {
      Vd att = Vd::Zero(d);
      for (int h = 0; h < c.n_heads; ++h) {
        std::vector<double> s;
        double max = -1e300, sum = 0;
        for (int u = 0; u <= t; ++u) {
          s.push_back(q[std::size_t(t)].segment(h * hs, hs).dot(k[std::size_t(u)].segment(h * hs, hs)) / std::sqrt(double(hs)));
          max = std::max(max, s.back());
        }
        for (double& e : s) sum += (e = std::exp(e - max));
        for (int u = 0; u <= t; ++u) att.segment(h * hs, hs) += s[std::size_t(u)] / sum * v[std::size_t(u)].segment(h * hs, hs);
      }
      Vd mid = x[std::size_t(t)] + m.proj_w[L].cast<double>() * att + m.proj_b[L].cast<double>();
      Vd hidden = m.fc_w[L].cast<double>() * ln(mid, m.ln2_w[L], m.ln2_b[L]) + m.fc_b[L].cast<double>();
      for (Eigen::Index i = 0; i < hidden.size(); ++i) hidden[i] = gelu(hidden[i]);
      next[std::size_t(t)] = mid + m.fc_proj_w[L].cast<double>() * hidden + m.fc_proj_b[L].cast<double>();
    }
    x = next;
  }
  lmshrink::RowMatrix<double> logits(n, c.vocab_size);
  for (int t = 0; t < n; ++t)
    logits.row(t) = (m.wte.cast<double>() * ln(x[std::size_t(t)], m.lnf_w, m.lnf_b)).transpose();
  return logits;
}

}  // namespace

TEST_CASE("GPT-2's backward equals central differences, every parameter, with biases", "[gpt2]") {
  std::mt19937 rng(11);
  Wd w = tiny_gpt2<double>(rng, true);
  const int batch = 2, n = 5;
  Net net(w, batch, n);
  std::vector<int> tokens(std::size_t(batch * n));
  std::uniform_int_distribution<int> tok(0, w.config.vocab_size - 1);
  for (auto& t : tokens) t = tok(rng);
  Wd::Mat r(batch * n, w.config.vocab_size);
  std::normal_distribution<double> normal(0.0, 1.0);
  for (Eigen::Index i = 0; i < r.size(); ++i) r.data()[i] = normal(rng);
  std::vector<Wd::Mat> b(std::size_t(w.config.n_layers), Wd::Mat(batch * n, w.config.dim));
  for (auto& m : b)
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = 0.3 * normal(rng);
  b[0].resize(0, 0);  // an empty dblock entry is skipped
  std::vector<Wd::Mat> b_used = b;
  b_used[0].setZero(batch * n, w.config.dim);

  loss(net, tokens, r, b_used);
  net.zero_grad();
  net.backward(r, &b);
  const auto g = net.grads();

  double worst = 0;
  check_tensor("wte", w.wte, g.wte, net, tokens, r, b_used, &worst);
  check_tensor("wpe", w.wpe, g.wpe, net, tokens, r, b_used, &worst);
  check_tensor("lnf_w", w.lnf_w, g.lnf_w, net, tokens, r, b_used, &worst);
  check_tensor("lnf_b", w.lnf_b, g.lnf_b, net, tokens, r, b_used, &worst);
  for (int l = 0; l < w.config.n_layers; ++l) {
    const std::size_t L = std::size_t(l);
    check_tensor("ln1_w", w.ln1_w[L], g.ln1_w[L], net, tokens, r, b_used, &worst);
    check_tensor("ln1_b", w.ln1_b[L], g.ln1_b[L], net, tokens, r, b_used, &worst);
    check_tensor("ln2_w", w.ln2_w[L], g.ln2_w[L], net, tokens, r, b_used, &worst);
    check_tensor("ln2_b", w.ln2_b[L], g.ln2_b[L], net, tokens, r, b_used, &worst);
    for (int k = 0; k < lmshrink::models::gpt2::kLinearKinds; ++k) {
      auto& layer = w.linear[L][std::size_t(k)];
      const auto& gl = g.linear[L][std::size_t(k)];
      CAPTURE(l, lmshrink::models::gpt2::linear_kind_name(k));
      check_tensor("U", layer.U(), gl.U, net, tokens, r, b_used, &worst);
      check_tensor("V", layer.V(), gl.V, net, tokens, r, b_used, &worst);
      check_tensor("bias", layer.bias(), gl.bias, net, tokens, r, b_used, &worst);
      for (Eigen::Index i = 0; i < layer.S().rows(); ++i) {
        if (!layer.row_mask()[i]) {
          REQUIRE(gl.S.row(i).isZero());  // pruned rows get no gradient by design
          continue;
        }
        auto row = layer.S().row(i);
        lmshrink::RowMatrix<double> grow = gl.S.row(i);
        check_tensor("S", row, grow, net, tokens, r, b_used, &worst);
      }
    }
  }
  CAPTURE(worst);
  REQUIRE(worst < 1e-6);
  REQUIRE(worst > 0);  // the comparison ran
  REQUIRE_THROWS_AS(net.block_output(2), lmshrink::value_error);
  REQUIRE_THROWS_AS(net.linear_input(0, 6), lmshrink::value_error);
  tokens[3] = 11;
  REQUIRE_THROWS_AS(net.forward(tokens.data()), lmshrink::value_error);
  REQUIRE_THROWS_AS(Net(w, 1, 7), lmshrink::value_error);
}

TEST_CASE("GPT-2's forward equals a straightforward implementation; the decoders equal it", "[gpt2]") {
  std::mt19937 rng(12);
  const auto dense = tiny_gpt2<float>(rng, false);
  const lmshrink::models::gpt2::DenseModel model = dense.to_model();
  REQUIRE(model.attn_w[1].rows() == 24);
  const std::vector<int> tokens = {3, 0, 10, 7, 7, 1};
  const auto want = reference_forward(model, tokens);
  auto w = lmshrink::models::gpt2::Weights<float>::from_model(model);
  lmshrink::models::gpt2::Trainer<float> net(w, 1, 6);
  const auto& logits = net.forward(tokens.data());
  CAPTURE((logits.cast<double>() - want).cwiseAbs().maxCoeff());
  REQUIRE((logits.cast<double>() - want).cwiseAbs().maxCoeff() < 1e-4);

  // The packed decoder, token by token (KV cache) and whole, on a compressed model.
  auto small = tiny_gpt2<float>(rng, true);
  lmshrink::models::gpt2::Trainer<float> snet(small, 1, 6);
  const lmshrink::RowMatrix<float> slogits = snet.forward(tokens.data());
  const auto packed = lmshrink::models::gpt2::Compact::pack(small);
  lmshrink::models::gpt2::Decoder<lmshrink::models::gpt2::CompactView> dec(packed);
  const auto& whole = dec.forward_sequence(tokens.data(), 6);
  REQUIRE((whole - slogits).cwiseAbs().maxCoeff() < 1e-4);
  for (int pos = 0; pos < 6; ++pos)
    REQUIRE((dec.forward(tokens[std::size_t(pos)], pos).transpose() - slogits.row(pos)).cwiseAbs().maxCoeff() < 1e-4);
  // Each layer in its trained form, or dense where that models cheaper (PackForm::fastest).
  std::int64_t linear_stored = 0, linear_trained = 0;
  for (std::size_t l = 0; l < small.linear.size(); ++l)
    for (std::size_t k = 0; k < small.linear[l].size(); ++k) {
      const auto& c = packed.linear[l][k];
      const auto& t = small.linear[l][k];
      CAPTURE(l, k, lmshrink::compact_form_name(c.form()));
      REQUIRE(c.parameters() == (c.form() == lmshrink::CompactForm::dense && t.rank() > 0
                                     ? t.dense_parameters()
                                     : t.live_parameters()));
      linear_stored += c.parameters();
      linear_trained += t.live_parameters();
    }
  REQUIRE(packed.parameters() - linear_stored == small.parameters() - linear_trained);
  REQUIRE_THROWS_AS(dec.forward(11, 0), lmshrink::value_error);
  REQUIRE_THROWS_AS(dec.forward(1, 6), lmshrink::value_error);

  // lmshrink's checkpoint of the compressed model (U, V, kept rows, biases) reloads to the same
  // packed model; a Llama checkpoint is not one.
  const std::string ckpt = LMSHRINK_TEST_TMP "/gpt2_small.safetensors";
  lmshrink::models::gpt2::save_checkpoint(small, ckpt, "test");
  const auto reloaded = lmshrink::models::gpt2::Compact::pack(lmshrink::models::gpt2::read_checkpoint(ckpt));
  lmshrink::models::gpt2::Decoder<lmshrink::models::gpt2::CompactView> dec3(reloaded);
  REQUIRE(dec3.forward_sequence(tokens.data(), 6) == whole);
  REQUIRE(reloaded.parameters() == packed.parameters());
  lmshrink::SafeTensors foreign;
  foreign.metadata["lmshrink.checkpoint"] = "llama/1";
  lmshrink::write_safetensors(foreign, ckpt);
  REQUIRE_THROWS_WITH(lmshrink::models::gpt2::read_checkpoint(ckpt),
                      Catch::Contains("has no 'lmshrink.checkpoint: gpt2/1' metadata"));
  std::remove(ckpt.c_str());

  // A Hugging Face checkpoint of the (dense) model reads back to identical logits.
  const std::string dir = LMSHRINK_TEST_TMP "/gpt2_hf";
  std::filesystem::remove_all(dir);
  lmshrink::models::gpt2::write_hf(small.to_model(), dir);
  const auto back = lmshrink::models::gpt2::Compact::pack_dense(lmshrink::models::gpt2::read_hf(dir));
  lmshrink::models::gpt2::Decoder<lmshrink::models::gpt2::CompactView> dec2(back);
  REQUIRE((dec2.forward_sequence(tokens.data(), 6) - whole).cwiseAbs().maxCoeff() < 1e-5);
  std::filesystem::remove_all(dir);
}

TEST_CASE("a forward-only GPT-2 trainer gives the training net's outputs and holds no gradients", "[gpt2]") {
  std::mt19937 rng(31);
  auto w = tiny_gpt2<float>(rng, true);
  const std::vector<int> tokens = {3, 0, 10, 7, 7, 1, 2, 9, 4, 4, 8, 5};
  lmshrink::models::gpt2::Trainer<float> train(w, 2, 6);
  lmshrink::models::gpt2::Trainer<float> infer(w, 2, 6, lmshrink::models::NetMode::forward_only);
  REQUIRE(infer.mode() == lmshrink::models::NetMode::forward_only);
  const lmshrink::RowMatrix<float> want = train.forward(tokens.data());
  REQUIRE(infer.forward(tokens.data()) == want);  // bit for bit
  for (int l = 0; l < 2; ++l) {
    REQUIRE(infer.block_output(l) == train.block_output(l));
    for (int k = 0; k < lmshrink::models::gpt2::kLinearKinds; ++k) REQUIRE(infer.linear_input(l, k) == train.linear_input(l, k));
  }
  REQUIRE(infer.grads().linear.empty());
  REQUIRE(infer.grads().wte.size() == 0);
  REQUIRE_THROWS_WITH(infer.backward(want), Catch::Contains("without gradients"));
  REQUIRE_THROWS_AS(infer.backward(want), lmshrink::state_error);
  // The buffers are what the model plans for them (rank 2 in two of every three layers).
  std::int64_t rank_sum = 0;
  for (const auto& block : w.linear)
    for (const auto& layer : block) rank_sum += layer.rank();
  train.backward(lmshrink::RowMatrix<float>::Ones(want.rows(), want.cols()));
  const auto planned = [&](lmshrink::models::NetMode mode) {
    return lmshrink::models::gpt2::Trainer<float>::activation_bytes(w.config, 2, 6, mode) +
           2 * 12 * rank_sum * std::int64_t(sizeof(float));
  };
  REQUIRE(train.buffer_bytes() == planned(lmshrink::models::NetMode::training));
  REQUIRE(infer.buffer_bytes() == planned(lmshrink::models::NetMode::forward_only));
  // An outputs net (a distillation teacher's): the logits and block outputs, one block's rest.
  lmshrink::models::gpt2::Trainer<float> outputs(w, 2, 6, lmshrink::models::NetMode::outputs);
  REQUIRE(outputs.forward(tokens.data()) == want);
  for (int l = 0; l < 2; ++l) REQUIRE(outputs.block_output(l) == train.block_output(l));
  REQUIRE_THROWS_AS(outputs.linear_input(0, 0), lmshrink::state_error);
  std::int64_t shared_ranks = 0;  // an outputs net's one set of caches: each kind's largest rank
  for (int k = 0; k < lmshrink::models::gpt2::kLinearKinds; ++k)
    shared_ranks += std::max(w.linear[0][std::size_t(k)].rank(), w.linear[1][std::size_t(k)].rank());
  REQUIRE(outputs.buffer_bytes() == lmshrink::models::gpt2::Trainer<float>::activation_bytes(w.config, 2, 6, lmshrink::models::NetMode::outputs) +
                                        2 * 12 * shared_ranks * std::int64_t(sizeof(float)));
}

TEST_CASE("a recompute GPT-2 trainer gives the training net's gradients bit for bit, kept or blocked attention", "[gpt2]") {
  std::mt19937 rng(37);
  auto w = tiny_gpt2<float>(rng, true);
  w.config.n_positions = 520;  // room for blocked attention
  w.wpe = lmshrink::RowMatrix<float>::Random(520, w.config.dim);
  using lmshrink::models::NetMode;
  for (int n : {6, 520}) {
    CAPTURE(n);
    const int batch = 2, N = batch * n;
    std::vector<int> tokens(static_cast<std::size_t>(N));
    for (auto& t : tokens) t = int(rng() % 11);
    lmshrink::RowMatrix<float> dlogits(N, 11);
    for (Eigen::Index i = 0; i < dlogits.size(); ++i) dlogits.data()[i] = float(int(rng() % 200) - 100) / 100.0f;
    std::vector<lmshrink::RowMatrix<float>> dblock(2);
    dblock[0] = lmshrink::RowMatrix<float>::Constant(N, w.config.dim, 0.25f);
    lmshrink::models::gpt2::Trainer<float> train(w, batch, n), rerun(w, batch, n, NetMode::recompute);
    REQUIRE(rerun.forward(tokens.data()) == train.forward(tokens.data()));
    train.backward(dlogits, &dblock);
    rerun.backward(dlogits, &dblock);
    const auto& a = train.grads();
    const auto& b = rerun.grads();
    REQUIRE(a.wte == b.wte);
    REQUIRE(a.wpe == b.wpe);
    REQUIRE(a.lnf_w == b.lnf_w);
    REQUIRE(a.lnf_b == b.lnf_b);
    for (std::size_t l = 0; l < 2; ++l) {
      REQUIRE(a.ln1_w[l] == b.ln1_w[l]);
      REQUIRE(a.ln1_b[l] == b.ln1_b[l]);
      REQUIRE(a.ln2_w[l] == b.ln2_w[l]);
      REQUIRE(a.ln2_b[l] == b.ln2_b[l]);
      for (std::size_t k = 0; k < std::size_t(lmshrink::models::gpt2::kLinearKinds); ++k) {
        REQUIRE(a.linear[l][k].U == b.linear[l][k].U);
        REQUIRE(a.linear[l][k].V == b.linear[l][k].V);
        REQUIRE(a.linear[l][k].S == b.linear[l][k].S);
        REQUIRE(a.linear[l][k].bias == b.linear[l][k].bias);
      }
    }
    // One block's activations, one set of caches (each kind's largest rank).
    std::int64_t shared_ranks = 0;
    for (int k = 0; k < lmshrink::models::gpt2::kLinearKinds; ++k)
      shared_ranks += std::max(w.linear[0][std::size_t(k)].rank(), w.linear[1][std::size_t(k)].rank());
    REQUIRE(rerun.buffer_bytes() == lmshrink::models::gpt2::Trainer<float>::activation_bytes(w.config, batch, n, NetMode::recompute) +
                                        2 * std::int64_t(N) * shared_ranks * std::int64_t(sizeof(float)));
    REQUIRE(lmshrink::models::gpt2::Trainer<float>::activation_bytes(w.config, batch, n, NetMode::recompute) <
            lmshrink::models::gpt2::Trainer<float>::activation_bytes(w.config, batch, n, NetMode::training));
  }
}

TEST_CASE("a profiled GPT-2 trainer times its phases and computes the same bits", "[gpt2][profile]") {
  std::mt19937 rng(41);
  auto w = tiny_gpt2<float>(rng, true);
  const int batch = 2, n = 6, N = batch * n;
  std::vector<int> tokens(static_cast<std::size_t>(N));
  for (auto& t : tokens) t = int(rng() % 11);
  const lmshrink::RowMatrix<float> dlogits = lmshrink::RowMatrix<float>::Constant(N, 11, 0.5f);
  lmshrink::models::gpt2::Trainer<float> plain(w, batch, n), profiled(w, batch, n);
  lmshrink::models::NetProfile profile;
  profiled.set_profile(&profile);
  REQUIRE(profiled.forward(tokens.data()) == plain.forward(tokens.data()));
  profiled.backward(dlogits);
  plain.backward(dlogits);
  REQUIRE(profiled.grads().wte == plain.grads().wte);
  REQUIRE(profile.forwards == 1);
  REQUIRE(profile.backwards == 1);
  REQUIRE(profile.linear > 0);
  REQUIRE(profile.attention > 0);
  REQUIRE(profile.classifier > 0);
  REQUIRE(profile.rest() >= 0);
}

// Not a check: writes the small random GPT-2 the main job's GPT-2 tests run on (no pretrained
// GPT-2 can be downloaded here), as a Hugging Face directory with GPT-2's tokenizer files beside
// it. GPT-2's vocabulary and 12 blocks (so DistilGPT-2's block choice applies), 64 dimensions,
// 2 heads, 32 positions; weights drawn as GPT-2 initialises them (normal, sd 0.02; norms 1 and
// 0). Hidden: ctest runs it as example_make_tiny_gpt2, with TINY_GPT2_DIR set.
TEST_CASE("write the tiny GPT-2 of the main job's tests", "[.make_tiny_gpt2]") {
  const char* out = std::getenv("TINY_GPT2_DIR");
  REQUIRE(out != nullptr);
  // TINY_GPT2_SHAPE=small: GPT-2 small's shapes (GPT2Config()), for the job's plan and memory at
  // scale; its residual projections drawn at 0.02/sqrt(2·layers), as GPT-2 initialises them.
  const char* shape = std::getenv("TINY_GPT2_SHAPE");
  const bool small = shape != nullptr && std::string(shape) == "small";
  lmshrink::models::gpt2::Config c = lmshrink::models::gpt2::small_config();
  if (!small) c.dim = 64, c.hidden_dim = 256, c.n_heads = 2, c.n_positions = 32;
  const lmshrink::models::gpt2::DenseModel m = lmshrink::models::gpt2::synthetic_model(c, 2019, small ? -1 : 0.02);
  const std::string dir = out;
  lmshrink::models::gpt2::write_hf(m, dir);
  namespace fs = std::filesystem;
  fs::copy_file(LMSHRINK_DATA_DIR "/gpt2_encoder.json", dir + "/vocab.json", fs::copy_options::overwrite_existing);
  fs::copy_file(LMSHRINK_DATA_DIR "/gpt2_vocab.bpe", dir + "/merges.txt", fs::copy_options::overwrite_existing);
  std::printf("wrote %s (gpt2, %lld parameters)\n", dir.c_str(), static_cast<long long>(m.parameter_count()));
}
