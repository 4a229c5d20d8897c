#pragma once
// Hugging Face checkpoints: a directory with config.json and model.safetensors (or shards listed
// by model.safetensors.index.json), read without any lmshrink metadata, and written back in the
// same layout. Two families:
//
//  - "llama": model.embed_tokens, model.layers.{i}.input_layernorm, .self_attn.{q,k,v,o}_proj,
//    .post_attention_layernorm, .mlp.{gate,up,down}_proj, model.norm, lm_head (when not tied).
//    Weights are (out, in). Hugging Face applies RoPE to rotate-half pairs (i, i + hs/2) where
//    llama2.c uses adjacent pairs (2i, 2i + 1), so q_proj and k_proj rows are permuted within
//    each head (hf_rope_source); the reader undoes it and returns a Llama2cModel.
//  - "gpt2": [transformer.]wte, wpe, h.{i}.ln_1, .attn.c_attn, .attn.c_proj, .ln_2, .mlp.c_fc,
//    .mlp.c_proj, ln_f; the head is tied to wte. Linear weights are stored (in, out) (Conv1D);
//    the reader transposes them to lmshrink's (out, in) and returns a Gpt2Model.
//
// Weights may be F32, F16 or BF16 (F64 too). Every check is made before the model is returned:
// config values and supported features, every expected tensor present with its shape, no
// tensor left over (except the non-parameter buffers Hugging Face sometimes saves).
//
//   auto config = lmshrink::read_hf_config("gpt2/config.json");
//   if (config.model_type == "gpt2") auto model = lmshrink::read_hf_gpt2("gpt2");
//   lmshrink::write_hf_llama(llama_model, "out", lmshrink::Dtype::bf16);

#include <Eigen/Core>
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "../config.hpp"
#pragma push_macro("LMSHRINK_INSIDE_LIBRARY")
#define LMSHRINK_INSIDE_LIBRARY
#include "../detail/atomic_directory.hpp"
#include "../detail/atomic_file.hpp"
#include "../detail/json.hpp"
#include "../detail/read_file.hpp"
#pragma pop_macro("LMSHRINK_INSIDE_LIBRARY")
#include "../errors.hpp"
#include "../types.hpp"
#include "llama2c.hpp"
#include "safetensors.hpp"

LMSHRINK_NAMESPACE_BEGIN

/// The hyperparameters of config.json that lmshrink uses, under neutral names.
struct HfConfig {
  std::string model_type;     // "llama" or "gpt2"
  int vocab_size = 0;
  int hidden_size = 0;        // llama hidden_size, gpt2 n_embd
  int intermediate_size = 0;  // llama intermediate_size, gpt2 n_inner (4·n_embd when null)
  int num_layers = 0;         // num_hidden_layers, n_layer
  int num_heads = 0;          // num_attention_heads, n_head
  int num_kv_heads = 0;       // num_key_value_heads (= num_heads when absent); gpt2: num_heads
  int max_positions = 0;      // max_position_embeddings, n_positions
  double norm_eps = 1e-5;     // rms_norm_eps, layer_norm_epsilon
  double rope_theta = 10000;  // llama only
  bool tie_word_embeddings = false;
  std::string activation;     // llama "silu"; gpt2 "gelu_new" (tanh approximation)

  int head_size() const { return hidden_size / num_heads; }
};

/// GPT-2's hyperparameters.
struct Gpt2Config {
  int vocab_size = 0;
  int dim = 0;         // n_embd
  int hidden_dim = 0;  // n_inner
  int n_layers = 0;
  int n_heads = 0;
  int n_positions = 0;
  double norm_eps = 1e-5;

  int head_size() const { return dim / n_heads; }
};

/// A GPT-2 model: every linear weight (out, in) row-major, with its bias.
struct Gpt2Model {
  Gpt2Config config;
  RowMatrix<float> wte;                        // (vocab, dim); also the LM head
  RowMatrix<float> wpe;                        // (n_positions, dim)
  std::vector<Vector<float>> ln1_w, ln1_b;     // L × (dim)
  std::vector<RowMatrix<float>> attn_w;        // L × (3·dim, dim): q, k, v rows
  std::vector<Vector<float>> attn_b;           // L × (3·dim)
  std::vector<RowMatrix<float>> proj_w;        // L × (dim, dim)
  std::vector<Vector<float>> proj_b;           // L × (dim)
  std::vector<Vector<float>> ln2_w, ln2_b;     // L × (dim)
  std::vector<RowMatrix<float>> fc_w;          // L × (hidden, dim)
  std::vector<Vector<float>> fc_b;             // L × (hidden)
  std::vector<RowMatrix<float>> fc_proj_w;     // L × (dim, hidden)
  std::vector<Vector<float>> fc_proj_b;        // L × (dim)
  Vector<float> lnf_w, lnf_b;                  // (dim)

  /// The 4·n_layers linear weights (c_attn, attn c_proj, c_fc, mlp c_proj of every layer).
  std::vector<NamedWeight> linear_weights() {
    std::vector<NamedWeight> out;
    for (int l = 0; l < config.n_layers; ++l) {
      const std::string p = "h." + std::to_string(l) + ".";
      const std::size_t L = std::size_t(l);
      out.push_back({p + "attn.c_attn", &attn_w[L]});
      out.push_back({p + "attn.c_proj", &proj_w[L]});
      out.push_back({p + "mlp.c_fc", &fc_w[L]});
      out.push_back({p + "mlp.c_proj", &fc_proj_w[L]});
    }
    return out;
  }

  std::int64_t parameter_count() const {
    std::int64_t n = wte.size() + wpe.size() + lnf_w.size() + lnf_b.size();
    for (std::size_t l = 0; l < attn_w.size(); ++l)
      n += ln1_w[l].size() + ln1_b[l].size() + attn_w[l].size() + attn_b[l].size() +
           proj_w[l].size() + proj_b[l].size() + ln2_w[l].size() + ln2_b[l].size() +
           fc_w[l].size() + fc_b[l].size() + fc_proj_w[l].size() + fc_proj_b[l].size();
    return n;
  }
};

/// Row r of a Hugging Face q_proj / k_proj holds row hf_rope_source(r) of llama2.c's layout:
/// within each head, HF row j·hs/2 + i is llama2.c row 2i + j.
inline Index hf_rope_source(Index r, int head_size) {
  const Index h = r / head_size, w = r % head_size, half = head_size / 2;
  return h * head_size + 2 * (w % half) + w / half;
}

namespace detail {

class HfConfigReader {
 public:
  HfConfigReader(const char* where, const std::string& source, const JsonValue& root)
      : where_(where), source_(source), root_(root) {}

  template <class... Parts>
  [[noreturn]] void bad(const Parts&... parts) const {
    fail<format_error>(where_, "'", source_, "': ", parts...);
  }
  const JsonValue* get(const char* key) const { return root_.find(key); }
  bool present(const char* key) const {
    const JsonValue* v = get(key);
    return v != nullptr && v->kind != JsonValue::Kind::null;
  }
  int integer(const char* key, int lo, int hi) const {
    const JsonValue* v = get(key);
    if (v == nullptr) bad("the key '", key, "' is missing");
    if (!v->is_integer || v->integer < lo || v->integer > hi)
      bad("'", key, "' is ", v->kind == JsonValue::Kind::number ? v->text : v->kind_name(),
          "; an integer in [", lo, ", ", hi, "] was expected");
    return int(v->integer);
  }
  double number(const char* key, double fallback, double lo, double hi) const {
    if (!present(key)) return fallback;
    const JsonValue* v = get(key);
    if (v->kind != JsonValue::Kind::number || !(v->number >= lo && v->number <= hi))
      bad("'", key, "' is ", v->kind == JsonValue::Kind::number ? v->text : v->kind_name(),
          "; a number in [", lo, ", ", hi, "] was expected");
    return v->number;
  }
  bool boolean(const char* key, bool fallback) const {
    if (!present(key)) return fallback;
    const JsonValue* v = get(key);
    if (v->kind != JsonValue::Kind::boolean) bad("'", key, "' is ", v->kind_name(), "; true or false was expected");
    return v->boolean;
  }
  std::string text(const char* key, const std::string& fallback) const {
    if (!present(key)) return fallback;
    const JsonValue* v = get(key);
    if (v->kind != JsonValue::Kind::string) bad("'", key, "' is ", v->kind_name(), "; a string was expected");
    return v->text;
  }
  /// A feature lmshrink does not implement: the key must be absent, null, or `ok`.
  void unsupported_unless_false(const char* key, const char* what) const {
    if (present(key) && !(get(key)->kind == JsonValue::Kind::boolean && !get(key)->boolean))
      bad("'", key, "' is set; lmshrink does not implement ", what);
  }

 private:
  const char* where_;
  const std::string& source_;
  const JsonValue& root_;
};

}  // namespace detail

/// Parses config.json's text (`source` names it in messages). format_error for a missing or
/// out-of-range value, an unknown model_type, or a feature lmshrink does not implement.
inline HfConfig parse_hf_config(std::string_view text, const std::string& source) {
  static constexpr const char* where = "read_hf_config";
  const detail::JsonValue root = detail::parse_json(where, source, text, {64, 1 << 16});
  if (root.kind != detail::JsonValue::Kind::object)
    detail::fail<format_error>(where, "'", source, "' is ", root.kind_name(), "; an object was expected");
  const detail::HfConfigReader r(where, source, root);
  HfConfig c;
  c.model_type = r.text("model_type", "");
  constexpr int big = 1 << 20;
  if (c.model_type == "llama") {
    c.vocab_size = r.integer("vocab_size", 1, big);
    c.hidden_size = r.integer("hidden_size", 2, 1 << 16);
    c.intermediate_size = r.integer("intermediate_size", 1, 1 << 18);
    c.num_layers = r.integer("num_hidden_layers", 1, 1 << 10);
    c.num_heads = r.integer("num_attention_heads", 1, 1 << 12);
    c.num_kv_heads = r.present("num_key_value_heads") ? r.integer("num_key_value_heads", 1, 1 << 12) : c.num_heads;
    c.max_positions = r.integer("max_position_embeddings", 1, big);
    c.norm_eps = r.number("rms_norm_eps", 1e-6, 1e-12, 1.0);
    c.rope_theta = r.number("rope_theta", 10000.0, 1.0, 1e12);
    c.tie_word_embeddings = r.boolean("tie_word_embeddings", false);
    c.activation = r.text("hidden_act", "silu");
    if (c.activation != "silu")
      r.bad("'hidden_act' is '", c.activation, "'; lmshrink's Llama implements \"silu\"");
    if (r.present("rope_scaling"))
      r.bad("'rope_scaling' is set; lmshrink implements plain RoPE (no scaling)");
    r.unsupported_unless_false("attention_bias", "biases on Llama's attention projections");
    r.unsupported_unless_false("mlp_bias", "biases on Llama's MLP");
    if (c.hidden_size % c.num_heads != 0 || c.head_size() % 2 != 0)
      r.bad("hidden_size ", c.hidden_size, " and ", c.num_heads, " heads do not give an even head "
            "size");
    if (r.present("head_dim") && r.integer("head_dim", 1, 1 << 16) != c.head_size())
      r.bad("'head_dim' is ", r.integer("head_dim", 1, 1 << 16), " but hidden_size / heads is ",
            c.head_size(), "; lmshrink implements head_dim = hidden_size / num_attention_heads");
    if (c.num_heads % c.num_kv_heads != 0)
      r.bad(c.num_heads, " attention heads are not a multiple of ", c.num_kv_heads, " key/value heads");
    if (std::int64_t(c.max_positions) * (c.head_size() / 2) > (std::int64_t(1) << 28))
      r.bad("max_position_embeddings ", c.max_positions, " × head size ", c.head_size(),
            " / 2 is more than the 2^28 RoPE table entries lmshrink supports");
  } else if (c.model_type == "gpt2") {
    c.vocab_size = r.integer("vocab_size", 1, big);
    c.hidden_size = r.integer("n_embd", 1, 1 << 16);
    c.num_layers = r.integer("n_layer", 1, 1 << 10);
    c.num_heads = r.integer("n_head", 1, 1 << 12);
    c.num_kv_heads = c.num_heads;
    c.max_positions = r.present("n_positions") ? r.integer("n_positions", 1, big) : r.integer("n_ctx", 1, big);
    c.intermediate_size = r.present("n_inner") ? r.integer("n_inner", 1, 1 << 18) : 4 * c.hidden_size;
    c.norm_eps = r.number("layer_norm_epsilon", 1e-5, 1e-12, 1.0);
    c.tie_word_embeddings = r.boolean("tie_word_embeddings", true);
    c.activation = r.text("activation_function", "gelu_new");
    if (c.activation != "gelu_new" && c.activation != "gelu_pytorch_tanh")
      r.bad("'activation_function' is '", c.activation, "'; lmshrink's GPT-2 implements the tanh "
            "approximation of GELU (\"gelu_new\" or \"gelu_pytorch_tanh\")");
    if (!c.tie_word_embeddings)
      r.bad("'tie_word_embeddings' is false; lmshrink's GPT-2 ties the head to wte");
    if (!r.boolean("scale_attn_weights", true))
      r.bad("'scale_attn_weights' is false; lmshrink's GPT-2 scales attention by 1/sqrt(head size)");
    r.unsupported_unless_false("scale_attn_by_inverse_layer_idx", "attention scaled by layer index");
    r.unsupported_unless_false("add_cross_attention", "cross-attention");
    if (c.hidden_size % c.num_heads != 0)
      r.bad("n_embd ", c.hidden_size, " is not a multiple of n_head ", c.num_heads);
  } else if (c.model_type.empty()) {
    r.bad("the key 'model_type' is missing; \"llama\" or \"gpt2\" was expected");
  } else {
    r.bad("model_type '", c.model_type, "' is not supported; \"llama\" or \"gpt2\" was expected");
  }
  return c;
}

inline HfConfig read_hf_config(const std::string& path) {
  const std::vector<char> bytes = detail::read_file_bytes(
      "read_hf_config", path, 2, "a JSON object", std::int64_t(1) << 20,
      "more than the 1 MiB a config.json may have");
  return parse_hf_config(std::string_view(bytes.data(), bytes.size()), path);
}

/// config.json for `c`, with the keys Hugging Face's own classes write.
inline std::string hf_config_json(const HfConfig& c) {
  const auto num = [](double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return std::string(buf);
  };
  std::string s = "{\n";
  const auto add = [&](const char* key, const std::string& value, bool last = false) {
    s += "  \"";
    s += key;
    s += "\": " + value + (last ? "\n" : ",\n");
  };
  const auto str = [](const std::string& v) {
    std::string out;
    detail::json_escape(out, v);
    return out;
  };
  if (c.model_type == "llama") {
    add("architectures", "[\"LlamaForCausalLM\"]");
    add("model_type", "\"llama\"");
    add("vocab_size", std::to_string(c.vocab_size));
    add("hidden_size", std::to_string(c.hidden_size));
    add("intermediate_size", std::to_string(c.intermediate_size));
    add("num_hidden_layers", std::to_string(c.num_layers));
    add("num_attention_heads", std::to_string(c.num_heads));
    add("num_key_value_heads", std::to_string(c.num_kv_heads));
    add("max_position_embeddings", std::to_string(c.max_positions));
    add("rms_norm_eps", num(c.norm_eps));
    add("rope_theta", num(c.rope_theta));
    add("hidden_act", str(c.activation.empty() ? "silu" : c.activation));
    add("tie_word_embeddings", c.tie_word_embeddings ? "true" : "false");
    add("torch_dtype", "\"float32\"", true);
  } else if (c.model_type == "gpt2") {
    add("architectures", "[\"GPT2LMHeadModel\"]");
    add("model_type", "\"gpt2\"");
    add("vocab_size", std::to_string(c.vocab_size));
    add("n_embd", std::to_string(c.hidden_size));
    add("n_inner", std::to_string(c.intermediate_size));
    add("n_layer", std::to_string(c.num_layers));
    add("n_head", std::to_string(c.num_heads));
    add("n_positions", std::to_string(c.max_positions));
    add("n_ctx", std::to_string(c.max_positions));
    add("layer_norm_epsilon", num(c.norm_eps));
    add("activation_function", str(c.activation.empty() ? "gelu_new" : c.activation));
    add("tie_word_embeddings", "true");
    add("torch_dtype", "\"float32\"", true);
  } else {
    detail::fail<value_error>("hf_config_json", "model_type '", c.model_type, "'; \"llama\" or "
                              "\"gpt2\" was expected");
  }
  return s + "}\n";
}

inline HfConfig hf_config_of(const Llama2cConfig& c) {
  HfConfig h;
  h.model_type = "llama";
  h.vocab_size = c.vocab_size;
  h.hidden_size = c.dim;
  h.intermediate_size = c.hidden_dim;
  h.num_layers = c.n_layers;
  h.num_heads = c.n_heads;
  h.num_kv_heads = c.n_kv_heads;
  h.max_positions = c.seq_len;
  h.norm_eps = c.norm_eps;
  h.rope_theta = c.rope_theta;
  h.tie_word_embeddings = c.shared_classifier;
  h.activation = "silu";
  return h;
}

inline HfConfig hf_config_of(const Gpt2Config& c) {
  HfConfig h;
  h.model_type = "gpt2";
  h.vocab_size = c.vocab_size;
  h.hidden_size = c.dim;
  h.intermediate_size = c.hidden_dim;
  h.num_layers = c.n_layers;
  h.num_heads = c.n_heads;
  h.num_kv_heads = c.n_heads;
  h.max_positions = c.n_positions;
  h.norm_eps = c.norm_eps;
  h.tie_word_embeddings = true;
  h.activation = "gelu_new";
  return h;
}

// ---- tensors: one file or shards -------------------------------------------------------------

/// The tensors of a checkpoint directory: model.safetensors, or else the shards that
/// model.safetensors.index.json maps every tensor to (file names in the same directory).
inline SafeTensors read_hf_tensors(const std::string& dir) {
  static constexpr const char* where = "read_hf_tensors";
  namespace fs = std::filesystem;
  const fs::path single = fs::path(dir) / "model.safetensors";
  const fs::path index_path = fs::path(dir) / "model.safetensors.index.json";
  std::error_code ec;
  if (fs::exists(single, ec) || !fs::exists(index_path, ec)) return read_safetensors(single.string());
  const std::vector<char> bytes = detail::read_file_bytes(
      where, index_path.string(), 2, "a JSON object", std::int64_t(64) << 20,
      "more than the 64 MiB an index may have");
  const detail::JsonValue index = detail::parse_json(
      where, index_path.string(), std::string_view(bytes.data(), bytes.size()), {8, 1 << 22});
  const detail::JsonValue* map = index.kind == detail::JsonValue::Kind::object ? index.find("weight_map") : nullptr;
  if (map == nullptr || map->kind != detail::JsonValue::Kind::object)
    detail::fail<format_error>(where, "'", index_path.string(), "' has no \"weight_map\" object");
  std::map<std::string, std::set<std::string>> by_file;
  for (const auto& [name, file] : map->members) {
    if (file.kind != detail::JsonValue::Kind::string || file.text.empty() ||
        file.text.find_first_of("/\\") != std::string::npos || file.text == "." || file.text == "..")
      detail::fail<format_error>(where, "'", index_path.string(), "' maps '", name, "' to ",
                                 file.kind == detail::JsonValue::Kind::string ? "'" + file.text + "'" : file.kind_name(),
                                 "; a file name in the same directory was expected");
    by_file[file.text].insert(name);
  }
  SafeTensors all;
  for (const auto& [file, names] : by_file) {
    const std::string path = (fs::path(dir) / file).string();
    SafeTensors shard = read_safetensors(path);
    for (const std::string& name : names)
      if (!shard.contains(name))
        detail::fail<format_error>(where, "'", path, "' lacks '", name, "', which the index maps to it");
    for (auto& [name, t] : shard.tensors) {
      if (!names.count(name))
        detail::fail<format_error>(where, "'", path, "' holds '", name, "', which the index does not "
                                   "map to it");
      all.tensors.emplace(name, std::move(t));
    }
    for (const auto& [k, v] : shard.metadata) all.metadata.emplace(k, v);
  }
  return all;
}

namespace detail {

inline std::uint16_t float_to_bf16(float f) {
  std::uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((bits >> 16) | 0x40u);  // quiet NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);  // round to nearest, ties to even
  return std::uint16_t(bits >> 16);
}

inline std::uint16_t float_to_half(float f) {
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  x &= 0x7fffffffu;
  if (x > 0x7f800000u) return std::uint16_t(sign | 0x7e00u);
  if (x >= 0x477ff000u) return std::uint16_t(sign | 0x7c00u);  // >= 65520 rounds to infinity
  if (x < 0x38800000u) {                                       // below 2^-14: subnormal or zero
    float a;
    std::memcpy(&a, &x, 4);
    return std::uint16_t(sign | std::uint32_t(std::nearbyint(a * 16777216.0f)));  // units of 2^-24
  }
  const std::uint32_t mant = x & 0x7fffffu;
  std::uint32_t h = ((((x >> 23) - 127u) + 15u) << 10) | (mant >> 13);
  const std::uint32_t rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // a carry into the exponent is right
  return std::uint16_t(sign | h);
}

/// Puts a float matrix or vector as `dtype` (F32, F16 or BF16) with the given shape.
inline void put_as(SafeTensors& st, const std::string& name, const float* data, std::int64_t n,
                   std::vector<std::int64_t> shape, Dtype dtype) {
  if (dtype != Dtype::f32 && dtype != Dtype::f16 && dtype != Dtype::bf16)
    fail<value_error>("write_hf", "dtype ", dtype_name(dtype), "; F32, F16 or BF16 was expected");
  // The readers refuse non-finite values, so the writer refuses to make them: neither a value
  // that is already inf or NaN, nor a finite one that narrowing would round to infinity.
  float largest = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(data[i]))
      fail<numeric_error>("write_hf", "tensor '", name, "' has a non-finite value at entry ", i);
    largest = std::max(largest, std::abs(data[i]));
  }
  if (dtype == Dtype::f32) {
    st.put(name, Dtype::f32, std::move(shape), data);
    return;
  }
  // F16 rounds |x| >= 65520 to infinity; BF16 rounds |x| >= 2^128 - 2^119 (about 3.39e38).
  const float limit = dtype == Dtype::f16 ? 65520.0f : float(std::ldexp(1.0, 128) - std::ldexp(1.0, 119));
  if (largest >= limit)
    fail<numeric_error>("write_hf", "tensor '", name, "' holds ", largest, ", which ", dtype_name(dtype),
                        " cannot represent (it would be infinity; the largest finite ",
                        dtype_name(dtype), " is ", dtype == Dtype::f16 ? "65504" : "3.3895e38",
                        "); write it as F32", dtype == Dtype::f16 ? " or BF16" : "");
  std::vector<std::uint16_t> h(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i)
    h[std::size_t(i)] = dtype == Dtype::f16 ? float_to_half(data[i]) : float_to_bf16(data[i]);
  st.put(name, dtype, std::move(shape), h.data());
}
inline void put_matrix_as(SafeTensors& st, const std::string& name, const RowMatrix<float>& m, Dtype dtype) {
  put_as(st, name, m.data(), m.size(), {std::int64_t(m.rows()), std::int64_t(m.cols())}, dtype);
}
inline void put_vector_as(SafeTensors& st, const std::string& name, const Vector<float>& v, Dtype dtype) {
  put_as(st, name, v.data(), v.size(), {std::int64_t(v.size())}, dtype);
}

/// Reads a model's tensors by name, as float, recording each name it was asked for; a missing
/// tensor or a shape other than the config's is a format_error saying the two disagree.
class HfTensorReader {
 public:
  HfTensorReader(const char* where, const SafeTensors& st, const std::string& source, std::string prefix = "")
      : where_(where), st_(st), source_(source), prefix_(std::move(prefix)) {}

  RowMatrix<float> matrix(const std::string& name, int rows, int cols) {
    return guarded(prefix_ + name, [&](const std::string& full) { return st_.matrix<float>(full, rows, cols); });
  }
  /// A tensor outside the prefix (GPT2LMHeadModel's lm_head beside "transformer.").
  RowMatrix<float> top_level_matrix(const std::string& name, int rows, int cols) {
    return guarded(name, [&](const std::string& full) { return st_.matrix<float>(full, rows, cols); });
  }
  /// A Conv1D weight, stored (in, out), as (out, in).
  RowMatrix<float> conv1d(const std::string& name, int out, int in) {
    return guarded(prefix_ + name, [&](const std::string& full) { return RowMatrix<float>(st_.matrix<float>(full, in, out).transpose()); });
  }
  Vector<float> vector(const std::string& name, int size) {
    return guarded(prefix_ + name, [&](const std::string& full) { return st_.vector<float>(full, size); });
  }
  /// Every tensor was read, or is one of `ignorable`'s buffers.
  template <class Ignorable>
  void check_all_used(Ignorable ignorable) const {
    for (const auto& [name, t] : st_.tensors)
      if (!used_.count(name) && !ignorable(name))
        fail<format_error>(where_, "'", source_, "' holds the tensor '", name, "', which config.json's "
                           "model does not have (more layers than num_layers, or another architecture)");
  }

 private:
  template <class Read>
  auto guarded(const std::string& full, Read read) -> decltype(read(full)) {
    used_.insert(full);
    try {
      return read(full);
    } catch (const format_error& e) {
      fail<format_error>(where_, "'", source_, "' disagrees with config.json: ", e.what());
    }
  }

  const char* where_;
  const SafeTensors& st_;
  const std::string& source_;
  std::string prefix_;
  std::set<std::string> used_;
};

inline bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

}  // namespace detail

namespace detail {

/// Whether an entry of an old checkpoint directory stays when a new model is saved into it:
/// everything but the model's own files (config, weights, index, shards of any earlier save, and
/// the temporaries of a killed writer).
inline bool kept_beside_model(const std::string& name, const std::set<std::string>& old_shards) {
  if (name == "config.json" || name == "model.safetensors" || name == "model.safetensors.index.json")
    return false;
  if (old_shards.count(name) || name.find(".tmp.") != std::string::npos) return false;
  // model-00001-of-00003.safetensors
  const std::string head = "model-", tail = ".safetensors";
  if (name.size() == head.size() + 14 + tail.size() && name.compare(0, head.size(), head) == 0 &&
      ends_with(name, tail) && name.compare(head.size() + 5, 4, "-of-") == 0) {
    for (std::size_t i : {0, 1, 2, 3, 4, 9, 10, 11, 12, 13})
      if (!std::isdigit(static_cast<unsigned char>(name[head.size() + i]))) return true;
    return false;
  }
  return true;
}

/// The shard file names an index maps tensors to; empty when there is none or it is unreadable.
inline std::set<std::string> shards_named_by_index(const std::string& dir) {
  std::set<std::string> files;
  try {
    const std::string path = (std::filesystem::path(dir) / "model.safetensors.index.json").string();
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) return files;
    const std::vector<char> bytes = read_file_bytes("write_hf", path, 2, "a JSON object",
                                                    std::int64_t(64) << 20, "more than an index may have");
    const JsonValue index = parse_json("write_hf", path, std::string_view(bytes.data(), bytes.size()), {8, 1 << 22});
    const JsonValue* map = index.kind == JsonValue::Kind::object ? index.find("weight_map") : nullptr;
    if (map != nullptr && map->kind == JsonValue::Kind::object)
      for (const auto& [name, file] : map->members)
        if (file.kind == JsonValue::Kind::string) files.insert(file.text);
  } catch (const error&) {
  }
  return files;
}

}  // namespace detail

/// Writes config.json and the tensors as directory `dir`: one model.safetensors, or shards of at
/// most `max_shard_bytes` of tensor data with model.safetensors.index.json when `max_shard_bytes`
/// > 0 and the tensors need more than one. The directory is replaced as a whole
/// (detail/atomic_directory.hpp): a reader sees the old model or the new one, never a mix, even
/// when the writer is killed. Afterwards it holds exactly the new model's files, plus whatever
/// else the old directory held beside its model (tokenizer files, a README).
inline void write_hf_directory(const HfConfig& config, const SafeTensors& st, const std::string& dir,
                               std::int64_t max_shard_bytes = 0) {
  namespace fs = std::filesystem;
  const std::string json = hf_config_json(config);  // refuses a bad config before anything is written
  std::int64_t total = 0;
  for (const auto& [name, t] : st.tensors) total += std::int64_t(t.bytes.size());
  const auto fill = [&](const std::string& out) {
    if (max_shard_bytes <= 0 || total <= max_shard_bytes) {
      write_safetensors(st, (fs::path(out) / "model.safetensors").string());
    } else {
      std::vector<SafeTensors> shards(1);
      std::int64_t in_shard = 0;
      for (const auto& [name, t] : st.tensors) {
        if (in_shard > 0 && in_shard + std::int64_t(t.bytes.size()) > max_shard_bytes) {
          shards.emplace_back();
          in_shard = 0;
        }
        shards.back().tensors[name] = t;
        in_shard += std::int64_t(t.bytes.size());
      }
      std::string index = "{\n  \"metadata\": {\"total_size\": " + std::to_string(total) + "},\n  \"weight_map\": {";
      const auto file_name = [&](std::size_t i) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
        return std::string(buf);
      };
      bool first = true;
      for (std::size_t i = 0; i < shards.size(); ++i) {
        shards[i].metadata = st.metadata;
        write_safetensors(shards[i], (fs::path(out) / file_name(i)).string());
        for (const auto& [name, t] : shards[i].tensors) {
          index += first ? "\n    " : ",\n    ";
          first = false;
          detail::json_escape(index, name);
          index += ": \"" + file_name(i) + "\"";
        }
      }
      index += "\n  }\n}\n";
      detail::write_file_atomically("write_hf", (fs::path(out) / "model.safetensors.index.json").string(),
                                    [&](std::FILE* f) { return std::fwrite(index.data(), 1, index.size(), f) == index.size(); });
    }
    detail::write_file_atomically("write_hf", (fs::path(out) / "config.json").string(),
                                  [&](std::FILE* f) { return std::fwrite(json.data(), 1, json.size(), f) == json.size(); });
  };
  const std::set<std::string> old_shards = detail::shards_named_by_index(dir);
  detail::replace_directory_atomically(
      "write_hf", dir, [&](const std::string& name) { return detail::kept_beside_model(name, old_shards); }, fill);
}

/// A checkpoint directory's config and tensors, read from one version of the directory even when
/// a save replaces it meanwhile (detail/atomic_directory.hpp).
struct HfCheckpoint {
  HfConfig config;
  SafeTensors tensors;
};

inline HfCheckpoint read_hf_directory(const std::string& dir) {
  return detail::read_directory_consistently("read_hf", dir, [](const std::string& path) {
    HfCheckpoint c;
    c.config = read_hf_config((std::filesystem::path(path) / "config.json").string());
    c.tensors = read_hf_tensors(path);
    return c;
  });
}

// ---- Llama --------------------------------------------------------------------------------

inline Llama2cConfig llama_config_of(const HfConfig& h, const std::string& source) {
  if (h.model_type != "llama")
    detail::fail<format_error>("read_hf_llama", "'", source, "' is a '", h.model_type, "' model; "
                               "\"llama\" was expected");
  Llama2cConfig c;
  c.dim = h.hidden_size;
  c.hidden_dim = h.intermediate_size;
  c.n_layers = h.num_layers;
  c.n_heads = h.num_heads;
  c.n_kv_heads = h.num_kv_heads;
  c.vocab_size = h.vocab_size;
  c.seq_len = h.max_positions;
  c.shared_classifier = h.tie_word_embeddings;
  c.norm_eps = h.norm_eps;
  c.rope_theta = h.rope_theta;
  return c;
}

/// A Llama model from a config and its tensors in Hugging Face layout (`source` names them).
inline Llama2cModel llama_from_hf(const HfConfig& hf, const SafeTensors& st, const std::string& source) {
  static constexpr const char* where = "read_hf_llama";
  Llama2cModel m;
  auto& c = m.config = llama_config_of(hf, source);
  detail::HfTensorReader read(where, st, source);
  const auto matrix = [&](const std::string& name, int rows, int cols) { return read.matrix(name, rows, cols); };
  const auto vector = [&](const std::string& name, int size) { return read.vector(name, size); };
  m.token_embedding = matrix("model.embed_tokens.weight", c.vocab_size, c.dim);
  if (!c.shared_classifier) {
    m.wcls = matrix("lm_head.weight", c.vocab_size, c.dim);
  } else if (st.contains("lm_head.weight")) {  // some tied checkpoints save the copy
    if (matrix("lm_head.weight", c.vocab_size, c.dim) != m.token_embedding)
      detail::fail<format_error>(where, "'", source, "': tie_word_embeddings is true but "
                                 "lm_head.weight differs from model.embed_tokens.weight");
  }
  m.rms_final = vector("model.norm.weight", c.dim);
  const int hs = c.head_size(), kv = c.kv_dim();
  const auto unrope = [&](const RowMatrix<float>& hf_rows) {
    RowMatrix<float> out(hf_rows.rows(), hf_rows.cols());
    for (Index r = 0; r < hf_rows.rows(); ++r) out.row(hf_rope_source(r, hs)) = hf_rows.row(r);
    return out;
  };
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    m.rms_att.push_back(vector(p + "input_layernorm.weight", c.dim));
    m.rms_ffn.push_back(vector(p + "post_attention_layernorm.weight", c.dim));
    m.wq.push_back(unrope(matrix(p + "self_attn.q_proj.weight", c.dim, c.dim)));
    m.wk.push_back(unrope(matrix(p + "self_attn.k_proj.weight", kv, c.dim)));
    m.wv.push_back(matrix(p + "self_attn.v_proj.weight", kv, c.dim));
    m.wo.push_back(matrix(p + "self_attn.o_proj.weight", c.dim, c.dim));
    m.w1.push_back(matrix(p + "mlp.gate_proj.weight", c.hidden_dim, c.dim));
    m.w2.push_back(matrix(p + "mlp.down_proj.weight", c.dim, c.hidden_dim));
    m.w3.push_back(matrix(p + "mlp.up_proj.weight", c.hidden_dim, c.dim));
  }
  read.check_all_used([](const std::string& name) {
    return detail::ends_with(name, ".rotary_emb.inv_freq");  // a buffer older versions saved
  });
  // The legacy RoPE tables stay empty: a context of max_position_embeddings can be far longer
  // than anything run, and write_llama2c computes them when it needs them.
  return m;
}

/// Reads a Llama checkpoint directory (config.json + model.safetensors or shards).
inline Llama2cModel read_hf_llama(const std::string& dir) {
  llama_config_of(read_hf_config((std::filesystem::path(dir) / "config.json").string()), dir);  // the family first
  const HfCheckpoint c = read_hf_directory(dir);
  return llama_from_hf(c.config, c.tensors, dir);
}

/// The tensors of `m` in Hugging Face layout, as `dtype`.
inline SafeTensors llama_to_hf(const Llama2cModel& m, Dtype dtype = Dtype::f32) {
  const auto& c = m.config;
  SafeTensors st;
  st.metadata["format"] = "pt";
  detail::put_matrix_as(st, "model.embed_tokens.weight", m.token_embedding, dtype);
  if (!c.shared_classifier) detail::put_matrix_as(st, "lm_head.weight", m.wcls, dtype);
  detail::put_vector_as(st, "model.norm.weight", m.rms_final, dtype);
  const int hs = c.head_size();
  const auto rope = [&](const RowMatrix<float>& w) {
    RowMatrix<float> out(w.rows(), w.cols());
    for (Index r = 0; r < w.rows(); ++r) out.row(r) = w.row(hf_rope_source(r, hs));
    return out;
  };
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const std::size_t L = std::size_t(l);
    detail::put_vector_as(st, p + "input_layernorm.weight", m.rms_att[L], dtype);
    detail::put_vector_as(st, p + "post_attention_layernorm.weight", m.rms_ffn[L], dtype);
    detail::put_matrix_as(st, p + "self_attn.q_proj.weight", rope(m.wq[L]), dtype);
    detail::put_matrix_as(st, p + "self_attn.k_proj.weight", rope(m.wk[L]), dtype);
    detail::put_matrix_as(st, p + "self_attn.v_proj.weight", m.wv[L], dtype);
    detail::put_matrix_as(st, p + "self_attn.o_proj.weight", m.wo[L], dtype);
    detail::put_matrix_as(st, p + "mlp.gate_proj.weight", m.w1[L], dtype);
    detail::put_matrix_as(st, p + "mlp.down_proj.weight", m.w2[L], dtype);
    detail::put_matrix_as(st, p + "mlp.up_proj.weight", m.w3[L], dtype);
  }
  return st;
}

/// Writes `m` as a Hugging Face Llama directory (config.json + model.safetensors).
inline void write_hf_llama(const Llama2cModel& m, const std::string& dir, Dtype dtype = Dtype::f32,
                           std::int64_t max_shard_bytes = 0) {
  write_hf_directory(hf_config_of(m.config), llama_to_hf(m, dtype), dir, max_shard_bytes);
}

// ---- GPT-2 --------------------------------------------------------------------------------

inline Gpt2Config gpt2_config_of(const HfConfig& h, const std::string& source) {
  if (h.model_type != "gpt2")
    detail::fail<format_error>("read_hf_gpt2", "'", source, "' is a '", h.model_type, "' model; "
                               "\"gpt2\" was expected");
  Gpt2Config c;
  c.vocab_size = h.vocab_size;
  c.dim = h.hidden_size;
  c.hidden_dim = h.intermediate_size;
  c.n_layers = h.num_layers;
  c.n_heads = h.num_heads;
  c.n_positions = h.max_positions;
  c.norm_eps = h.norm_eps;
  return c;
}

/// A GPT-2 model from a config and its tensors, named with or without "transformer.".
inline Gpt2Model gpt2_from_hf(const HfConfig& hf, const SafeTensors& st, const std::string& source) {
  static constexpr const char* where = "read_hf_gpt2";
  Gpt2Model m;
  const auto& c = m.config = gpt2_config_of(hf, source);
  const std::string prefix = st.contains("transformer.wte.weight") ? "transformer." : "";
  detail::HfTensorReader read(where, st, source, prefix);
  const auto matrix = [&](const std::string& name, int rows, int cols) { return read.matrix(name, rows, cols); };
  const auto conv1d = [&](const std::string& name, int out, int in) { return read.conv1d(name, out, in); };
  const auto vector = [&](const std::string& name, int size) { return read.vector(name, size); };
  m.wte = matrix("wte.weight", c.vocab_size, c.dim);
  m.wpe = matrix("wpe.weight", c.n_positions, c.dim);
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "h." + std::to_string(l) + ".";
    m.ln1_w.push_back(vector(p + "ln_1.weight", c.dim));
    m.ln1_b.push_back(vector(p + "ln_1.bias", c.dim));
    m.attn_w.push_back(conv1d(p + "attn.c_attn.weight", 3 * c.dim, c.dim));
    m.attn_b.push_back(vector(p + "attn.c_attn.bias", 3 * c.dim));
    m.proj_w.push_back(conv1d(p + "attn.c_proj.weight", c.dim, c.dim));
    m.proj_b.push_back(vector(p + "attn.c_proj.bias", c.dim));
    m.ln2_w.push_back(vector(p + "ln_2.weight", c.dim));
    m.ln2_b.push_back(vector(p + "ln_2.bias", c.dim));
    m.fc_w.push_back(conv1d(p + "mlp.c_fc.weight", c.hidden_dim, c.dim));
    m.fc_b.push_back(vector(p + "mlp.c_fc.bias", c.hidden_dim));
    m.fc_proj_w.push_back(conv1d(p + "mlp.c_proj.weight", c.dim, c.hidden_dim));
    m.fc_proj_b.push_back(vector(p + "mlp.c_proj.bias", c.dim));
  }
  m.lnf_w = vector("ln_f.weight", c.dim);
  m.lnf_b = vector("ln_f.bias", c.dim);
  if (st.contains("lm_head.weight")) {  // GPT2LMHeadModel's tied copy, when saved
    if (read.top_level_matrix("lm_head.weight", c.vocab_size, c.dim) != m.wte)
      detail::fail<format_error>(where, "'", source, "': lm_head.weight differs from wte; lmshrink's "
                                 "GPT-2 ties the head to the token embedding");
  }
  read.check_all_used([](const std::string& name) {
    // The causal-mask buffers GPT-2 checkpoints carry.
    return detail::ends_with(name, ".attn.bias") || detail::ends_with(name, ".attn.masked_bias");
  });
  return m;
}

inline Gpt2Model read_hf_gpt2(const std::string& dir) {
  gpt2_config_of(read_hf_config((std::filesystem::path(dir) / "config.json").string()), dir);  // the family first
  const HfCheckpoint c = read_hf_directory(dir);
  return gpt2_from_hf(c.config, c.tensors, dir);
}

/// The tensors of `m` as GPT2LMHeadModel saves them ("transformer." names, Conv1D (in, out)).
inline SafeTensors gpt2_to_hf(const Gpt2Model& m, Dtype dtype = Dtype::f32) {
  SafeTensors st;
  st.metadata["format"] = "pt";
  const std::string t = "transformer.";
  detail::put_matrix_as(st, t + "wte.weight", m.wte, dtype);
  detail::put_matrix_as(st, t + "wpe.weight", m.wpe, dtype);
  const auto conv1d = [&](const std::string& name, const RowMatrix<float>& w) {
    detail::put_matrix_as(st, name, RowMatrix<float>(w.transpose()), dtype);
  };
  for (int l = 0; l < m.config.n_layers; ++l) {
    const std::string p = t + "h." + std::to_string(l) + ".";
    const std::size_t L = std::size_t(l);
    detail::put_vector_as(st, p + "ln_1.weight", m.ln1_w[L], dtype);
    detail::put_vector_as(st, p + "ln_1.bias", m.ln1_b[L], dtype);
    conv1d(p + "attn.c_attn.weight", m.attn_w[L]);
    detail::put_vector_as(st, p + "attn.c_attn.bias", m.attn_b[L], dtype);
    conv1d(p + "attn.c_proj.weight", m.proj_w[L]);
    detail::put_vector_as(st, p + "attn.c_proj.bias", m.proj_b[L], dtype);
    detail::put_vector_as(st, p + "ln_2.weight", m.ln2_w[L], dtype);
    detail::put_vector_as(st, p + "ln_2.bias", m.ln2_b[L], dtype);
    conv1d(p + "mlp.c_fc.weight", m.fc_w[L]);
    detail::put_vector_as(st, p + "mlp.c_fc.bias", m.fc_b[L], dtype);
    conv1d(p + "mlp.c_proj.weight", m.fc_proj_w[L]);
    detail::put_vector_as(st, p + "mlp.c_proj.bias", m.fc_proj_b[L], dtype);
  }
  detail::put_vector_as(st, t + "ln_f.weight", m.lnf_w, dtype);
  detail::put_vector_as(st, t + "ln_f.bias", m.lnf_b, dtype);
  return st;
}

inline void write_hf_gpt2(const Gpt2Model& m, const std::string& dir, Dtype dtype = Dtype::f32,
                          std::int64_t max_shard_bytes = 0) {
  write_hf_directory(hf_config_of(m.config), gpt2_to_hf(m, dtype), dir, max_shard_bytes);
}

LMSHRINK_NAMESPACE_END
