#pragma once
// llama2.c checkpoints (legacy version-0 layout), read and written.
//
// Layout, little-endian: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
// seq_len), then float32 tensors, each matrix (out, in) row-major:
//   token_embedding (vocab, dim), rms_att (L, dim), wq (L, dim, dim), wk (L, kv_dim, dim),
//   wv (L, kv_dim, dim), wo (L, dim, dim), rms_ffn (L, dim), w1 (L, hidden, dim),
//   w2 (L, dim, hidden), w3 (L, hidden, dim), rms_final (dim), freq_cis_real (seq, head/2),
//   freq_cis_imag (seq, head/2), and wcls (vocab, dim) only when vocab_size < 0 in the header.
//
//   lmshrink::models::llama::DenseModel model = lmshrink::models::llama::read_llama2c("stories260K.bin");
//   for (auto& w : model.linear_weights()) svd_init<float>(*w.matrix, layer, opt);

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "../../config.hpp"
#pragma push_macro("LMSHRINK_INSIDE_LIBRARY")
#define LMSHRINK_INSIDE_LIBRARY
#include "../../detail/atomic_file.hpp"
#include "../../detail/read_file.hpp"
#pragma pop_macro("LMSHRINK_INSIDE_LIBRARY")
#include "../../errors.hpp"
#include "../../types.hpp"
#include "dense.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace models {
namespace llama {

namespace llama2c_detail {

/// Bytes of the whole file a header describes, or -1 if the numbers are absurd.
inline std::int64_t llama2c_file_bytes(const Config& c) {
  const std::int64_t d = c.dim, h = c.hidden_dim, L = c.n_layers, v = c.vocab_size,
                     s = c.seq_len, kv = std::int64_t(c.dim) * c.n_kv_heads / c.n_heads,
                     hs = c.dim / c.n_heads;
  std::int64_t floats = v * d + L * d + L * d * d + 2 * L * kv * d + L * d * d + L * d +
                        3 * L * h * d + d + 2 * s * (hs / 2);
  if (!c.shared_classifier) floats += v * d;
  return 7 * 4 + floats * 4;
}

inline void validate_llama2c_config(const char* where, const Config& c) {
  const auto positive = [&](const char* name, int v, int max) {
    if (v <= 0 || v > max)
      fail<lmshrink::format_error>(where, "header field ", name, " must be in [1, ", max, "], got ", v);
  };
  positive("dim", c.dim, 1 << 16);
  positive("hidden_dim", c.hidden_dim, 1 << 18);
  positive("n_layers", c.n_layers, 1 << 10);
  positive("n_heads", c.n_heads, 1 << 12);
  positive("n_kv_heads", c.n_kv_heads, 1 << 12);
  positive("vocab_size", c.vocab_size, 1 << 20);
  positive("seq_len", c.seq_len, 1 << 20);
  if (c.dim % c.n_heads != 0)
    fail<lmshrink::format_error>(where, "dim (", c.dim, ") must be a multiple of n_heads (", c.n_heads,
                       ")");
  if (c.n_heads % c.n_kv_heads != 0)
    fail<lmshrink::format_error>(where, "n_heads (", c.n_heads, ") must be a multiple of n_kv_heads (",
                       c.n_kv_heads, ")");
  if (c.head_size() % 2 != 0)
    fail<lmshrink::format_error>(where, "head size dim/n_heads (", c.head_size(),
                       ") must be even for RoPE pairs");
}

class Llama2cReader {
 public:
  Llama2cReader(const char* where, const std::string& path, const char* data, std::size_t size)
      : where_(where), path_(path), data_(data), size_(size) {}
  void read(void* dst, std::size_t n, const char* what) {
    if (n > size_ - pos_)
      fail<lmshrink::format_error>(where_, "'", path_, "' is truncated in ", what, ": needed ", n,
                         " bytes at offset ", pos_, ", file has ", size_);
    if (n > 0) std::memcpy(dst, data_ + pos_, n);
    pos_ += n;
  }
  template <class M>
  void tensor(M& m, lmshrink::Index rows, lmshrink::Index cols, const std::string& what) {
    m.resize(rows, cols);
    read(m.data(), static_cast<std::size_t>(rows * cols) * sizeof(float), what.c_str());
    for (lmshrink::Index i = 0; i < m.size(); ++i)
      if (!std::isfinite(m.data()[i]))
        fail<lmshrink::format_error>(where_, "'", path_, "' tensor ", what, " holds a non-finite value (",
                           m.data()[i], ") at flat index ", i);
  }
  std::size_t position() const { return pos_; }

 private:
  const char* where_;
  const std::string& path_;
  const char* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

inline void check_little_endian() {
  const std::uint32_t probe = 1;
  unsigned char first;
  std::memcpy(&first, &probe, 1);
  if (first != 1)
    fail<lmshrink::io_error>("llama2c", "big-endian hosts are not supported by the llama2.c reader");
}

}  // namespace llama2c_detail

/// Parses a checkpoint held in memory (`source` names it in messages), checking that its size
/// matches its header exactly and that every value is finite. Nothing is allocated before the
/// header's sizes are checked against `size`.
inline DenseModel parse_llama2c(const char* data, std::size_t size_bytes,
                                  const std::string& source = "<memory>") {
  static constexpr const char* where = "read_llama2c";
  const std::string& path = source;
  llama2c_detail::check_little_endian();
  if (size_bytes < 28)
    lmshrink::detail::fail<lmshrink::format_error>(where, "'", path, "' is truncated: a 28-byte header was expected, "
                               "the file has ", size_bytes, " bytes");
  const auto size = static_cast<std::int64_t>(size_bytes);

  llama2c_detail::Llama2cReader r(where, path, data, size_bytes);
  std::int32_t h[7];
  r.read(h, sizeof h, "the header");
  DenseModel m;
  Config& c = m.config;
  c.dim = h[0];
  c.hidden_dim = h[1];
  c.n_layers = h[2];
  c.n_heads = h[3];
  c.n_kv_heads = h[4];
  c.shared_classifier = h[5] > 0;
  if (h[5] == 0 || h[5] < -(1 << 20) || h[5] > (1 << 20))
    lmshrink::detail::fail<lmshrink::format_error>(where, "'", path, "': header field vocab_size must be in [1, ",
                               1 << 20, "] (negative: a separate classifier follows), got ", h[5]);
  c.vocab_size = h[5] < 0 ? -h[5] : h[5];
  c.seq_len = h[6];
  llama2c_detail::validate_llama2c_config(where, c);
  const std::int64_t expected = llama2c_detail::llama2c_file_bytes(c);
  if (expected != size)
    lmshrink::detail::fail<lmshrink::format_error>(
        where, "'", path, "' has ", size, " bytes but its header (dim=", c.dim, " hidden_dim=",
        c.hidden_dim, " n_layers=", c.n_layers, " n_heads=", c.n_heads, " n_kv_heads=",
        c.n_kv_heads, " vocab_size=", h[5], " seq_len=", c.seq_len, ") describes ", expected,
        " bytes; the file is truncated, padded or not a llama2.c checkpoint");

  const lmshrink::Index d = c.dim, hd = c.hidden_dim, kv = c.kv_dim(), v = c.vocab_size,
              L = c.n_layers;
  r.tensor(m.token_embedding, v, d, "token_embedding");
  const auto per_layer_vec = [&](std::vector<lmshrink::Vector<float>>& dst, const char* name) {
    dst.resize(L);
    for (lmshrink::Index l = 0; l < L; ++l)
      r.tensor(dst[l], d, 1, std::string("layers.") + std::to_string(l) + "." + name);
  };
  const auto per_layer = [&](std::vector<lmshrink::RowMatrix<float>>& dst, lmshrink::Index rows, lmshrink::Index cols,
                             const char* name) {
    dst.resize(L);
    for (lmshrink::Index l = 0; l < L; ++l)
      r.tensor(dst[l], rows, cols, std::string("layers.") + std::to_string(l) + "." + name);
  };
  per_layer_vec(m.rms_att, "attention_norm");
  per_layer(m.wq, d, d, "attention.wq");
  per_layer(m.wk, kv, d, "attention.wk");
  per_layer(m.wv, kv, d, "attention.wv");
  per_layer(m.wo, d, d, "attention.wo");
  per_layer_vec(m.rms_ffn, "ffn_norm");
  per_layer(m.w1, hd, d, "feed_forward.w1");
  per_layer(m.w2, d, hd, "feed_forward.w2");
  per_layer(m.w3, hd, d, "feed_forward.w3");
  r.tensor(m.rms_final, d, 1, "norm");
  r.tensor(m.freq_cis_real, c.seq_len, c.head_size() / 2, "freq_cis_real");
  r.tensor(m.freq_cis_imag, c.seq_len, c.head_size() / 2, "freq_cis_imag");
  if (!c.shared_classifier) r.tensor(m.wcls, v, d, "output");
  return m;
}

/// Reads a whole checkpoint, checking that the file size matches its header exactly and that
/// every value is finite.
inline DenseModel read_llama2c(const std::string& path) {
  const std::vector<char> bytes = lmshrink::detail::read_file_bytes(
      "read_llama2c", path, 28, "a 28-byte header", std::int64_t(1) << 40,
      "larger than any supported model");
  return parse_llama2c(bytes.data(), bytes.size(), path);
}

/// Rows [first, first + n) of the legacy RoPE table llama2.c files carry: cos (or sin, `imag`)
/// of pos / theta^(2i / head_size), computed in double.
inline lmshrink::RowMatrix<float> legacy_rope_table(const Config& c, int first, int n, bool imag) {
  const int hs = c.head_size(), half = hs / 2;
  lmshrink::RowMatrix<float> t(n, half);
  for (int p = 0; p < n; ++p)
    for (int i = 0; i < half; ++i) {
      const double angle = (first + p) / std::pow(double(c.rope_theta), 2.0 * i / hs);
      t(p, i) = float(imag ? std::sin(angle) : std::cos(angle));
    }
  return t;
}

/// Writes a checkpoint atomically (temporary file, then rename). Shapes are checked against
/// model.config first; nothing is written if they disagree.
inline void write_llama2c(const DenseModel& m, const std::string& path) {
  static constexpr const char* where = "write_llama2c";
  llama2c_detail::check_little_endian();
  const Config& c = m.config;
  llama2c_detail::validate_llama2c_config(where, c);
  if (c.norm_eps != 1e-5 || c.rope_theta != 10000)
    lmshrink::detail::fail<lmshrink::value_error>(where, "the model has norm_eps ", c.norm_eps, " and rope_theta ",
                              c.rope_theta, "; a llama2.c file can only mean 1e-5 and 10000");
  if (c.qkv_bias)
    lmshrink::detail::fail<lmshrink::value_error>(where, "the model's wq, wk and wv have biases, which a llama2.c file "
                              "cannot hold; write it as a Hugging Face \"qwen2\" directory");
  if (c.rope_scaling.enabled())
    lmshrink::detail::fail<lmshrink::value_error>(where, "the model has \"", c.rope_scaling.type, "\" RoPE scaling, which "
                              "a llama2.c file cannot hold; write it as a Hugging Face directory");
  const lmshrink::Index d = c.dim, hd = c.hidden_dim, kv = c.kv_dim(), v = c.vocab_size,
              L = c.n_layers;
  lmshrink::detail::check_shape(where, "token_embedding", m.token_embedding, v, d);
  const auto count = [&](std::size_t n, const char* what) {
    if (n != static_cast<std::size_t>(L))
      lmshrink::detail::fail<lmshrink::shape_error>(where, what, " has ", n, " layers but n_layers is ", L);
  };
  count(m.rms_att.size(), "rms_att");
  count(m.rms_ffn.size(), "rms_ffn");
  count(m.wq.size(), "wq");
  count(m.wk.size(), "wk");
  count(m.wv.size(), "wv");
  count(m.wo.size(), "wo");
  count(m.w1.size(), "w1");
  count(m.w2.size(), "w2");
  count(m.w3.size(), "w3");
  for (lmshrink::Index l = 0; l < L; ++l) {
    lmshrink::detail::check_shape(where, "rms_att", m.rms_att[l], d, 1);
    lmshrink::detail::check_shape(where, "rms_ffn", m.rms_ffn[l], d, 1);
    lmshrink::detail::check_shape(where, "wq", m.wq[l], d, d);
    lmshrink::detail::check_shape(where, "wk", m.wk[l], kv, d);
    lmshrink::detail::check_shape(where, "wv", m.wv[l], kv, d);
    lmshrink::detail::check_shape(where, "wo", m.wo[l], d, d);
    lmshrink::detail::check_shape(where, "w1", m.w1[l], hd, d);
    lmshrink::detail::check_shape(where, "w2", m.w2[l], d, hd);
    lmshrink::detail::check_shape(where, "w3", m.w3[l], hd, d);
  }
  lmshrink::detail::check_shape(where, "rms_final", m.rms_final, d, 1);
  const bool tables = m.freq_cis_real.size() > 0 || m.freq_cis_imag.size() > 0;
  if (tables) {
    lmshrink::detail::check_shape(where, "freq_cis_real", m.freq_cis_real, c.seq_len, c.head_size() / 2);
    lmshrink::detail::check_shape(where, "freq_cis_imag", m.freq_cis_imag, c.seq_len, c.head_size() / 2);
  }
  if (!c.shared_classifier) lmshrink::detail::check_shape(where, "wcls", m.wcls, v, d);

  lmshrink::detail::write_file_atomically(where, path, [&](std::FILE* f) {
    const std::int32_t h[7] = {c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads,
                               c.shared_classifier ? c.vocab_size : -c.vocab_size, c.seq_len};
    bool ok = std::fwrite(h, sizeof h, 1, f) == 1;
    const auto put = [&](const auto& t) {
      if (ok && t.size() > 0)
        ok = std::fwrite(t.data(), sizeof(float), static_cast<std::size_t>(t.size()), f) ==
             static_cast<std::size_t>(t.size());
    };
    put(m.token_embedding);
    for (const auto& t : m.rms_att) put(t);
    for (const auto& t : m.wq) put(t);
    for (const auto& t : m.wk) put(t);
    for (const auto& t : m.wv) put(t);
    for (const auto& t : m.wo) put(t);
    for (const auto& t : m.rms_ffn) put(t);
    for (const auto& t : m.w1) put(t);
    for (const auto& t : m.w2) put(t);
    for (const auto& t : m.w3) put(t);
    put(m.rms_final);
    if (tables) {
      put(m.freq_cis_real);
      put(m.freq_cis_imag);
    } else {  // computed a block of positions at a time, so a long context needs no large buffer
      for (int imag = 0; imag < 2; ++imag)
        for (int first = 0; first < c.seq_len && ok; first += 4096) {
          const int n = std::min(4096, c.seq_len - first);
          put(legacy_rope_table(c, first, n, imag == 1));
        }
    }
    if (!c.shared_classifier) put(m.wcls);
    return ok;
  });
}

}  // namespace llama
}  // namespace models
LMSHRINK_NAMESPACE_END
