#pragma once
// Hugging Face's config.json: the hyperparameters lmshrink uses, under neutral names (HfConfig),
// read with every value checked (parse_hf_config, read_hf_config) and written back with the keys
// Hugging Face's own classes write (hf_config_json). Families: io/hf_llama.hpp, io/hf_gpt2.hpp.
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
#include <string_view>

#include "../config.hpp"
#pragma push_macro("LMSHRINK_INSIDE_LIBRARY")
#define LMSHRINK_INSIDE_LIBRARY
#include "../detail/json.hpp"
#include "../detail/read_file.hpp"
#pragma pop_macro("LMSHRINK_INSIDE_LIBRARY")
#include "../errors.hpp"
#include "../types.hpp"

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

/// config.json's keys, typed and bounded: what parse_hf_config reads them with, and what a model
/// family outside io/ reads its own keys with (lmshrink/models/qwen2/). Every error is a
/// format_error naming the function and the file.
class HfConfigFields {
 public:
  /// Parses `text` (`source` names it); refused unless it is a JSON object.
  HfConfigFields(const char* where, std::string source, std::string_view text)
      : where_(where), source_(std::move(source)),
        root_(detail::parse_json(where, source_, text, {64, 1 << 16})) {
    if (root_.kind != detail::JsonValue::Kind::object)
      detail::fail<format_error>(where, "'", source_, "' is ", root_.kind_name(), "; an object was expected");
  }
  /// Reads config.json at `path` (at most 1 MiB).
  static HfConfigFields read(const char* where, const std::string& path) {
    const std::vector<char> bytes = detail::read_file_bytes(
        where, path, 2, "a JSON object", std::int64_t(1) << 20,
        "more than the 1 MiB a config.json may have");
    return HfConfigFields(where, path, std::string_view(bytes.data(), bytes.size()));
  }

  const std::string& source() const { return source_; }
  template <class... Parts>
  [[noreturn]] void bad(const Parts&... parts) const {
    detail::fail<format_error>(where_, "'", source_, "': ", parts...);
  }
  bool present(const char* key) const {
    const detail::JsonValue* v = get(key);
    return v != nullptr && v->kind != detail::JsonValue::Kind::null;
  }
  /// A required integer in [lo, hi].
  int integer(const char* key, int lo, int hi) const {
    const detail::JsonValue* v = get(key);
    if (v == nullptr) bad("the key '", key, "' is missing");
    if (!v->is_integer || v->integer < lo || v->integer > hi)
      bad("'", key, "' is ", v->kind == detail::JsonValue::Kind::number ? v->text : v->kind_name(),
          "; an integer in [", lo, ", ", hi, "] was expected");
    return int(v->integer);
  }
  /// A number in [lo, hi], or `fallback` when absent or null.
  double number(const char* key, double fallback, double lo, double hi) const {
    if (!present(key)) return fallback;
    const detail::JsonValue* v = get(key);
    if (v->kind != detail::JsonValue::Kind::number || !(v->number >= lo && v->number <= hi))
      bad("'", key, "' is ", v->kind == detail::JsonValue::Kind::number ? v->text : v->kind_name(),
          "; a number in [", lo, ", ", hi, "] was expected");
    return v->number;
  }
  bool boolean(const char* key, bool fallback) const {
    if (!present(key)) return fallback;
    const detail::JsonValue* v = get(key);
    if (v->kind != detail::JsonValue::Kind::boolean) bad("'", key, "' is ", v->kind_name(), "; true or false was expected");
    return v->boolean;
  }
  std::string text(const char* key, const std::string& fallback) const {
    if (!present(key)) return fallback;
    const detail::JsonValue* v = get(key);
    if (v->kind != detail::JsonValue::Kind::string) bad("'", key, "' is ", v->kind_name(), "; a string was expected");
    return v->text;
  }
  /// A feature lmshrink does not implement: the key must be absent, null, or false.
  void unsupported_unless_false(const char* key, const char* what) const {
    if (present(key) && !(get(key)->kind == detail::JsonValue::Kind::boolean && !get(key)->boolean))
      bad("'", key, "' is set; lmshrink does not implement ", what);
  }

 private:
  const detail::JsonValue* get(const char* key) const { return root_.find(key); }

  const char* where_;
  std::string source_;
  detail::JsonValue root_;
};

/// The keys Llama-shaped configs share ("llama", and the families built on it such as "qwen2"):
/// sizes, heads, RMSNorm eps, RoPE base, tied embeddings, silu; refused: RoPE scaling, a
/// head_dim other than hidden_size / heads, heads not a multiple of kv heads, an odd head size.
inline HfConfig llama_shaped_hf_config(const HfConfigFields& r, const char* family) {
  HfConfig c;
  constexpr int big = 1 << 20;
  c.model_type = family;
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
    r.bad("'hidden_act' is '", c.activation, "'; lmshrink's ", family, " implements \"silu\"");
  if (r.present("rope_scaling"))
    r.bad("'rope_scaling' is set; lmshrink implements plain RoPE (no scaling)");
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
  return c;
}

/// Parses config.json's text (`source` names it in messages). format_error for a missing or
/// out-of-range value, an unknown model_type, or a feature lmshrink does not implement.
inline HfConfig parse_hf_config(std::string_view text, const std::string& source) {
  static constexpr const char* where = "read_hf_config";
  const HfConfigFields r(where, source, text);
  HfConfig c;
  c.model_type = r.text("model_type", "");
  constexpr int big = 1 << 20;
  if (c.model_type == "llama") {
    c = llama_shaped_hf_config(r, "llama");
    r.unsupported_unless_false("attention_bias", "biases on Llama's attention projections");
    r.unsupported_unless_false("mlp_bias", "biases on Llama's MLP");
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

/// config.json's model_type at `path` ("" when absent), the family's to read the rest.
inline std::string read_hf_model_type(const std::string& path) {
  return HfConfigFields::read("read_hf_config", path).text("model_type", "");
}

namespace detail {
/// config.json's text, one key a line, in the order given.
class HfConfigJsonWriter {
 public:
  void raw(const char* key, const std::string& value) { keys_.emplace_back(key, value); }
  void integer(const char* key, std::int64_t v) { raw(key, std::to_string(v)); }
  void boolean(const char* key, bool v) { raw(key, v ? "true" : "false"); }
  void number(const char* key, double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    raw(key, buf);
  }
  void text(const char* key, const std::string& v) {
    std::string out;
    json_escape(out, v);
    raw(key, out);
  }
  std::string str() const {
    std::string s = "{\n";
    for (std::size_t i = 0; i < keys_.size(); ++i)
      s += "  \"" + keys_[i].first + "\": " + keys_[i].second + (i + 1 < keys_.size() ? ",\n" : "\n");
    return s + "}\n";
  }

 private:
  std::vector<std::pair<std::string, std::string>> keys_;
};
}  // namespace detail

/// config.json of a Llama-shaped model (c.model_type: "llama", or a family built on it) with
/// the keys LlamaConfig writes, `architecture` first, `extra` keys (already JSON) after
/// hidden_act, and `torch_dtype` last.
inline std::string llama_shaped_hf_config_json(const HfConfig& c, const std::string& architecture,
                                               const std::vector<std::pair<std::string, std::string>>& extra = {},
                                               const std::string& torch_dtype = "float32") {
  detail::HfConfigJsonWriter w;
  w.raw("architectures", "[\"" + architecture + "\"]");
  w.text("model_type", c.model_type);
  w.integer("vocab_size", c.vocab_size);
  w.integer("hidden_size", c.hidden_size);
  w.integer("intermediate_size", c.intermediate_size);
  w.integer("num_hidden_layers", c.num_layers);
  w.integer("num_attention_heads", c.num_heads);
  w.integer("num_key_value_heads", c.num_kv_heads);
  w.integer("max_position_embeddings", c.max_positions);
  w.number("rms_norm_eps", c.norm_eps);
  w.number("rope_theta", c.rope_theta);
  w.text("hidden_act", c.activation.empty() ? "silu" : c.activation);
  for (const auto& [key, value] : extra) w.raw(key.c_str(), value);
  w.boolean("tie_word_embeddings", c.tie_word_embeddings);
  w.text("torch_dtype", torch_dtype);
  return w.str();
}

/// config.json for `c`, with the keys Hugging Face's own classes write.
inline std::string hf_config_json(const HfConfig& c) {
  if (c.model_type == "llama") return llama_shaped_hf_config_json(c, "LlamaForCausalLM");
  if (c.model_type != "gpt2")
    detail::fail<value_error>("hf_config_json", "model_type '", c.model_type, "'; \"llama\" or "
                              "\"gpt2\" was expected");
  detail::HfConfigJsonWriter w;
  w.raw("architectures", "[\"GPT2LMHeadModel\"]");
  w.text("model_type", "gpt2");
  w.integer("vocab_size", c.vocab_size);
  w.integer("n_embd", c.hidden_size);
  w.integer("n_inner", c.intermediate_size);
  w.integer("n_layer", c.num_layers);
  w.integer("n_head", c.num_heads);
  w.integer("n_positions", c.max_positions);
  w.integer("n_ctx", c.max_positions);
  w.number("layer_norm_epsilon", c.norm_eps);
  w.text("activation_function", c.activation.empty() ? "gelu_new" : c.activation);
  w.boolean("tie_word_embeddings", true);
  w.text("torch_dtype", "float32");
  return w.str();
}

LMSHRINK_NAMESPACE_END
