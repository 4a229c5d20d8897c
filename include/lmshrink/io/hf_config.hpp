#pragma once
// Hugging Face's config.json, whatever the family: the hyperparameters lmshrink uses under neutral
// names (HfConfig), the keys typed and bounded for a family to read (HfConfigFields), the family
// named (read_hf_model_type) and the text written back (HfConfigJsonWriter). Each family reads
// and writes its own keys (lmshrink/models/<family>/hf.hpp); lmshrink/models/registry.hpp
// dispatches on model_type (read_hf_config, hf_config_json).
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
/// config.json's rope_scaling (Hugging Face's names): "linear" divides every RoPE frequency by
/// `factor`; "llama3" (Llama 3.1/3.2) divides the low frequencies (wavelength above
/// original_max_positions / low_freq_factor) by `factor`, keeps the high ones (wavelength below
/// original_max_positions / high_freq_factor), and blends in between. Empty type: no scaling.
struct RopeScaling {
  std::string type;
  double factor = 1, low_freq_factor = 1, high_freq_factor = 4;
  int original_max_positions = 0;
  bool enabled() const { return !type.empty(); }
  bool operator==(const RopeScaling& o) const {
    return type == o.type && factor == o.factor && low_freq_factor == o.low_freq_factor &&
           high_freq_factor == o.high_freq_factor && original_max_positions == o.original_max_positions;
  }
};

struct HfConfig {
  std::string model_type;     // "llama", "qwen2", "gpt2"
  int vocab_size = 0;
  int hidden_size = 0;        // llama hidden_size, gpt2 n_embd
  int intermediate_size = 0;  // llama intermediate_size, gpt2 n_inner (4·n_embd when null)
  int num_layers = 0;         // num_hidden_layers, n_layer
  int num_heads = 0;          // num_attention_heads, n_head
  int num_kv_heads = 0;       // num_key_value_heads (= num_heads when absent); gpt2: num_heads
  int max_positions = 0;      // max_position_embeddings, n_positions
  double norm_eps = 1e-5;     // rms_norm_eps, layer_norm_epsilon
  double rope_theta = 10000;  // llama only
  RopeScaling rope_scaling;   // llama only
  // Every key of the config.json read, as JSON text: written back after the writer's own keys
  // (bos/eos ids, generation defaults, a model's own settings), so nothing read is dropped.
  std::vector<std::pair<std::string, std::string>> source_keys;
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
    detail::fail<format_error>(where_, "'", source_, "': ", context_, parts...);
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
  /// Every key of the object, its value as JSON text, in file order.
  std::vector<std::pair<std::string, std::string>> members() const {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& [key, value] : root_.members) {
      std::string text;
      detail::json_dump(text, value);
      out.emplace_back(key, std::move(text));
    }
    return out;
  }
  /// The object at `key` as fields of its own (messages say "in 'key', ..."); format_error when
  /// it is not an object.
  HfConfigFields object(const char* key) const {
    const detail::JsonValue* v = get(key);
    if (v == nullptr || v->kind != detail::JsonValue::Kind::object)
      bad("'", key, "' is ", v == nullptr ? "missing" : v->kind_name(), "; an object was expected");
    return HfConfigFields(where_, source_, *v, context_ + "in '" + key + "', ");
  }
  /// Token ids such as bos_token_id / eos_token_id: absent or null → none; an integer or an array
  /// of integers (Llama 3.1 lists several EOS ids), each in [0, vocab).
  std::vector<int> token_ids(const char* key, int vocab) const {
    if (!present(key)) return {};
    const detail::JsonValue* v = get(key);
    std::vector<const detail::JsonValue*> items;
    if (v->kind == detail::JsonValue::Kind::array)
      for (const auto& item : v->items) items.push_back(&item);
    else
      items.push_back(v);
    std::vector<int> ids;
    for (const detail::JsonValue* item : items) {
      if (!item->is_integer || item->integer < 0 || item->integer >= vocab)
        bad("'", key, "' holds ", item->kind == detail::JsonValue::Kind::number ? item->text : item->kind_name(),
            "; a token id in [0, ", vocab, ") or a list of them was expected");
      ids.push_back(int(item->integer));
    }
    return ids;
  }
  /// A feature lmshrink does not implement: the key must be absent, null, or false.
  void unsupported_unless_false(const char* key, const char* what) const {
    if (present(key) && !(get(key)->kind == detail::JsonValue::Kind::boolean && !get(key)->boolean))
      bad("'", key, "' is set; lmshrink does not implement ", what);
  }

 private:
  HfConfigFields(const char* where, std::string source, detail::JsonValue root, std::string context)
      : where_(where), source_(std::move(source)), root_(std::move(root)), context_(std::move(context)) {}
  const detail::JsonValue* get(const char* key) const { return root_.find(key); }

  const char* where_;
  std::string source_;
  detail::JsonValue root_;
  std::string context_;  // "in 'rope_scaling', " for a nested object
};

/// config.json's model_type at `path` ("" when absent), the family's to read the rest.
inline std::string read_hf_model_type(const std::string& path) {
  return HfConfigFields::read("read_hf_config", path).text("model_type", "");
}

/// config.json's text, one key a line, in the order given: how each family writes its own.
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
    detail::json_escape(out, v);
    raw(key, out);
  }
  /// Adds the keys of `source` this writer has not written (the config.json a model was read
  /// from keeps every key it had).
  void keep(const std::vector<std::pair<std::string, std::string>>& source) {
    for (const auto& [key, value] : source) {
      bool written = false;
      for (const auto& k : keys_) written = written || k.first == key;
      if (!written) keys_.emplace_back(key, value);
    }
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

LMSHRINK_NAMESPACE_END
