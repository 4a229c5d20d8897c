// The trainable decoder (examples/lmshrink/models/llama/trainer.hpp): its forward equals the reference
// decoder on the real model, and its backward equals central differences in double on a tiny
// random model whose linear layers mix dense, low-rank + sparse with pruned rows, and low-rank
// only.
#include <catch2/catch.hpp>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <lmshrink/models/llama/decoder.hpp>
#include <lmshrink/models/llama/checkpoint.hpp>
#include <lmshrink/models/llama/compact.hpp>
#include <lmshrink/models/llama/model.hpp>
#include <lmshrink/models/llama/trainer.hpp>
#include <lmshrink/models/codecs.hpp>
#include "../examples/runtime/layerwise.hpp"
#include "../examples/runtime/sharded_trainer.hpp"
#include "../examples/runtime/teacher_outputs.hpp"
#include <thread>
#include <lmshrink/models/llama/synthetic.hpp>
#include "../examples/runtime/teacher_text.hpp"
#include "../examples/runtime/text_cache.hpp"
#include <lmshrink/models/calibration.hpp>
#include <cstring>
#include <filesystem>
#include <lmshrink/sparse_plus_low_rank.hpp>
#include <lmshrink/svd_init.hpp>

#include "mixed_layer.hpp"
#include "std_thread_team.hpp"
#include "test_helpers.hpp"
#include <lmshrink/models/llama/llama2c.hpp>

namespace {

using W = lmshrink::models::llama::Weights<double>;

template <class S = double>
lmshrink::models::llama::Weights<S> tiny_model(bool shared, std::mt19937& rng) {
  using Weights = lmshrink::models::llama::Weights<S>;
  std::normal_distribution<double> normal(0.0, 0.5);
  auto fill = [&](auto& m) {
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = S(normal(rng));
  };
  Weights w;
  w.config.dim = 8;
  w.config.hidden_dim = 12;
  w.config.n_layers = 2;
  w.config.n_heads = 2;
  w.config.n_kv_heads = 1;
  w.config.vocab_size = 13;
  w.config.seq_len = 8;
  w.config.shared_classifier = shared;
  const auto& c = w.config;
  w.embedding.resize(c.vocab_size, c.dim);
  fill(w.embedding);
  if (!shared) {
    w.classifier.resize(c.vocab_size, c.dim);
    fill(w.classifier);
  }
  w.rms_final = Weights::Vec::Constant(c.dim, S(1)) + S(0.2) * Weights::Vec::Random(c.dim);
  const int outs[lmshrink::models::llama::kLinearKinds] = {c.dim, c.kv_dim(), c.kv_dim(), c.dim, c.hidden_dim, c.dim, c.hidden_dim};
  const int ins[lmshrink::models::llama::kLinearKinds] = {c.dim, c.dim, c.dim, c.dim, c.dim, c.hidden_dim, c.dim};
  for (int l = 0; l < c.n_layers; ++l) {
    w.rms_att.push_back(Weights::Vec::Constant(c.dim, S(1)) + S(0.2) * Weights::Vec::Random(c.dim));
    w.rms_ffn.push_back(Weights::Vec::Constant(c.dim, S(1)) + S(0.2) * Weights::Vec::Random(c.dim));
    std::array<typename Weights::Layer, lmshrink::models::llama::kLinearKinds> layers;
    for (int k = 0; k < lmshrink::models::llama::kLinearKinds; ++k) {
      const int kind = (l * lmshrink::models::llama::kLinearKinds + k) % 3;  // dense, U·V + S with pruned rows, U·V only
      layers[std::size_t(k)] = test::mixed_layer<S>(outs[k], ins[k], kind, false, fill);
    }
    w.linear.push_back(std::move(layers));
  }
  return w;
}

// Optional layer-wise distillation term: targets per student block, its kind and weight.
struct Hidden {
  std::vector<W::Mat> targets;
  examples::HiddenLoss kind = examples::HiddenLoss::mse;
  double weight = 0.7;
  std::vector<W::Mat> dblock;
  double value(const lmshrink::models::llama::Trainer<double>& net) {
    std::vector<const W::Mat*> t;
    for (const auto& m : targets) t.push_back(&m);
    return examples::layerwise_distillation(net, net.weights().config.n_layers, t, kind, weight, dblock);
  }
};

// loss = Σ logits ∘ R (+ the layer-wise term), so ∂loss/∂logits = R.
double loss(lmshrink::models::llama::Trainer<double>& net, const std::vector<int>& tokens,
            const W::Mat& r, Hidden* hidden = nullptr) {
  const double v = net.forward(tokens.data()).cwiseProduct(r).sum();
  return hidden ? v + hidden->value(net) : v;
}

template <class M, class G>
void check_tensor(const char* name, M& param, const G& grad, lmshrink::models::llama::Trainer<double>& net,
                  const std::vector<int>& tokens, const W::Mat& r, double* worst,
                  Hidden* hidden, Eigen::Index stride = 1) {
  for (Eigen::Index i = 0; i < param.size(); i += stride) {
    const double saved = param.data()[i], h = 1e-5;
    param.data()[i] = saved + h;
    const double up = loss(net, tokens, r, hidden);
    param.data()[i] = saved - h;
    const double down = loss(net, tokens, r, hidden);
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

void check_gradients(bool shared, Hidden* hidden = nullptr) {
  std::mt19937 rng(shared ? 7 : 8);
  W w = tiny_model(shared, rng);
  const int batch = 2, n = 5;
  lmshrink::models::llama::Trainer<double> net(w, batch, n);
  std::vector<int> tokens(std::size_t(batch * n));
  std::uniform_int_distribution<int> tok(0, w.config.vocab_size - 1);
  for (auto& t : tokens) t = tok(rng);
  W::Mat r(batch * n, w.config.vocab_size);
  std::normal_distribution<double> normal(0.0, 1.0);
  for (Eigen::Index i = 0; i < r.size(); ++i) r.data()[i] = normal(rng);

  if (hidden)  // targets near the blocks' outputs, as a teacher's would be
    for (int l = 0; l < w.config.n_layers; ++l) {
      net.forward(tokens.data());
      hidden->targets.push_back(net.block_output(l) + 0.3 * W::Mat::Random(batch * n, w.config.dim));
    }
  loss(net, tokens, r, hidden);
  net.zero_grad();
  net.backward(r, hidden ? &hidden->dblock : nullptr);
  const auto g = net.grads();  // a copy: finite differences rerun the forward only

  double worst = 0;
  check_tensor("embedding", w.embedding, g.embedding, net, tokens, r, &worst, hidden);
  if (!shared) check_tensor("classifier", w.classifier, g.classifier, net, tokens, r, &worst, hidden);
  check_tensor("rms_final", w.rms_final, g.rms_final, net, tokens, r, &worst, hidden);
  for (int l = 0; l < w.config.n_layers; ++l) {
    const std::size_t L = std::size_t(l);
    check_tensor("rms_att", w.rms_att[L], g.rms_att[L], net, tokens, r, &worst, hidden);
    check_tensor("rms_ffn", w.rms_ffn[L], g.rms_ffn[L], net, tokens, r, &worst, hidden);
    for (int k = 0; k < lmshrink::models::llama::kLinearKinds; ++k) {
      auto& layer = w.linear[L][std::size_t(k)];
      const auto& gl = g.linear[L][std::size_t(k)];
      CAPTURE(l, lmshrink::models::llama::linear_kind_name(k));
      check_tensor("U", layer.U(), gl.U, net, tokens, r, &worst, hidden);
      check_tensor("V", layer.V(), gl.V, net, tokens, r, &worst, hidden);
      // Pruned entries of S get no gradient by design; check the live ones only.
      lmshrink::RowMatrix<double> live_grad = gl.S;
      for (Eigen::Index i = 0; i < layer.S().rows(); ++i) {
        if (layer.row_mask()[i]) continue;
        REQUIRE(gl.S.row(i).isZero());
      }
      for (Eigen::Index i = 0; i < layer.S().rows(); ++i) {
        if (!layer.row_mask()[i]) continue;
        auto row = layer.S().row(i);
        auto grow = live_grad.row(i);
        check_tensor("S", row, grow, net, tokens, r, &worst, hidden);
      }
    }
  }
  CAPTURE(worst);
  REQUIRE(worst < 1e-6);
  REQUIRE(worst > 0);  // the comparison ran
}

}  // namespace

TEST_CASE("the decoder's backward equals central differences (tied classifier)", "[trainer]") {
  check_gradients(true);
}

TEST_CASE("the decoder's backward equals central differences (separate classifier)", "[trainer]") {
  check_gradients(false);
}

TEST_CASE("layer-wise distillation gradients equal central differences (MSE and cosine)",
          "[trainer][layerwise]") {
  Hidden mse;
  check_gradients(true, &mse);
  Hidden cosine;
  cosine.kind = examples::HiddenLoss::cosine;
  cosine.weight = 2.0;
  check_gradients(false, &cosine);
}

TEST_CASE("layer-wise distillation refuses mismatched inputs", "[trainer][layerwise][errors]") {
  std::mt19937 rng(3);
  W w = tiny_model(true, rng);
  lmshrink::models::llama::Trainer<double> net(w, 1, 4);
  const std::vector<int> tokens = {1, 2, 3, 4};
  net.forward(tokens.data());
  std::vector<W::Mat> d;
  const W::Mat t = net.block_output(0);
  const auto layerwise = [&](std::vector<const W::Mat*> teacher, double weight) {
    return examples::layerwise_distillation(net, 2, teacher, examples::HiddenLoss::mse, weight, d);
  };
  REQUIRE_THROWS_WITH(layerwise({&t}, 1.0),
                      Catch::Matchers::Contains("got 1 teacher blocks for 2 student blocks"));
  REQUIRE_THROWS_WITH(layerwise({&t, &t}, -1.0),
                      Catch::Matchers::Contains("weight must be finite and >= 0"));
  const W::Mat narrow(4, 3);
  REQUIRE_THROWS_AS(layerwise({&t, &narrow}, 1.0),
                    lmshrink::shape_error);
  std::vector<W::Mat> wrong(1);
  REQUIRE_THROWS_WITH(net.backward(W::Mat::Zero(4, 13), &wrong),
                      Catch::Matchers::Contains("dblock has 1 matrices but the model has 2 blocks"));
  REQUIRE_THROWS_AS(net.block_output(2), lmshrink::value_error);
  REQUIRE_THROWS_AS(net.linear_input(0, 7), lmshrink::value_error);
}

TEST_CASE("the trainable decoder's forward equals the reference decoder on stories260K",
          "[trainer]") {
  const auto model = lmshrink::models::llama::read_llama2c(LMSHRINK_DATA_DIR "/stories260K.bin");
  const auto stream = test::read_u16(LMSHRINK_DATA_DIR "/tinystories_valid_first1000.tok512.u16");
  auto w = lmshrink::models::llama::Weights<float>::from_model(model);
  REQUIRE(w.parameters() == model.parameter_count());
  const int n = 128, batch = 2;
  lmshrink::models::llama::Trainer<float> net(w, batch, n);
  const auto& logits = net.forward(stream.data());
  lmshrink::models::llama::DenseSequenceDecoder seq(model);
  for (int b = 0; b < batch; ++b) {
    const auto& want = seq.forward(stream.data() + b * n, n);
    const double diff = (logits.middleRows(b * n, n) - want).cwiseAbs().maxCoeff();
    CAPTURE(b, diff);
    REQUIRE(diff < 1e-4);
  }
  // The dense model round-trips.
  const auto back = w.to_model();
  REQUIRE(back.wq[3].isApprox(model.wq[3]));
  // The legacy RoPE tables are left to write_llama2c, which computes what the file had.
  REQUIRE(back.freq_cis_real.size() == 0);
  const std::string path = std::string(LMSHRINK_TEST_TMP) + "/trainer_round_trip.bin";
  lmshrink::models::llama::write_llama2c(back, path);
  const auto file = lmshrink::models::llama::read_llama2c(path);
  REQUIRE(file.freq_cis_real.isApprox(model.freq_cis_real, 1e-5f));
  REQUIRE(file.freq_cis_imag.isApprox(model.freq_cis_imag, 1e-5f));
  std::remove(path.c_str());
  REQUIRE_THROWS_AS(lmshrink::models::llama::Trainer<float>(w, 1, 513), lmshrink::value_error);
  std::vector<int> bad(std::size_t(batch * n), 3);
  bad[7] = 512;
  REQUIRE_THROWS_AS(net.forward(bad.data()), lmshrink::value_error);
}

TEST_CASE("beyond 512 positions the trainer runs blocked attention: the decoder's logits, central differences",
          "[trainer][attention]") {
  REQUIRE(lmshrink::models::blocked_attention_for(520));
  REQUIRE(!lmshrink::models::blocked_attention_for(512));
  const int n = 520;
  std::mt19937 rng(41);
  auto wf = tiny_model<float>(true, rng);
  wf.config.seq_len = 600;
  std::vector<int> tokens(static_cast<std::size_t>(n));
  for (auto& t : tokens) t = int(rng() % 13);
  lmshrink::models::llama::Trainer<float> fnet(wf, 1, n);
  const lmshrink::RowMatrix<float> want = fnet.forward(tokens.data());
  const auto packed = lmshrink::models::llama::Compact::pack(wf);
  lmshrink::models::llama::SequenceDecoder<lmshrink::models::llama::CompactView> seq(packed);
  const double diff = (seq.forward(tokens.data(), n) - want).cwiseAbs().maxCoeff();
  CAPTURE(diff);
  REQUIRE(diff < 1e-4);
  lmshrink::models::llama::Trainer<float> infer(wf, 1, n, lmshrink::models::NetMode::forward_only);
  REQUIRE(infer.forward(tokens.data()) == want);

  W w = tiny_model(true, rng);
  w.config.seq_len = 600;
  lmshrink::models::llama::Trainer<double> net(w, 1, n);
  W::Mat r(n, w.config.vocab_size);
  std::normal_distribution<double> normal(0.0, 1.0);
  for (Eigen::Index i = 0; i < r.size(); ++i) r.data()[i] = normal(rng);
  loss(net, tokens, r);
  net.zero_grad();
  net.backward(r);
  const auto g = net.grads();
  double worst = 0;
  check_tensor("embedding", w.embedding, g.embedding, net, tokens, r, &worst, nullptr, 5);
  for (int k = 0; k < lmshrink::models::llama::kLinearKinds; ++k) {
    auto& layer = w.linear[0][std::size_t(k)];
    const auto& gl = g.linear[0][std::size_t(k)];
    CAPTURE(k);
    check_tensor("U", layer.U(), gl.U, net, tokens, r, &worst, nullptr, 7);
    check_tensor("V", layer.V(), gl.V, net, tokens, r, &worst, nullptr, 7);
    if (layer.S().size() > 0 && layer.row_mask()[1]) {
      auto row = layer.S().row(1);
      const auto grow = gl.S.row(1);
      check_tensor("S", row, grow, net, tokens, r, &worst, nullptr, 3);
    }
  }
  CAPTURE(worst);
  REQUIRE(worst < 1e-6);
  REQUIRE(worst > 0);
}

TEST_CASE("the compact decoder equals the trainable one it was packed from", "[trainer]") {
  const auto model = lmshrink::models::llama::read_llama2c(LMSHRINK_DATA_DIR "/stories260K.bin");
  const auto stream = test::read_u16(LMSHRINK_DATA_DIR "/tinystories_valid_first1000.tok512.u16");
  auto w = lmshrink::models::llama::Weights<float>::from_model(model);
  // Compress every linear layer: rank from ratio 0.2, a third of S's rows kept, one layer
  // low-rank only.
  for (auto& block : w.linear)
    for (auto& layer : block) {
      const lmshrink::RowMatrix<float> dense = layer.to_dense();
      lmshrink::SvdInitOptions opt;
      opt.ratio = 0.2;
      lmshrink::svd_init<float>(dense, layer, opt);
      lmshrink::RowMask keep = lmshrink::RowMask::Zero(layer.out_features());
      for (Eigen::Index i = 0; i < keep.size(); i += 3) keep[i] = 1;
      layer.set_row_mask(keep);
      layer.apply_masks();
    }
  lmshrink::make_low_rank_only(w.linear[2][lmshrink::models::llama::kW2]);
  REQUIRE(w.parameters() < model.parameter_count());
  const int n = 96;
  lmshrink::models::llama::Trainer<float> net(w, 1, n);
  const auto& want = net.forward(stream.data());
  const auto small = lmshrink::models::llama::Compact::pack(w);
  // Each layer in its trained form, or dense where that models cheaper (pack_choice at batch 1).
  std::int64_t densified_extra = 0;
  int densified = 0;
  for (std::size_t l = 0; l < w.linear.size(); ++l)
    for (std::size_t k = 0; k < w.linear[l].size(); ++k) {
      const auto& t = w.linear[l][k];
      if (!lmshrink::pack_choice(t).densified) continue;
      REQUIRE(small.linear[l][k].form() == lmshrink::CompactForm::dense);
      densified_extra += t.dense_parameters() - t.live_parameters();
      ++densified;
    }
  REQUIRE(densified < 35);  // most layers stay compressed
  REQUIRE(small.parameters() == w.parameters() + densified_extra);
  lmshrink::models::llama::SequenceDecoder<lmshrink::models::llama::CompactView> seq(small);
  const double diff = (seq.forward(stream.data(), n) - want).cwiseAbs().maxCoeff();
  CAPTURE(diff);
  REQUIRE(diff < 1e-4);
  lmshrink::models::llama::KvDecoder<lmshrink::models::llama::CompactView> kv(small);
  double kv_diff = 0;
  for (int pos = 0; pos < n; ++pos)
    kv_diff = std::max<double>(kv_diff, (kv.forward(stream[std::size_t(pos)], pos).transpose() - want.row(pos)).cwiseAbs().maxCoeff());
  CAPTURE(kv_diff);
  REQUIRE(kv_diff < 1e-3);
  // The teacher's logits differ: the comparison above is not vacuous.
  lmshrink::models::llama::DenseSequenceDecoder teacher(model);
  REQUIRE((teacher.forward(stream.data(), n) - want).cwiseAbs().maxCoeff() > 0.1);
}

TEST_CASE("checkpoints reload to identical logits, dense and compressed", "[trainer][checkpoint]") {
  const auto model = lmshrink::models::llama::read_llama2c(LMSHRINK_DATA_DIR "/stories260K.bin");
  const auto stream = test::read_u16(LMSHRINK_DATA_DIR "/tinystories_valid_first1000.tok512.u16");
  auto w = lmshrink::models::llama::Weights<float>::from_model(model);
  // Layer 1 compressed in three ways; the rest dense.
  for (int k = 0; k < lmshrink::models::llama::kLinearKinds; ++k) {
    auto& layer = w.linear[1][std::size_t(k)];
    const lmshrink::RowMatrix<float> dense = layer.to_dense();
    if (k % 3 == 2) {  // ITP-like: rank 0, some rows pruned
      lmshrink::RowMask keep = lmshrink::RowMask::Ones(layer.out_features());
      keep[1] = keep[4] = 0;
      layer.set_row_mask(keep);
      layer.apply_masks();
      continue;
    }
    lmshrink::SvdInitOptions opt;
    opt.ratio = 0.3;
    lmshrink::svd_init<float>(dense, layer, opt);
    lmshrink::RowMask keep = lmshrink::RowMask::Zero(layer.out_features());
    if (k % 3 == 0)
      for (Eigen::Index i = 1; i < keep.size(); i += 4) keep[i] = 1;
    layer.set_row_mask(keep);
    layer.apply_masks();
  }
  // Layer 2: element masks on wq (with a low rank) and wk (S alone), the layers whose rows the
  // checkpoint permutes to HF's RoPE layout (a regression: the permutation zeroed live entries).
  for (int k : {lmshrink::models::llama::kWq, lmshrink::models::llama::kWk}) {
    auto& layer = w.linear[2][std::size_t(k)];
    const lmshrink::RowMatrix<float> dense = layer.to_dense();
    lmshrink::SparsePlusLowRankOptions opt;
    opt.rank = k == lmshrink::models::llama::kWq ? 4 : 0;
    opt.sparse_entries = layer.out_features() * layer.in_features() / 3;
    opt.iterations = 1;
    lmshrink::GramAccumulator stats(layer.in_features());
    stats.add<float>(lmshrink::RowMatrix<float>::Identity(layer.in_features(), layer.in_features()));
    lmshrink::sparse_plus_low_rank_init<float>(dense, layer, opt, stats);
    REQUIRE(layer.has_element_mask());
  }
  const std::string path = std::string(LMSHRINK_TEST_TMP) + "/trainer_checkpoint.safetensors";
  lmshrink::models::llama::save_checkpoint(w, path, "test", {{"ratio", "0.5"}});
  const auto back = lmshrink::models::llama::read_checkpoint(path);
  const auto st = lmshrink::read_safetensors(path);
  REQUIRE(st.contains("model.layers.0.self_attn.q_proj.weight"));      // dense, HF name
  REQUIRE(st.contains("model.layers.1.self_attn.q_proj.U"));           // compressed
  REQUIRE(st.meta("model.layers.1.self_attn.q_proj.rank") == std::to_string(w.linear[1][0].rank()));
  REQUIRE(st.meta("ratio") == "0.5");
  // HF's rotate-half layout: q_proj row 1 (head 0, second pair's first element, hs = 8) is
  // llama2.c row 2.
  REQUIRE(st.matrix<float>("model.layers.0.self_attn.q_proj.weight", 64, 64).row(1) == model.wq[0].row(2));
  REQUIRE(back.parameters() == w.parameters());
  for (int l = 0; l < 5; ++l)
    for (int k = 0; k < lmshrink::models::llama::kLinearKinds; ++k) {
      CAPTURE(l, k);
      REQUIRE(back.linear[std::size_t(l)][std::size_t(k)].to_dense() == w.linear[std::size_t(l)][std::size_t(k)].to_dense());
      REQUIRE(back.linear[std::size_t(l)][std::size_t(k)].rank() == w.linear[std::size_t(l)][std::size_t(k)].rank());
    }
  const auto a = lmshrink::models::llama::Compact::pack(w), b = lmshrink::models::llama::Compact::pack(back);
  lmshrink::models::llama::SequenceDecoder<lmshrink::models::llama::CompactView> sa(a), sb(b);
  const auto nll_a = lmshrink::models::score_logits<float>(sa.forward(stream.data(), 512), stream.data() + 1).nll_sum;
  const auto nll_b = lmshrink::models::score_logits<float>(sb.forward(stream.data(), 512), stream.data() + 1).nll_sum;
  REQUIRE(nll_a == nll_b);  // identical, not just close
  // Each compressed layer's packed form is stated, and the reloaded model packs that way.
  REQUIRE(st.meta("lmshrink.pack_batch") == "1");
  std::set<std::string> forms;
  for (int l = 0; l < 5; ++l)
    for (int k = 0; k < lmshrink::models::llama::kLinearKinds; ++k) {
      CAPTURE(l, k);
      const std::string key = lmshrink::models::llama::hf_linear_name(l, k) + ".pack_form";
      if (lmshrink::models::is_dense_layer(w.linear[std::size_t(l)][std::size_t(k)])) {
        REQUIRE(st.metadata.count(key) == 0);
        continue;
      }
      REQUIRE(st.meta(key) == lmshrink::compact_form_name(b.linear[std::size_t(l)][std::size_t(k)].form()));
      forms.insert(st.meta(key));
    }
  REQUIRE(forms.size() >= 2);
  // Packed by time on this machine: each layer in its trained form or dense, the same scores to
  // float rounding.
  lmshrink::PackOptions timed;
  timed.form = lmshrink::PackForm::timed;
  timed.timing_repeats = 1;
  const auto t = lmshrink::models::llama::Compact::pack(back, timed);
  for (int l = 0; l < 5; ++l)
    for (int k = 0; k < lmshrink::models::llama::kLinearKinds; ++k) {
      CAPTURE(l, k);
      const auto form = t.linear[std::size_t(l)][std::size_t(k)].form();
      const auto trained = lmshrink::CompactLinear<float>::pack(back.linear[std::size_t(l)][std::size_t(k)]).form();
      REQUIRE((form == trained || form == lmshrink::CompactForm::dense));
    }
  REQUIRE(lmshrink::models::packed_forms(t.linear).size() == 5 * lmshrink::models::llama::kLinearKinds);
  lmshrink::models::llama::SequenceDecoder<lmshrink::models::llama::CompactView> st_timed(t);
  const auto nll_t = lmshrink::models::score_logits<float>(st_timed.forward(stream.data(), 512), stream.data() + 1).nll_sum;
  REQUIRE(nll_t == Approx(nll_a).epsilon(1e-5));
  // A foreign safetensors file is refused with a clear error.
  lmshrink::SafeTensors foreign;
  foreign.put("x", Eigen::VectorXf::Ones(2).eval());
  lmshrink::write_safetensors(foreign, path + ".foreign");
  REQUIRE_THROWS_WITH(lmshrink::models::llama::read_checkpoint(path + ".foreign"), Catch::Contains("was not written by llama::save_checkpoint"));
}

TEST_CASE("a student's kept share must match its nominal ratio within 1 %", "[trainer][report]") {
  REQUIRE(lmshrink::models::checked_linear_ratio("a", 1000, 2000, 0.5) == 0.5);
  REQUIRE(lmshrink::models::checked_linear_ratio("a", 1004, 2000, 0.5) == Approx(0.502));
  REQUIRE_THROWS_WITH(lmshrink::models::checked_linear_ratio("itp 0.5", 2000, 2000, 0.5),
                      Catch::Matchers::Contains("itp 0.5 keeps 1 of the teacher's linear weights but its nominal ratio is 0.5"));
  REQUIRE_THROWS_AS(lmshrink::models::checked_linear_ratio("a", 1012, 2000, 0.5), lmshrink::state_error);
  REQUIRE_THROWS_AS(lmshrink::models::checked_linear_ratio("a", 1, 0, 0.5), lmshrink::value_error);
  // A real case: ITP "at 0.5" that pruned nothing (every Taylor score 0) is refused.
  const auto w = lmshrink::models::llama::Weights<float>::from_model(lmshrink::models::llama::read_llama2c(LMSHRINK_DATA_DIR "/stories260K.bin"));
  REQUIRE_THROWS_AS(lmshrink::models::checked_linear_ratio("itp", w.linear_parameters(), w.linear_dense_parameters(), 0.5),
                    lmshrink::state_error);
}

TEST_CASE("validation text must not repeat training text", "[trainer][data]") {
  const examples::Story a(20, 5), b(20, 6), c(20, 7), short_story(3, 5);
  REQUIRE_NOTHROW(examples::check_disjoint({a, b}, {c, examples::Story(3, 9)}));
  REQUIRE_NOTHROW(examples::check_disjoint({a, short_story}, {short_story}));  // too short to count
  REQUIRE_THROWS_WITH(examples::check_disjoint({a, b}, {c, b}),
                      Catch::Matchers::Contains("1 validation stories (the first is story 1, 20 tokens) also appear in the training stream"));
  // Sampled stories: two seeds give disjoint streams; one seed twice is caught.
  const lmshrink::models::llama::Model teacher(
      lmshrink::models::llama::Weights<float>::from_model(lmshrink::models::llama::read_llama2c(LMSHRINK_DATA_DIR "/stories260K.bin")));
  const lmshrink::models::llama::Codec codec(lmshrink::read_tokenizer(LMSHRINK_DATA_DIR "/tok512.bin"));
  const auto s1 = examples::sample_stories(teacher, codec, 600, 1, 1);
  const auto s2 = examples::sample_stories(teacher, codec, 600, 2, 1);
  REQUIRE(examples::concatenate(s1).size() >= 600);
  REQUIRE(s1[0][0] == 1);  // stories start with BOS
  REQUIRE_NOTHROW(examples::check_disjoint(s1, s2));
  REQUIRE_THROWS_AS(examples::check_disjoint(s1, examples::sample_stories(teacher, codec, 300, 1, 1)), lmshrink::value_error);
}

TEST_CASE("stories are the same however they are sampled: threads, rounds, a cached prefix, a cap", "[trainer][data]") {
  lmshrink::models::llama::Model teacher(
      lmshrink::models::llama::Weights<float>::from_model(lmshrink::models::llama::read_llama2c(LMSHRINK_DATA_DIR "/stories260K.bin")));
  const lmshrink::models::llama::Codec codec(lmshrink::read_tokenizer(LMSHRINK_DATA_DIR "/tok512.bin"));
  examples::StoryOptions capped;
  capped.max_tokens = 24;
  const auto one = examples::sample_stories(teacher, codec, 300, 5, 1, {}, nullptr, capped);
  REQUIRE(examples::story_cap(teacher, capped) == 24);
  std::size_t total = 0;
  for (const auto& s : one) {
    REQUIRE(s.size() <= 24);
    REQUIRE(s[0] == 1);
    total += s.size();
  }
  // The fewest stories holding 300 tokens.
  REQUIRE(total >= 300);
  REQUIRE(total - one.back().size() < 300);
  REQUIRE(examples::sample_stories(teacher, codec, 300, 5, 2, {}, nullptr, capped) == one);
  examples::StoryOptions rounds = capped;
  rounds.round = 3;
  REQUIRE(examples::sample_stories(teacher, codec, 300, 5, 1, {}, nullptr, rounds) == one);
  const std::vector<examples::Story> prefix(one.begin(), one.begin() + 4);
  REQUIRE(examples::sample_stories(teacher, codec, 300, 5, 1, {}, nullptr, capped, prefix) == one);
  // More tokens: the same stories first.
  const auto more = examples::sample_stories(teacher, codec, 600, 5, 1, {}, nullptr, capped, one);
  REQUIRE(std::equal(one.begin(), one.end(), more.begin()));
}

TEST_CASE("the text cache reads back what it wrote and uses nothing else", "[trainer][data][errors]") {
  const std::vector<examples::Story> stories = {{1, 5, 7}, {1}, {1, 2, 3, 4, 5, 6}};
  const std::string path = LMSHRINK_TEST_TMP "/text_cache_test/stories.bin";
  std::filesystem::remove_all(LMSHRINK_TEST_TMP "/text_cache_test");
  examples::write_cached_text(path, 42, 8, stories);  // makes the folder
  const auto bytes = lmshrink::read_file_bytes("test", path, 0, "a cache", 1 << 20, "too large");
  REQUIRE(bytes.size() == 16 + 8 + 4 + 8 + 4 * (3 + 10));
  const auto good = examples::parse_cached_text(bytes, 42, 8, 10);
  REQUIRE(good.problem.empty());
  REQUIRE(good.stories == stories);
  REQUIRE_THAT(examples::parse_cached_text(bytes, 43, 8, 10).problem, Catch::Matchers::Contains("other inputs"));
  REQUIRE_THAT(examples::parse_cached_text(bytes, 42, 6, 10).problem, Catch::Matchers::Contains("other inputs"));
  REQUIRE_THAT(examples::parse_cached_text(bytes, 42, 8, 7).problem, Catch::Matchers::Contains("token 7, outside the vocabulary"));
  // Every truncation is refused with a reason, never read past its end.
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    const auto cut = examples::parse_cached_text(std::vector<char>(bytes.begin(), bytes.begin() + std::ptrdiff_t(n)), 42, 8, 10);
    CAPTURE(n);
    REQUIRE(cut.stories.empty());
    REQUIRE(!cut.problem.empty());
  }
  auto longer = bytes;
  longer.push_back(0);
  REQUIRE_THAT(examples::parse_cached_text(longer, 42, 8, 10).problem, Catch::Matchers::Contains("1 bytes after its last story"));
  auto huge = bytes;
  const std::uint64_t count = std::uint64_t(1) << 60;
  std::memcpy(huge.data() + 28, &count, 8);
  REQUIRE_THAT(examples::parse_cached_text(huge, 42, 8, 10).problem, Catch::Matchers::Contains("claims 1152921504606846976 stories"));
  auto zero_length = bytes;
  const std::uint32_t zero = 0;
  std::memcpy(zero_length.data() + 36, &zero, 4);
  REQUIRE_THAT(examples::parse_cached_text(zero_length, 42, 8, 10).problem, Catch::Matchers::Contains("story 0 is truncated or longer"));
  auto foreign = bytes;
  foreign[0] = 'L';
  REQUIRE_THAT(examples::parse_cached_text(foreign, 42, 8, 10).problem, Catch::Matchers::Contains("not an lmshrink text cache"));
  std::filesystem::remove_all(LMSHRINK_TEST_TMP "/text_cache_test");
}

TEST_CASE("calibration accumulates each distinct input once, the same bits on any thread count", "[trainer][calibration]") {
  std::mt19937 rng(23);
  lmshrink::models::llama::Model model(tiny_model<float>(false, rng));
  const int length = 5, windows = 3;
  std::vector<int> stream(std::size_t(length * windows + 2));
  for (auto& t : stream) t = int(rng() % 13);
  // The reference: every layer's own accumulator, window after window.
  const int L = model.shape().n_layers, K = model.linear_kinds();
  std::vector<std::vector<lmshrink::GramAccumulator>> want(static_cast<std::size_t>(L));
  for (auto& block : want) block.resize(static_cast<std::size_t>(K));
  const auto net = model.net(1, length);
  for (int l = 0; l < L; ++l)
    for (int k = 0; k < K; ++k) want[std::size_t(l)][std::size_t(k)].reset(model.linear(l, k).in_features());
  for (int w = 0; w < windows; ++w) {
    net->forward(stream.data() + w * length);
    for (int l = 0; l < L; ++l)
      for (int k = 0; k < K; ++k) want[std::size_t(l)][std::size_t(k)].add<float>(net->linear_input(l, k));
  }
  for (int threads : {1, 2, 3}) {
    CAPTURE(threads);
    int calls = 0;
    auto calib = lmshrink::models::collect_calibration(model, stream, length, windows,
                                                       {threads, test::StdThreadTeam::team()}, [&](int done, int total) {
      REQUIRE(total == windows);
      REQUIRE(done <= windows);
      ++calls;
    });
    REQUIRE(calls == (windows + std::min(threads, windows) - 1) / std::min(threads, windows));
    REQUIRE(calib.distinct_inputs() == std::size_t(4 * L));  // wq wk wv | wo | w1 w3 | w2
    REQUIRE(&calib.at(1, lmshrink::models::llama::kWq) == &calib.at(1, lmshrink::models::llama::kWv));
    REQUIRE(&calib.at(1, lmshrink::models::llama::kW1) == &calib.at(1, lmshrink::models::llama::kW3));
    REQUIRE(&calib.at(1, lmshrink::models::llama::kW1) != &calib.at(1, lmshrink::models::llama::kW2));
    for (int l = 0; l < L; ++l)
      for (int k = 0; k < K; ++k) {
        REQUIRE(calib.at(l, k).tokens() == length * windows);
        REQUIRE(calib.at(l, k).mean_gram() == want[std::size_t(l)][std::size_t(k)].mean_gram());  // bit for bit
      }
    REQUIRE_THROWS_AS(calib.at(L, 0), lmshrink::value_error);
    calib.clear();
    REQUIRE(calib.empty());
    REQUIRE_THROWS_WITH(calib.at(0, 0), Catch::Matchers::Contains("they were cleared"));
  }
  // One window at a time on two threads (less memory): the same sums.
  int groups = 0;
  const auto one_net = lmshrink::models::collect_calibration(model, stream, length, windows, {2, test::StdThreadTeam::team()},
                                                             [&](int, int) { ++groups; }, 1);
  REQUIRE(groups == windows);
  for (int l = 0; l < L; ++l)
    for (int k = 0; k < K; ++k) REQUIRE(one_net.at(l, k).mean_gram() == want[std::size_t(l)][std::size_t(k)].mean_gram());
  REQUIRE_THROWS_WITH(lmshrink::models::collect_calibration(model, stream, length, 2, {}, {}, -1),
                      Catch::Matchers::Contains("windows_at_once must be >= 0"));
  REQUIRE_THROWS_WITH(lmshrink::models::collect_calibration(model, stream, length, 4),
                      Catch::Matchers::Contains("4 windows of 5 need 20"));
  REQUIRE_THROWS_WITH(lmshrink::models::collect_calibration(model, stream, length, 2, {2}),
                      Catch::Matchers::Contains("a ThreadTeam with run"));
}

TEST_CASE("calibration splits the Gram updates among the threads by cost", "[trainer][calibration]") {
  using lmshrink::models::balanced_owners;
  using lmshrink::models::balanced_makespan;
  // GPT-2's four inputs per block (768, 768, 768, 3072 wide) over two blocks: round-robin gives
  // one thread both 3072-wide updates and two 768-wide ones.
  std::vector<double> costs;
  for (int block = 0; block < 2; ++block)
    for (double in : {768.0, 768.0, 768.0, 3072.0}) costs.push_back(in * in);
  const std::vector<int> owner = balanced_owners(costs, 2);
  REQUIRE(owner.size() == costs.size());
  REQUIRE(owner[3] != owner[7]);  // the two wide ones on different threads
  double load[2] = {0, 0};
  for (std::size_t i = 0; i < costs.size(); ++i) load[owner[i]] += costs[i];
  REQUIRE(load[0] == load[1]);  // 3072² + 3·768² each
  REQUIRE(balanced_makespan(costs, 2) == 3072.0 * 3072.0 + 3 * 768.0 * 768.0);
  REQUIRE(balanced_makespan(costs, 1) == 2 * (3072.0 * 3072.0 + 3 * 768.0 * 768.0));
  REQUIRE(balanced_owners(costs, 2) == owner);  // the same owners every time
  // Largest first, each to the least loaded thread, ties to the lowest thread and index.
  REQUIRE(balanced_owners({1, 5, 3, 3}, 2) == std::vector<int>{0, 0, 1, 1});
  REQUIRE(balanced_owners({2, 2}, 3) == std::vector<int>{0, 1});
  REQUIRE(balanced_owners({}, 2).empty());
}

TEST_CASE("a from-scratch student holds the ratio's linear weights, randomly initialised", "[trainer][scratch]") {
  const lmshrink::models::llama::Model teacher(
      lmshrink::models::llama::Weights<float>::from_model(lmshrink::models::llama::read_llama2c(LMSHRINK_DATA_DIR "/stories260K.bin")));
  // stories260K: dim 64, kv 32, hidden 172, 5 blocks. Attention 2·64·(64+32) = 12288 per block,
  // 226560 linear weights in all; half of them leaves floor((22656 - 12288) / (3·64)) = 54 hidden.
  const auto a = teacher.from_scratch(0.5, 3), b = teacher.from_scratch(0.5, 3), c = teacher.from_scratch(0.5, 4);
  std::int64_t linear = 0;
  for (int l = 0; l < 5; ++l)
    for (int k = 0; k < a->linear_kinds(); ++k) {
      REQUIRE(a->linear(l, k).rank() == 0);
      linear += a->linear(l, k).live_parameters();
    }
  REQUIRE(linear == 5 * (12288 + 3 * 64 * 54));
  REQUIRE(a->linear(0, 4).out_features() == 54);  // w1
  REQUIRE(a->shape().dim == 64);
  REQUIRE(a->shape().n_layers == 5);
  REQUIRE(a->linear(2, 0).S() == b->linear(2, 0).S());
  REQUIRE(a->linear(2, 0).S() != c->linear(2, 0).S());
  // llama2.c's init: N(0, 0.02), with wo scaled by 1/sqrt(2·5).
  const auto sd = [](const lmshrink::RowMatrix<float>& m) { return std::sqrt(double(m.squaredNorm()) / double(m.size())); };
  REQUIRE(sd(a->linear(1, 0).S()) == Approx(0.02).epsilon(0.05));
  REQUIRE(sd(a->linear(1, 3).S()) == Approx(0.02 / std::sqrt(10.0)).epsilon(0.05));
  REQUIRE_THROWS_WITH(teacher.from_scratch(0.05, 1), Catch::Matchers::Contains("ratio 0.05 of the linear weights leaves no FFN width"));
  REQUIRE_THROWS_AS(teacher.from_scratch(1.5, 1), lmshrink::value_error);
}

TEST_CASE("a forward-only net gives the training net's outputs and holds no gradients", "[trainer]") {
  std::mt19937 rng(17);
  lmshrink::models::llama::Model model(tiny_model<float>(false, rng));
  const int batch = 2, n = 6;
  std::vector<int> tokens(std::size_t(batch * n));
  for (auto& t : tokens) t = int(rng() % 13);
  const auto train = model.net(batch, n);
  const auto infer = model.net(batch, n, lmshrink::models::NetMode::forward_only);
  const lmshrink::RowMatrix<float> want = train->forward(tokens.data());
  REQUIRE(infer->forward(tokens.data()) == want);  // bit for bit
  for (int l = 0; l < model.shape().n_layers; ++l) {
    REQUIRE(infer->block_output(l) == train->block_output(l));
    for (int k = 0; k < model.linear_kinds(); ++k) REQUIRE(infer->linear_input(l, k) == train->linear_input(l, k));
  }
  REQUIRE_THROWS_WITH(infer->backward(want, nullptr), Catch::Contains("without gradients"));
  REQUIRE_THROWS_AS(infer->linear_grad(0, 0), lmshrink::state_error);
  REQUIRE_THROWS_AS(infer->plain_grads(), lmshrink::state_error);
  REQUIRE_NOTHROW(train->linear_grad(0, 0));
  // An outputs net: the same logits and block outputs, no linear inputs.
  const auto outputs = model.net(batch, n, lmshrink::models::NetMode::outputs);
  REQUIRE(outputs->forward(tokens.data()) == want);
  for (int l = 0; l < model.shape().n_layers; ++l) REQUIRE(outputs->block_output(l) == train->block_output(l));
  REQUIRE_THROWS_WITH(outputs->linear_input(0, 0), Catch::Contains("keeps only logits and block outputs"));
  REQUIRE_THROWS_AS(outputs->backward(want, nullptr), lmshrink::state_error);
}

TEST_CASE("a net's buffers are what the model plans for them, kept or blocked attention", "[trainer][memory]") {
  std::mt19937 rng(19);
  auto w = tiny_model<float>(false, rng);
  w.config.seq_len = 600;
  lmshrink::models::llama::Model model(std::move(w));
  std::int64_t rank_sum = 0;
  for (int l = 0; l < model.shape().n_layers; ++l)
    for (int k = 0; k < model.linear_kinds(); ++k) rank_sum += model.linear(l, k).rank();
  REQUIRE(rank_sum > 0);
  for (int n : {6, 520})
    for (auto mode : {lmshrink::models::NetMode::training, lmshrink::models::NetMode::forward_only,
                      lmshrink::models::NetMode::outputs, lmshrink::models::NetMode::recompute}) {
      CAPTURE(n, int(mode));
      const int batch = 2;
      std::vector<int> tokens(static_cast<std::size_t>(batch * n));
      for (auto& t : tokens) t = int(rng() % 13);
      const auto net = model.net(batch, n, mode);
      const auto& logits = net->forward(tokens.data());
      if (lmshrink::models::net_trains(mode)) net->backward(lmshrink::RowMatrix<float>::Ones(logits.rows(), logits.cols()), nullptr);
      // Every layer's caches; an outputs or recompute net reuses one set (each sized for its
      // kind's largest rank).
      std::int64_t ranks = rank_sum;
      if (lmshrink::models::net_keeps_block_inputs_only(mode)) {
        ranks = 0;
        for (int k = 0; k < model.linear_kinds(); ++k) {
          std::int64_t widest = 0;
          for (int l = 0; l < model.shape().n_layers; ++l) widest = std::max<std::int64_t>(widest, model.linear(l, k).rank());
          ranks += widest;
        }
      }
      const std::int64_t caches = 2 * std::int64_t(batch) * n * ranks * std::int64_t(sizeof(float));
      REQUIRE(net->buffer_bytes() == model.net_activation_bytes(batch, n, mode) + caches);
    }
  // Forward-only: no kept probabilities, no backward workspace; outputs: one block's activations.
  REQUIRE(model.net_activation_bytes(2, 6, lmshrink::models::NetMode::forward_only) <
          model.net_activation_bytes(2, 6, lmshrink::models::NetMode::training));
  REQUIRE(model.net_activation_bytes(2, 6, lmshrink::models::NetMode::outputs) <
          model.net_activation_bytes(2, 6, lmshrink::models::NetMode::forward_only));
  // Recompute: one block's activations and attention, not every block's.
  REQUIRE(model.net_activation_bytes(2, 520, lmshrink::models::NetMode::recompute) <
          model.net_activation_bytes(2, 520, lmshrink::models::NetMode::training));
}

TEST_CASE("a recompute net gives the training net's gradients bit for bit, kept or blocked attention", "[trainer][memory]") {
  std::mt19937 rng(29);
  auto w = tiny_model<float>(true, rng);
  w.config.seq_len = 600;
  lmshrink::models::llama::Model model(std::move(w));
  for (int n : {6, 520}) {
    CAPTURE(n);
    const int batch = 2, N = batch * n;
    std::vector<int> tokens(static_cast<std::size_t>(N));
    for (auto& t : tokens) t = int(rng() % 13);
    lmshrink::RowMatrix<float> dlogits(N, 13);
    for (Eigen::Index i = 0; i < dlogits.size(); ++i) dlogits.data()[i] = float(int(rng() % 200) - 100) / 100.0f;
    std::vector<lmshrink::RowMatrix<float>> dblock(std::size_t(model.shape().n_layers));
    dblock[0] = lmshrink::RowMatrix<float>::Constant(N, model.shape().dim, 0.25f);  // a layer-wise loss on block 0
    const auto train = model.net(batch, n, lmshrink::models::NetMode::training);
    const auto rerun = model.net(batch, n, lmshrink::models::NetMode::recompute);
    REQUIRE(rerun->forward(tokens.data()) == train->forward(tokens.data()));
    for (int l = 0; l < model.shape().n_layers; ++l) REQUIRE(rerun->block_output(l) == train->block_output(l));
    for (int step = 0; step < 2; ++step) {  // twice: the second backward accumulates as the first
      train->backward(dlogits, &dblock);
      rerun->backward(dlogits, &dblock);
    }
    for (int l = 0; l < model.shape().n_layers; ++l)
      for (int k = 0; k < model.linear_kinds(); ++k) {
        const auto& a = train->linear_grad(l, k);
        const auto& b = rerun->linear_grad(l, k);
        REQUIRE(a.U == b.U);
        REQUIRE(a.V == b.V);
        REQUIRE(a.S == b.S);
        REQUIRE(a.bias == b.bias);
      }
    const auto pa = train->plain_grads(), pb = rerun->plain_grads();
    REQUIRE(pa.size() == pb.size());
    for (std::size_t i = 0; i < pa.size(); ++i)
      REQUIRE(Eigen::Map<const Eigen::VectorXf>(pa[i].data, pa[i].size) == Eigen::Map<const Eigen::VectorXf>(pb[i].data, pb[i].size));
    REQUIRE_THROWS_WITH(rerun->linear_input(0, 0), Catch::Contains("keeps only logits and block outputs"));
  }
}

TEST_CASE("a profiled net times its phases and computes the same bits", "[trainer][profile]") {
  std::mt19937 rng(31);
  lmshrink::models::llama::Model model(tiny_model<float>(true, rng));
  const int batch = 2, n = 6, N = batch * n;
  std::vector<int> tokens(static_cast<std::size_t>(N));
  for (auto& t : tokens) t = int(rng() % 13);
  const lmshrink::RowMatrix<float> dlogits = lmshrink::RowMatrix<float>::Constant(N, 13, 0.5f);
  for (auto mode : {lmshrink::models::NetMode::training, lmshrink::models::NetMode::recompute}) {
    CAPTURE(int(mode));
    const auto plain = model.net(batch, n, mode), profiled = model.net(batch, n, mode);
    lmshrink::models::NetProfile profile;
    profiled->set_profile(&profile);
    for (int step = 0; step < 2; ++step) {
      REQUIRE(profiled->forward(tokens.data()) == plain->forward(tokens.data()));
      profiled->backward(dlogits, nullptr);
      plain->backward(dlogits, nullptr);
    }
    REQUIRE(profile.forwards == 2);
    REQUIRE(profile.backwards == 2);
    REQUIRE(profile.linear > 0);
    REQUIRE(profile.attention > 0);
    REQUIRE(profile.classifier > 0);
    REQUIRE(profile.rest() >= 0);
    REQUIRE(profiled->linear_grad(0, 0).S == plain->linear_grad(0, 0).S);
    // Detached: nothing more is added.
    const lmshrink::models::NetProfile before = profile;
    profiled->set_profile(nullptr);
    profiled->forward(tokens.data());
    REQUIRE(profile.total == before.total);
    REQUIRE(profile.forwards == 2);
  }
}

TEST_CASE("sharded training gives the batch's loss and gradients, the same for any thread count",
          "[trainer][shards]") {
  using Wf = lmshrink::models::llama::Weights<float>;
  std::mt19937 rng(5);
  lmshrink::models::llama::Model model(tiny_model<float>(true, rng));
  const int batch = 5, n = 6;
  std::vector<int> tokens(std::size_t(batch * n));
  for (auto& t : tokens) t = int(rng() % 13);
  Eigen::VectorXi targets(batch * n);
  for (int i = 0; i < batch * n; ++i) targets[i] = int(rng() % 13);
  // The whole batch at once: mean cross-entropy over every row.
  const auto whole = model.net(batch, n);
  Wf::Mat dlogits(batch * n, 13);
  const double full = lmshrink::cross_entropy<float>(whole->forward(tokens.data()), targets, dlogits);
  whole->zero_grad();
  whole->backward(dlogits, nullptr);
  const auto sharded_loss = [&](examples::ShardedTrainer& net, int threads) {
    return net.step(tokens.data(), threads, [&](int s, lmshrink::models::Net& shard, const int*, const Wf::Mat& logits,
                                               Wf::Mat& d, std::vector<Wf::Mat>&) {
      return lmshrink::cross_entropy<float>(logits, targets.segment(net.first_sequence(s) * n, shard.batch() * n), d);
    });
  };
  // Largest difference; 0 for empty tensors (U and V of a dense layer have rank 0).
  const auto diff = [](const auto& a, const auto& b) {
    REQUIRE(a.rows() == b.rows());
    REQUIRE(a.cols() == b.cols());
    return a.size() == 0 ? 0.0 : double((a - b).cwiseAbs().maxCoeff());
  };
  const auto plain = [](const lmshrink::models::TensorRef& t) { return Eigen::Map<const Eigen::VectorXf>(t.data, t.size); };
  for (int shards : {1, 2, 3}) {
    CAPTURE(shards);
    examples::ShardedTrainer one(model, batch, n, shards), two(model, batch, n, shards);
    const double l1 = sharded_loss(one, 1), l2 = sharded_loss(two, 2);
    REQUIRE(l1 == l2);  // bit for bit: the thread count changes nothing
    REQUIRE(l1 == Approx(full).epsilon(1e-6));
    const auto g_plain = whole->plain_grads();
    REQUIRE(g_plain.size() == one.plain_grads().size());
    for (std::size_t i = 0; i < g_plain.size(); ++i) {
      REQUIRE(diff(plain(one.plain_grads()[i]), plain(two.plain_grads()[i])) == 0.0);
      REQUIRE(diff(plain(one.plain_grads()[i]), plain(g_plain[i])) <= 1e-5);
      if (shards == 1) REQUIRE(diff(plain(one.plain_grads()[i]), plain(g_plain[i])) == 0.0);
    }
    for (int l = 0; l < 2; ++l)
      for (int k = 0; k < lmshrink::models::llama::kLinearKinds; ++k) {
        const auto& a = one.linear_grad(l, k);
        const auto& b = two.linear_grad(l, k);
        const auto& g = whole->linear_grad(l, k);
        REQUIRE(diff(a.U, b.U) == 0.0);
        REQUIRE(diff(a.S, b.S) == 0.0);
        REQUIRE(diff(a.S, g.S) <= 1e-5);
        REQUIRE(diff(a.U, g.U) <= 1e-5);
        REQUIRE(diff(a.V, g.V) <= 1e-5);
      }
  }
  REQUIRE_THROWS_AS(examples::ShardedTrainer(model, batch, n, 6), lmshrink::value_error);
  REQUIRE_THROWS_AS(examples::ShardedTrainer(model, batch, n, 0), lmshrink::value_error);
}

TEST_CASE("kept teacher outputs are the net's bits, computed once per batch, within the size limit",
          "[trainer][teacher_outputs]") {
  using Wf = lmshrink::models::llama::Weights<float>;
  using Cache = examples::TeacherOutputCache;
  std::mt19937 rng(11);
  lmshrink::models::llama::Model model(tiny_model<float>(true, rng));
  const int batch = 2, n = 5, count = batch * n, blocks = 2;
  const auto tokens_of = [&](int seed) {
    std::vector<int> t(static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i) t[std::size_t(i)] = (seed * 7 + i * 3) % 13;
    return t;
  };
  const std::vector<int> a = tokens_of(1), b = tokens_of(2), c = tokens_of(3);
  // The reference: a fresh net's outputs for each batch.
  const auto reference = [&](const std::vector<int>& t) {
    const auto net = model.net(batch, n, lmshrink::models::NetMode::outputs);
    std::vector<Wf::Mat> out{net->forward(t.data())};
    for (int l = 0; l < blocks; ++l) out.push_back(net->block_output(l));
    return out;
  };
  const auto ra = reference(a), rb = reference(b), rc = reference(c);
  const auto same_as = [&](const Cache::Outputs& o, const std::vector<Wf::Mat>& r, int with_blocks) {
    REQUIRE(o.logits().rows() == r[0].rows());
    REQUIRE(o.logits().cols() == r[0].cols());
    CHECK(o.logits() == r[0]);  // bit for bit
    for (int l = 0; l < with_blocks; ++l) CHECK(o.block(l) == r[std::size_t(l) + 1]);
  };
  const auto first = model.net(batch, n, lmshrink::models::NetMode::outputs);
  const auto second = model.net(batch, n, lmshrink::models::NetMode::outputs);
  const std::int64_t entry = Cache::entry_bytes(count, 13, blocks, 8);
  REQUIRE(entry == 4 * count * (13 + 2 * 8));

  SECTION("a batch is computed once, then read by any net") {
    Cache cache(10 * entry);
    const auto x = cache.outputs(*first, a.data(), count, blocks);
    CHECK_FALSE(x.hit());
    same_as(x, ra, blocks);
    const auto y = cache.outputs(*second, a.data(), count, blocks);
    CHECK(y.hit());
    same_as(y, ra, blocks);
    // The first net moved on to another batch: the kept copy is unchanged.
    const auto z = cache.outputs(*first, b.data(), count, blocks);
    CHECK_FALSE(z.hit());
    same_as(z, rb, blocks);
    same_as(cache.outputs(*second, a.data(), count, 1), ra, 1);  // fewer blocks: the same entry
    const auto st = cache.stats();
    CHECK(st.hits == 2);
    CHECK(st.misses == 2);
    CHECK(st.entries == 2);
    CHECK(st.bytes == 2 * entry);
    CHECK(st.evicted == 0);
  }
  SECTION("more blocks than kept: computed again and kept with them") {
    Cache cache(10 * entry);
    const std::int64_t logits_only = Cache::entry_bytes(count, 13, 0, 8);
    CHECK_FALSE(cache.outputs(*first, a.data(), count, 0).hit());
    CHECK(cache.stats().bytes == logits_only);
    const auto x = cache.outputs(*second, a.data(), count, blocks);
    CHECK_FALSE(x.hit());
    same_as(x, ra, blocks);
    CHECK(cache.outputs(*first, a.data(), count, blocks).hit());
    CHECK(cache.stats().entries == 1);
    CHECK(cache.stats().bytes == entry);
  }
  SECTION("over the limit, the oldest entry no one reads makes room") {
    Cache cache(2 * entry);
    cache.outputs(*first, a.data(), count, blocks);
    cache.outputs(*first, b.data(), count, blocks);
    {
      const auto held = cache.outputs(*second, a.data(), count, blocks);  // a is being read
      CHECK(held.hit());
      const auto x = cache.outputs(*first, c.data(), count, blocks);  // evicts b, the oldest unread
      CHECK_FALSE(x.hit());
      same_as(x, rc, blocks);
      same_as(held, ra, blocks);
      CHECK(cache.stats().evicted == 1);
      CHECK(cache.outputs(*second, c.data(), count, blocks).hit());
      // a and c are both being read: b is answered by the net and not kept.
      const auto y = cache.outputs(*second, b.data(), count, blocks);
      CHECK_FALSE(y.hit());
      same_as(y, rb, blocks);
      CHECK(cache.stats().entries == 2);
      CHECK(cache.stats().evicted == 1);
    }
    CHECK_FALSE(cache.outputs(*second, b.data(), count, blocks).hit());  // no one reads now: a, the oldest, goes
    CHECK(cache.stats().evicted == 2);
    CHECK(cache.stats().bytes == 2 * entry);
    // Every entry read at once: a new batch is answered by the net and not kept.
    const auto hold_b = cache.outputs(*first, b.data(), count, blocks);
    const auto hold_c = cache.outputs(*first, c.data(), count, blocks);
    REQUIRE(hold_b.hit());
    REQUIRE(hold_c.hit());
    const auto x = cache.outputs(*second, a.data(), count, blocks);
    CHECK_FALSE(x.hit());
    same_as(x, ra, blocks);
    CHECK(cache.stats().entries == 2);
    CHECK_FALSE(cache.outputs(*first, a.data(), count, blocks).hit());
  }
  SECTION("no room at all: every call runs the caller's net") {
    for (const std::int64_t limit : {std::int64_t(0), entry - 1}) {
      Cache cache(limit);
      for (int round = 0; round < 2; ++round) {
        const auto x = cache.outputs(*first, a.data(), count, blocks);
        CHECK_FALSE(x.hit());
        same_as(x, ra, blocks);
      }
      CHECK(cache.stats().entries == 0);
      CHECK(cache.stats().bytes == 0);
    }
  }
  SECTION("callers asking for one batch at once: one computes, the others wait and read it") {
    Cache cache(10 * entry);
    const int callers = 4;
    std::vector<std::unique_ptr<lmshrink::models::Net>> nets;
    for (int i = 0; i < callers; ++i) nets.push_back(model.net(batch, n, lmshrink::models::NetMode::outputs));
    std::vector<int> same(callers, 0);
    std::vector<std::thread> threads;
    for (int i = 0; i < callers; ++i)
      threads.emplace_back([&, i] {
        for (int round = 0; round < 20; ++round) {
          const auto& t = round % 2 ? a : b;
          const auto o = cache.outputs(*nets[std::size_t(i)], t.data(), count, blocks);
          const auto& r = round % 2 ? ra : rb;
          bool ok = o.logits() == r[0];
          for (int l = 0; l < blocks; ++l) ok = ok && o.block(l) == r[std::size_t(l) + 1];
          same[std::size_t(i)] += ok;
        }
      });
    for (auto& t : threads) t.join();
    for (int i = 0; i < callers; ++i) CHECK(same[std::size_t(i)] == 20);
    CHECK(cache.stats().misses == 2);
    CHECK(cache.stats().hits == callers * 20 - 2);
  }
  SECTION("bad input") {
    REQUIRE_THROWS_AS(Cache(-1), lmshrink::value_error);
    REQUIRE_THROWS_WITH(Cache(-1), Catch::Contains("got -1 bytes"));
    Cache cache(10 * entry);
    REQUIRE_THROWS_AS(cache.outputs(*first, a.data(), 0, blocks), lmshrink::value_error);
    REQUIRE_THROWS_AS(cache.outputs(*first, a.data(), count, -1), lmshrink::value_error);
    // A net over other shapes than the tokens given: named, and nothing is kept.
    const auto wide = model.net(batch + 1, n, lmshrink::models::NetMode::outputs);
    std::vector<int> more(std::size_t((batch + 1) * n), 1);
    std::copy(a.begin(), a.end(), more.begin());
    REQUIRE_THROWS_AS(cache.outputs(*wide, more.data(), count, blocks), lmshrink::shape_error);
    REQUIRE_THROWS_WITH(cache.outputs(*wide, more.data(), count, blocks),
                        Catch::Contains("over 10 tokens") && Catch::Contains("15 rows"));
    CHECK(cache.stats().entries == 0);
    CHECK(cache.stats().bytes == 0);
    CHECK_FALSE(cache.outputs(*first, a.data(), count, blocks).hit());  // the failed batch left no entry behind
  }
}

TEST_CASE("the teacher packed like the students generates what the dense decoder does",
          "[trainer][decode]") {
  const auto model = lmshrink::models::llama::read_llama2c(LMSHRINK_DATA_DIR "/stories260K.bin");
  const auto packed = lmshrink::models::llama::Compact::pack_dense(model);
  REQUIRE(packed.parameters() == model.parameter_count());
  lmshrink::models::llama::DenseKvDecoder dense(model);
  lmshrink::models::llama::KvDecoder<lmshrink::models::llama::CompactView> compact(packed);
  int token = 1;
  for (int pos = 0; pos < 64; ++pos) {
    const lmshrink::models::llama::Vec a = dense.forward(token, pos);
    const lmshrink::models::llama::Vec& b = compact.forward(token, pos);
    REQUIRE((a - b).cwiseAbs().maxCoeff() <= 1e-3f * (1 + a.cwiseAbs().maxCoeff()));
    Eigen::Index next = 0;
    a.maxCoeff(&next);
    token = int(next);
  }
}

TEST_CASE("synthetic students spend each layer's budget as asked", "[trainer][synthetic]") {
  for (auto shape : {std::make_pair(768, 768), std::make_pair(3072, 768), std::make_pair(64, 172)})
    for (double q : {0.5, 0.3}) {
      const auto b = lmshrink::models::llama::split_budget(shape.first, shape.second, q, 0.2);
      const double budget = q * shape.first * shape.second;
      CAPTURE(shape.first, shape.second, q, b.rank, b.kept_rows);
      REQUIRE(double(b.parameters(shape.first, shape.second)) <= budget);
      // Within one rank of the budget, and about a fifth of it in kept rows.
      REQUIRE(double(b.parameters(shape.first, shape.second)) > budget - (shape.first + shape.second));
      REQUIRE(double(b.kept_rows * shape.second) <= 0.2 * budget);
      REQUIRE(double(b.kept_rows * shape.second) > 0.2 * budget - shape.second);
    }
  auto model = lmshrink::models::llama::synthetic_model(lmshrink::models::llama::stories15m_shape(), 3);
  model.config.n_layers = 1;  // one block is enough to count
  model.wq.resize(1), model.wk.resize(1), model.wv.resize(1), model.wo.resize(1);
  model.w1.resize(1), model.w2.resize(1), model.w3.resize(1);
  model.rms_att.resize(1), model.rms_ffn.resize(1);
  lmshrink::models::llama::SyntheticCompactOptions o;
  o.q = 0.5;
  const auto half = lmshrink::models::llama::synthetic_compact(model, o);
  std::int64_t dense = 0, kept = 0;
  for (const auto& layer : half.linear[0]) {
    dense += layer.out_features() * layer.in_features();
    kept += layer.parameters();
  }
  REQUIRE(double(kept) / double(dense) == Approx(0.5).margin(0.01));
  REQUIRE_THROWS_AS(lmshrink::models::llama::split_budget(10, 10, 1.5, 0.2), lmshrink::value_error);
}
