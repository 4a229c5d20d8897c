// The Qwen2 family (lmshrink/models/qwen2/model.hpp): a Hugging Face "qwen2" directory written
// here tensor by tensor is read through the registry, and every forward lmshrink has for it (the
// decoder over the model's own layers, the KV-cache step, the packed form, the trainer) agrees
// with a float64 reference written below from Hugging Face's Qwen2 semantics alone: rotate-half
// RoPE on the stored rows, q/k/v biases, grouped-query attention, RMSNorm, SwiGLU. Gradients of
// the biases equal central differences in double; checkpoints and exports read back exactly;
// what Qwen2 lmshrink does not implement is a clear error.
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <lmshrink/models/qwen2/model.hpp>
#include <lmshrink/models/registry.hpp>

#include "test_helpers.hpp"

namespace {

namespace fs = std::filesystem;
using MatD = lmshrink::RowMatrix<double>;
using VecD = Eigen::VectorXd;

// A tiny Qwen2 in Hugging Face layout: 2 blocks, 4 query heads sharing 2 key/value heads.
struct HfQwen2 {
  int dim = 16, hidden = 24, layers = 2, heads = 4, kv_heads = 2, vocab = 37, positions = 32;
  double eps = 1e-6, theta = 1e6;
  // RoPE scaling of the reference (Hugging Face's formulas, in double): "", "linear" or "llama3",
  // with factor 4, and for llama3 frequency factors 1 and 4 around an original context of 16.
  std::string rope_scaling;
  bool tied = true;
  MatD embed, lm_head;
  VecD norm;
  struct Block {
    VecD in_norm, post_norm, bq, bk, bv;
    MatD q, k, v, o, gate, up, down;
  };
  std::vector<Block> blocks;

  int head_size() const { return dim / heads; }
  int kv_dim() const { return kv_heads * head_size(); }

  explicit HfQwen2(bool tied_embeddings, std::uint64_t seed = 11) : tied(tied_embeddings) {
    std::uint64_t s = seed;
    const auto m = [&](int r, int c, double scale) { return test::random_matrix<double>(r, c, ++s, scale); };
    const auto v = [&](int n, double scale, double offset) {
      return VecD(m(n, 1, scale).col(0).array() + offset);
    };
    embed = m(vocab, dim, 1.0);
    if (!tied) lm_head = m(vocab, dim, 0.5);
    norm = v(dim, 0.1, 1.0);
    for (int l = 0; l < layers; ++l) {
      Block b;
      b.in_norm = v(dim, 0.1, 1.0);
      b.post_norm = v(dim, 0.1, 1.0);
      b.q = m(dim, dim, 0.3);
      b.k = m(kv_dim(), dim, 0.3);
      b.v = m(kv_dim(), dim, 0.3);
      b.o = m(dim, dim, 0.3);
      b.bq = v(dim, 0.5, 0.0);  // biases large enough that dropping or misplacing one shows
      b.bk = v(kv_dim(), 0.5, 0.0);
      b.bv = v(kv_dim(), 0.5, 0.0);
      b.gate = m(hidden, dim, 0.3);
      b.up = m(hidden, dim, 0.3);
      b.down = m(dim, hidden, 0.3);
      blocks.push_back(b);
    }
  }

  std::string config_json(const std::string& extra = "") const {
    return std::string("{\n  \"architectures\": [\"Qwen2ForCausalLM\"],\n  \"attention_dropout\": 0.0,\n") +
           "  \"bos_token_id\": 1,\n  \"eos_token_id\": 2,\n  \"hidden_act\": \"silu\",\n" +
           "  \"hidden_size\": " + std::to_string(dim) + ",\n  \"initializer_range\": 0.02,\n" +
           "  \"intermediate_size\": " + std::to_string(hidden) + ",\n" +
           "  \"max_position_embeddings\": " + std::to_string(positions) + ",\n  \"max_window_layers\": 21,\n" +
           "  \"model_type\": \"qwen2\",\n  \"num_attention_heads\": " + std::to_string(heads) + ",\n" +
           "  \"num_hidden_layers\": " + std::to_string(layers) + ",\n" +
           "  \"num_key_value_heads\": " + std::to_string(kv_heads) + ",\n  \"rms_norm_eps\": 1e-06,\n" +
           "  \"rope_theta\": 1000000.0,\n  \"sliding_window\": 4096,\n" +
           "  \"tie_word_embeddings\": " + (tied ? "true" : "false") + ",\n  \"torch_dtype\": \"bfloat16\",\n" +
           "  \"use_cache\": true,\n  \"use_sliding_window\": false,\n" + extra +
           "  \"vocab_size\": " + std::to_string(vocab) + "\n}\n";
  }

  lmshrink::SafeTensors tensors() const {
    lmshrink::SafeTensors st;
    st.metadata["format"] = "pt";
    const auto put = [&](const std::string& name, const auto& t) { st.put(name, t.template cast<float>().eval()); };
    put("model.embed_tokens.weight", embed);
    if (!tied) put("lm_head.weight", lm_head);
    put("model.norm.weight", norm);
    for (int l = 0; l < layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      const Block& b = blocks[std::size_t(l)];
      put(p + "input_layernorm.weight", b.in_norm);
      put(p + "post_attention_layernorm.weight", b.post_norm);
      put(p + "self_attn.q_proj.weight", b.q);
      put(p + "self_attn.q_proj.bias", b.bq);
      put(p + "self_attn.k_proj.weight", b.k);
      put(p + "self_attn.k_proj.bias", b.bk);
      put(p + "self_attn.v_proj.weight", b.v);
      put(p + "self_attn.v_proj.bias", b.bv);
      put(p + "self_attn.o_proj.weight", b.o);
      put(p + "mlp.gate_proj.weight", b.gate);
      put(p + "mlp.up_proj.weight", b.up);
      put(p + "mlp.down_proj.weight", b.down);
    }
    return st;
  }

  /// Writes config.json and model.safetensors into a fresh directory.
  std::string write(const std::string& name, const std::string& extra_config = "",
                    const lmshrink::SafeTensors* st = nullptr) const {
    const std::string dir = std::string(LMSHRINK_TEST_TMP) + "/qwen2_" + name;
    fs::remove_all(dir);
    fs::create_directories(dir);
    std::ofstream(dir + "/config.json") << config_json(rope_scaling_json() + extra_config);
    lmshrink::write_safetensors(st ? *st : tensors(), dir + "/model.safetensors");
    return dir;
  }

  // ---- the float64 reference: Hugging Face's Qwen2 forward ----------------------------------
  // The weights are the float32 values the file holds, so the comparison measures the forward.
  static MatD f32(const MatD& m) { return m.cast<float>().cast<double>(); }
  static VecD f32(const VecD& v) { return v.cast<float>().cast<double>(); }

  MatD rms_norm(const MatD& x, const VecD& w) const {
    MatD y(x.rows(), x.cols());
    for (Eigen::Index t = 0; t < x.rows(); ++t)
      y.row(t) = (x.row(t).array() * f32(w).transpose().array()) /
                 std::sqrt(x.row(t).squaredNorm() / double(x.cols()) + eps);
    return y;
  }
  double scaled(double f) const {
    const double factor = 4, low = 1, high = 4, original = 16, pi = 3.14159265358979323846;
    if (rope_scaling == "linear") return f / factor;
    if (rope_scaling != "llama3") return f;
    const double wavelength = 2 * pi / f;
    if (wavelength < original / high) return f;
    if (wavelength > original / low) return f / factor;
    const double s = (original / wavelength - low) / (high - low);
    return (1 - s) * f / factor + s * f;
  }
  std::string rope_scaling_json() const {
    if (rope_scaling == "linear") return "  \"rope_scaling\": {\"type\": \"linear\", \"factor\": 4.0},\n";
    if (rope_scaling == "llama3")
      return "  \"rope_scaling\": {\"factor\": 4.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
             "\"original_max_position_embeddings\": 16, \"rope_type\": \"llama3\"},\n";
    return "";
  }
  // Rotate-half RoPE: pairs (i, i + hs/2) of each head, angle pos · scaled(theta^(−2i/hs)).
  void rope(MatD& x, int n_heads) const {
    const int hs = head_size(), half = hs / 2;
    for (Eigen::Index t = 0; t < x.rows(); ++t)
      for (int h = 0; h < n_heads; ++h)
        for (int i = 0; i < half; ++i) {
          const double angle = double(t) * scaled(std::pow(theta, -2.0 * i / hs));
          const double a = x(t, h * hs + i), b = x(t, h * hs + i + half);
          x(t, h * hs + i) = a * std::cos(angle) - b * std::sin(angle);
          x(t, h * hs + i + half) = b * std::cos(angle) + a * std::sin(angle);
        }
  }
  MatD logits(const std::vector<int>& tokens) const {
    const Eigen::Index n = Eigen::Index(tokens.size());
    const int hs = head_size(), group = heads / kv_heads;
    MatD x(n, dim);
    for (Eigen::Index t = 0; t < n; ++t) x.row(t) = f32(embed).row(tokens[std::size_t(t)]);
    for (const Block& b : blocks) {
      const MatD h = rms_norm(x, b.in_norm);
      MatD q = (h * f32(b.q).transpose()).rowwise() + f32(b.bq).transpose();
      MatD k = (h * f32(b.k).transpose()).rowwise() + f32(b.bk).transpose();
      const MatD v = (h * f32(b.v).transpose()).rowwise() + f32(b.bv).transpose();
      rope(q, heads);
      rope(k, kv_heads);
      MatD att = MatD::Zero(n, dim);
      for (int hd = 0; hd < heads; ++hd) {
        const int kvh = hd / group;
        for (Eigen::Index t = 0; t < n; ++t) {
          VecD score(t + 1);
          for (Eigen::Index u = 0; u <= t; ++u)
            score[u] = q.row(t).segment(hd * hs, hs).dot(k.row(u).segment(kvh * hs, hs)) / std::sqrt(double(hs));
          score = (score.array() - score.maxCoeff()).exp();
          score /= score.sum();
          for (Eigen::Index u = 0; u <= t; ++u) att.row(t).segment(hd * hs, hs) += score[u] * v.row(u).segment(kvh * hs, hs);
        }
      }
      x += att * f32(b.o).transpose();
      const MatD h2 = rms_norm(x, b.post_norm);
      const MatD g = h2 * f32(b.gate).transpose(), u = h2 * f32(b.up).transpose();
      const MatD act = (g.array() / (1.0 + (-g.array()).exp()) * u.array()).matrix();
      x += act * f32(b.down).transpose();
    }
    return rms_norm(x, norm) * (tied ? f32(embed) : f32(lm_head)).transpose();
  }
};

const std::vector<int> kTokens = {3, 17, 0, 36, 5, 5, 22, 9, 30, 1, 14, 2};

double max_abs_diff(const MatD& a, const lmshrink::RowMatrix<float>& b) {
  REQUIRE(a.rows() == b.rows());
  REQUIRE(a.cols() == b.cols());
  return (a - b.cast<double>()).cwiseAbs().maxCoeff();
}

}  // namespace

TEST_CASE("a Qwen2 directory is read as family qwen2, and every forward equals the float64 reference",
          "[qwen2]") {
  for (const bool tied : {true, false}) {
    CAPTURE(tied);
    const HfQwen2 hf(tied);
    const std::string dir = hf.write(tied ? "tied" : "untied");
    const auto model = lmshrink::models::load_model(dir);
    REQUIRE(model->family() == "qwen2");
    REQUIRE(model->shape().n_kv_heads == 2);
    const MatD expected = hf.logits(kTokens);
    const int n = int(kTokens.size());
    const double scale = expected.cwiseAbs().maxCoeff();
    REQUIRE(scale > 1);  // logits of a size where float32 rounding shows as ~1e-6 relative

    // The decoder over the model's own layers: full sequence and KV-cache steps.
    const auto decoder = model->decoder();
    const double seq = max_abs_diff(expected, decoder->forward_sequence(kTokens.data(), n));
    lmshrink::RowMatrix<float> steps(n, hf.vocab);
    const auto kv = model->decoder();
    for (int t = 0; t < n; ++t) steps.row(t) = kv->forward_token(kTokens[std::size_t(t)], t).transpose();
    const double step = max_abs_diff(expected, steps);
    // The packed form and the trainer: the distillation targets come from the latter.
    const auto packed = model->pack();
    const double compact = max_abs_diff(expected, packed->decoder()->forward_sequence(kTokens.data(), n));
    const auto forms = packed->linear_forms();  // a dense model packs every layer dense
    REQUIRE(forms.size() == std::size_t(model->shape().n_layers * model->linear_kinds()));
    for (const auto form : forms) REQUIRE(form == lmshrink::CompactForm::dense);
    auto copy = model->clone();
    const double trainer = max_abs_diff(expected, copy->net(1, n)->forward(kTokens.data()));
    CAPTURE(scale, seq, step, compact, trainer);
    for (const double d : {seq, step, compact, trainer}) REQUIRE(d < 2e-6 * scale);  // measured 3.6e-7 and 7.3e-7 of the largest logit
  }
}

TEST_CASE("RoPE scaling (linear, llama3): every forward equals the float64 reference, and checkpoints keep it",
          "[qwen2][rope]") {
  for (const char* type : {"linear", "llama3"}) {
    CAPTURE(type);
    HfQwen2 hf(true);
    hf.rope_scaling = type;
    const std::string dir = hf.write(std::string("rope_") + type);
    const auto model = lmshrink::models::load_model(dir);
    const MatD expected = hf.logits(kTokens);
    const int n = int(kTokens.size());
    const double scale = expected.cwiseAbs().maxCoeff();
    const double seq = max_abs_diff(expected, model->decoder()->forward_sequence(kTokens.data(), n));
    lmshrink::RowMatrix<float> steps(n, hf.vocab);
    const auto packed = model->pack();  // the compact form's KV-cache steps
    const auto kv = packed->decoder();
    for (int t = 0; t < n; ++t) steps.row(t) = kv->forward_token(kTokens[std::size_t(t)], t).transpose();
    const double step = max_abs_diff(expected, steps);
    auto copy = model->clone();
    const double trainer = max_abs_diff(expected, copy->net(1, n)->forward(kTokens.data()));
    const std::string path = std::string(LMSHRINK_TEST_TMP) + "/qwen2_rope_" + type + ".safetensors";
    model->save(path, "dense", {});
    const double reloaded = max_abs_diff(expected, lmshrink::models::load_checkpoint(path)->decoder()->forward_sequence(kTokens.data(), n));
    CAPTURE(scale, seq, step, trainer, reloaded);
    for (const double d : {seq, step, trainer, reloaded}) REQUIRE(d < 2e-6 * scale);
    // Without the scaling the reference differs: the check sees it.
    hf.rope_scaling = "";
    REQUIRE(max_abs_diff(hf.logits(kTokens), model->decoder()->forward_sequence(kTokens.data(), n)) > 1e-3 * scale);
  }
}

TEST_CASE("dropping the q/k/v biases changes the logits: the reference would see a bias lost",
          "[qwen2]") {
  HfQwen2 hf(true);
  const MatD with = hf.logits(kTokens);
  for (auto& b : hf.blocks) b.bk.setZero();
  REQUIRE((hf.logits(kTokens) - with).cwiseAbs().maxCoeff() > 1e-2);
}

TEST_CASE("Qwen2 checkpoints, exports and conversions read back exactly, as qwen2", "[qwen2]") {
  const HfQwen2 hf(false);
  const std::string dir = hf.write("roundtrip");
  auto model = lmshrink::models::load_model(dir);
  // One layer compressed: U·V + S with pruned rows, its bias kept.
  auto& q = model->linear(1, lmshrink::models::llama::kWq);
  lmshrink::RowMask rows(q.out_features());
  for (Eigen::Index r = 0; r < rows.size(); ++r) rows[r] = r % 3 != 0;
  q.set_row_mask(rows);
  q.set_low_rank(test::random_matrix<float>(q.out_features(), 2, 5, 0.1),
                 test::random_matrix<float>(2, q.in_features(), 6, 0.1));
  const int n = int(kTokens.size());
  const lmshrink::RowMatrix<float> before = model->decoder()->forward_sequence(kTokens.data(), n);

  const std::string path = std::string(LMSHRINK_TEST_TMP) + "/qwen2_student.safetensors";
  model->save(path, "test", {});
  const auto st = lmshrink::read_safetensors(path);
  REQUIRE(st.meta("lmshrink.checkpoint") == "qwen2/1");
  const auto back = lmshrink::models::load_checkpoint(path);
  REQUIRE(back->family() == "qwen2");
  REQUIRE(back->decoder()->forward_sequence(kTokens.data(), n) == before);
  REQUIRE(back->linear(1, lmshrink::models::llama::kWq).bias() == q.bias());

  // A llama checkpoint reader refuses it, and a qwen2 one refuses a checkpoint without biases.
  REQUIRE_THROWS_WITH(lmshrink::models::llama::read_checkpoint(path),
                      Catch::Contains("has no 'lmshrink.checkpoint: llama/1' metadata"));

  // The dense export is a Qwen2 directory that loads back to the same logits (dense).
  const auto dense = lmshrink::models::load_model(dir);
  const std::string exported = dense->export_dense(std::string(LMSHRINK_TEST_TMP) + "/qwen2_export");
  REQUIRE(exported == std::string(LMSHRINK_TEST_TMP) + "/qwen2_export_hf");
  REQUIRE(lmshrink::read_hf_model_type(exported + "/config.json") == "qwen2");
  const auto reread = lmshrink::models::load_model(exported);
  REQUIRE(reread->family() == "qwen2");
  REQUIRE(reread->decoder()->forward_sequence(kTokens.data(), n) ==
          dense->decoder()->forward_sequence(kTokens.data(), n));
  // The export's tensors are the file's own, bias rows in Hugging Face's order.
  const auto exported_st = lmshrink::read_safetensors(exported + "/model.safetensors");
  const auto original_st = lmshrink::read_safetensors(dir + "/model.safetensors");
  for (const char* name : {"model.layers.0.self_attn.q_proj.bias", "model.layers.1.self_attn.k_proj.bias",
                           "model.layers.1.self_attn.q_proj.weight"})
    REQUIRE(exported_st.tensors.at(name).bytes == original_st.tensors.at(name).bytes);

  // convert_checkpoint: to BF16 with torch_dtype saying so; never to a llama2.c file.
  const std::string converted = std::string(LMSHRINK_TEST_TMP) + "/qwen2_bf16";
  const auto c = lmshrink::models::convert_checkpoint(dir, converted, "bf16", 0);
  REQUIRE(c.from_format == "qwen2");
  std::ifstream config(converted + "/config.json");
  const std::string text((std::istreambuf_iterator<char>(config)), std::istreambuf_iterator<char>());
  REQUIRE(text.find("\"torch_dtype\": \"bfloat16\"") != std::string::npos);
  REQUIRE(lmshrink::models::load_model(converted)->family() == "qwen2");
  REQUIRE_THROWS_WITH(lmshrink::models::convert_checkpoint(dir, converted + ".bin", "f32", 0),
                      Catch::Contains("llama2.c files cannot hold its q/k/v biases"));
}

TEST_CASE("a truncated or from-scratch Qwen2 stays qwen2, with its biases", "[qwen2]") {
  const HfQwen2 hf(true);
  const auto model = lmshrink::models::load_model(hf.write("truncate"));
  const auto one = model->truncated({1});
  REQUIRE(one->family() == "qwen2");
  REQUIRE(one->shape().n_layers == 1);
  REQUIRE(one->linear(0, lmshrink::models::llama::kWv).bias() ==
          model->linear(1, lmshrink::models::llama::kWv).bias());
  HfQwen2 second = hf;
  second.blocks.erase(second.blocks.begin());
  second.layers = 1;
  const int n = int(kTokens.size());
  REQUIRE(max_abs_diff(second.logits(kTokens), one->decoder()->forward_sequence(kTokens.data(), n)) <
          2e-6 * second.logits(kTokens).cwiseAbs().maxCoeff());

  const auto scratch = model->from_scratch(0.5, 3);
  REQUIRE(scratch->family() == "qwen2");
  REQUIRE(scratch->linear(0, lmshrink::models::llama::kWq).has_bias());
  REQUIRE(scratch->linear(0, lmshrink::models::llama::kWq).bias().isZero());
  REQUIRE(!scratch->linear(0, lmshrink::models::llama::kWo).has_bias());
  const double kept = double(scratch->linear_parameters()) / double(model->linear_dense_parameters());
  CAPTURE(kept);
  REQUIRE(kept <= 0.5);
  REQUIRE(kept > 0.45);
}

TEST_CASE("the q/k/v bias gradients of the trainer equal central differences in double", "[qwen2][trainer]") {
  const HfQwen2 hf(true);
  const lmshrink::models::llama::DenseModel m = lmshrink::models::qwen2::read_hf(hf.write("gradients"));
  auto w = lmshrink::models::llama::Weights<double>::from_model(m);
  const int batch = 2, n = 5;
  lmshrink::models::llama::Trainer<double> net(w, batch, n);
  const std::vector<int> tokens = {3, 17, 0, 36, 5, 5, 22, 9, 30, 1};
  const MatD r = test::random_matrix<double>(batch * n, hf.vocab, 99);
  const auto loss = [&] { return net.forward(tokens.data()).cwiseProduct(r).sum(); };
  loss();
  net.zero_grad();
  net.backward(r);
  const auto g = net.grads();
  double worst = 0;
  int checked = 0;
  for (int l = 0; l < hf.layers; ++l)
    for (const int kind : {lmshrink::models::llama::kWq, lmshrink::models::llama::kWk, lmshrink::models::llama::kWv}) {
      auto& bias = w.linear[std::size_t(l)][std::size_t(kind)].bias();
      const auto& grad = g.linear[std::size_t(l)][std::size_t(kind)].bias;
      REQUIRE(grad.size() == bias.size());
      for (Eigen::Index i = 0; i < bias.size(); ++i) {
        const double fd = test::central_difference(&bias[i], 1e-5, loss);
        const double err = std::abs(fd - grad[i]) / std::max(1.0, std::abs(fd));
        CAPTURE(l, kind, i, fd, grad[i]);
        REQUIRE(err < 1e-6);
        worst = std::max(worst, err);
        ++checked;
      }
    }
  CAPTURE(worst);
  REQUIRE(checked == hf.layers * (hf.dim + 2 * hf.kv_dim()));
  REQUIRE(!w.linear[0][lmshrink::models::llama::kWo].has_bias());
}

TEST_CASE("what lmshrink does not implement of Qwen2, and files that disagree, are clear errors",
          "[qwen2][errors]") {
  const HfQwen2 hf(true);
  const auto refused = [&](const std::string& extra, const std::string& message) {
    CAPTURE(extra);
    const std::string dir = hf.write("refused", extra);
    REQUIRE_THROWS_AS(lmshrink::models::load_model(dir), lmshrink::format_error);
    REQUIRE_THROWS_WITH(lmshrink::models::load_model(dir), Catch::Contains(message));
  };
  refused("  \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4.0},\n", "the type is 'yarn'");
  refused("  \"head_dim\": 8,\n", "'head_dim' is 8 but hidden_size / heads is 4");
  // use_sliding_window is already false in the config; a second key overrides it in the parser.
  {
    std::string text = hf.config_json();
    text.replace(text.find("\"use_sliding_window\": false"), 27, "\"use_sliding_window\": true");
    const std::string dir = hf.write("sliding");
    std::ofstream(dir + "/config.json") << text;
    REQUIRE_THROWS_WITH(lmshrink::models::load_model(dir), Catch::Contains("sliding-window attention"));
    text = hf.config_json();
    const auto at = text.find("  \"num_key_value_heads\"");
    text.erase(at, text.find('\n', at) - at + 1);
    std::ofstream(dir + "/config.json") << text;
    REQUIRE_THROWS_WITH(lmshrink::models::load_model(dir), Catch::Contains("the key 'num_key_value_heads' is missing"));
  }
  // A missing bias, and a bias of the wrong length, name the tensor.
  lmshrink::SafeTensors st = hf.tensors();
  st.tensors.erase("model.layers.1.self_attn.v_proj.bias");
  REQUIRE_THROWS_WITH(lmshrink::models::load_model(hf.write("no_bias", "", &st)),
                      Catch::Contains("model.layers.1.self_attn.v_proj.bias"));
  st = hf.tensors();
  st.put("model.layers.0.self_attn.q_proj.bias", Eigen::VectorXf::Zero(15).eval());
  REQUIRE_THROWS_WITH(lmshrink::models::load_model(hf.write("short_bias", "", &st)),
                      Catch::Contains("model.layers.0.self_attn.q_proj.bias"));

  // Biases cannot be dropped silently: not into a llama2.c file, nor a "llama" config.
  const lmshrink::models::llama::DenseModel m = lmshrink::models::qwen2::read_hf(hf.write("writers"));
  REQUIRE_THROWS_AS(lmshrink::models::llama::write_llama2c(m, std::string(LMSHRINK_TEST_TMP) + "/qwen2.bin"), lmshrink::value_error);
  REQUIRE(!fs::exists(std::string(LMSHRINK_TEST_TMP) + "/qwen2.bin"));
  REQUIRE_THROWS_WITH(lmshrink::models::llama::write_hf(m, std::string(LMSHRINK_TEST_TMP) + "/qwen2_as_llama"),
                      Catch::Contains("models::qwen2::write_hf"));
  lmshrink::models::llama::DenseModel plain = m;
  plain.config.qkv_bias = false;
  REQUIRE_THROWS_AS(lmshrink::models::qwen2::make_model(plain), lmshrink::value_error);

  // No tokenizer of Qwen2's own is read yet (tokenizer.json): the registry says what to give.
  const auto model = lmshrink::models::qwen2::make_model(m);
  REQUIRE_THROWS_WITH(lmshrink::models::load_codec(*model, hf.write("codec"), ""),
                      Catch::Contains("no tokenizer was given for the qwen2 model") &&
                          Catch::Contains("give a tokenizer.model or a llama2.c tokenizer file"));
  // An unknown family names those it knows.
  const std::string dir = hf.write("gpt_neox");
  std::ofstream(dir + "/config.json") << "{\"model_type\": \"gpt_neox\"}";
  REQUIRE_THROWS_WITH(lmshrink::models::load_model(dir),
                      Catch::Contains("model_type 'gpt_neox'") && Catch::Contains("\"qwen2\""));
}
