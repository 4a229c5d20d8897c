#pragma once
// The checkpoint skeleton every family shares: lmshrink's self-describing safetensors, the
// family's config in the metadata, the plain tensors under the family's names, and each linear
// layer dense ("<name>.weight", and "<name>.bias" when it has one) or compressed
// (lmshrink::put_compressed_layer), so that a file loads without knowing ρ. A family only says
// what its config and tensors are called (llama/checkpoint.hpp, gpt2/checkpoint.hpp).
//
//   CheckpointWriter out("gpt2", method, extra);
//   out.integer("dim", c.dim);  out.tensor("transformer.wte.weight", w.wte);
//   out.linear(name, layer);    out.write(path);                       // atomically
//
//   CheckpointReader in(st, path, "gpt2");                             // refuses other files
//   c.dim = in.integer("dim", 1, 1 << 16);
//   auto layer = in.linear(name, out_features, in_features, /*with_bias=*/true);

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../compact.hpp"
#include "../errors.hpp"
#include "../io/hf_config.hpp"
#include "../io/safetensors.hpp"
#include "../low_rank_sparse_linear.hpp"
#include "../types.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace models {

/// Whether a layer is plain dense: rank 0, every row of S live, no element mask.
template <class Scalar>
bool is_dense_layer(const LowRankSparseLinear<Scalar>& layer) {
  return layer.rank() == 0 && layer.live_rows() == layer.out_features() && !layer.has_element_mask();
}

/// Builds one family's checkpoint: metadata "lmshrink.checkpoint: <family>/1", the config, the
/// tensors and the linear layers.
class CheckpointWriter {
 public:
  /// `method` names how the compressed layers were made; `extra` is added to the metadata.
  CheckpointWriter(const std::string& family, std::string method,
                   const std::map<std::string, std::string>& extra = {})
      : method_(std::move(method)) {
    st_.metadata = extra;
    st_.metadata["format"] = "pt";
    st_.metadata["lmshrink.checkpoint"] = family + "/1";
  }

  void text(const std::string& key, const std::string& value) { st_.metadata[key] = value; }
  /// The keys of the config.json the model was read from (HfConfig::source_keys), as one JSON
  /// object under "hf_config", so that an export from the checkpoint keeps them.
  void hf_source_keys(const std::vector<std::pair<std::string, std::string>>& keys) {
    if (keys.empty()) return;
    std::string json = "{";
    for (std::size_t i = 0; i < keys.size(); ++i) {
      if (i) json += ", ";
      detail::json_escape(json, keys[i].first);
      json += ": " + keys[i].second;
    }
    st_.metadata["hf_config"] = json + "}";
  }
  void integer(const std::string& key, std::int64_t value) { st_.metadata[key] = std::to_string(value); }
  /// A real number that reads back exactly (%.17g).
  void real(const std::string& key, double value) {
    char number[32];
    std::snprintf(number, sizeof number, "%.17g", value);
    st_.metadata[key] = number;
  }
  template <class Derived>
  void tensor(const std::string& name, const Eigen::MatrixBase<Derived>& t) {
    st_.put(name, t);
  }
  /// A dense layer as "<name>.weight" (and "<name>.bias"), any other as a compressed layer, with
  /// the form the families pack it in stated as "<name>.pack_form" (compact_form_name of
  /// pack_choice at lmshrink.pack_batch tokens per call; docs/compact.md).
  void linear(const std::string& name, const LowRankSparseLinear<float>& layer) {
    if (is_dense_layer(layer)) {
      st_.put(name + ".weight", layer.S());
      if (layer.has_bias()) st_.put(name + ".bias", layer.bias());
    } else {
      put_compressed_layer(st_, name, layer, method_);
      const Index batch = fastest_pack().batch;
      st_.metadata["lmshrink.pack_batch"] = std::to_string(batch);
      st_.metadata[name + ".pack_form"] = compact_form_name(pack_choice(layer, batch).form);
    }
  }
  /// Writes the file atomically.
  void write(const std::string& path) const { write_safetensors(st_, path); }

 private:
  SafeTensors st_;
  std::string method_;
};

/// Reads one family's checkpoint: refuses a file of another family or none, and reads its config
/// with every value bounded before anything is allocated. Errors name "<family>::read_checkpoint"
/// and the file.
class CheckpointReader {
 public:
  CheckpointReader(const SafeTensors& st, std::string path, const std::string& family)
      : st_(st), path_(std::move(path)), where_(family + "::read_checkpoint") {
    const std::string marker = family + "/1";
    if (st.metadata.count("lmshrink.checkpoint") == 0 || st.meta("lmshrink.checkpoint") != marker)
      fail<format_error>(where_.c_str(), "'", path_, "' has no 'lmshrink.checkpoint: ", marker, "' metadata; it was not "
           "written by ", family, "::save_checkpoint");
  }

  const SafeTensors& tensors() const { return st_; }
  const char* where() const { return where_.c_str(); }

  /// A format_error naming the function and the file: "'<path>': <parts>".
  template <class... Parts>
  [[noreturn]] void refuse(Parts&&... parts) const {
    fail<format_error>(where_.c_str(), "'", path_, "': ", std::forward<Parts>(parts)...);
  }

  int integer(const char* key, std::int64_t lo, std::int64_t hi) const { return int(st_.meta_int(key, lo, hi)); }
  bool flag(const char* key) const { return st_.meta(key) == "true"; }
  /// The config.json keys stored by CheckpointWriter::hf_source_keys (none when absent).
  std::vector<std::pair<std::string, std::string>> hf_source_keys() const {
    if (st_.metadata.count("hf_config") == 0) return {};
    return HfConfigFields(where_.c_str(), path_ + " (metadata 'hf_config')", st_.meta("hf_config")).members();
  }
  /// A real number in [lo, hi]; `fallback` when the key is absent (else the key is required).
  double real(const char* key, double lo, double hi, const double* fallback = nullptr) const {
    if (fallback != nullptr && st_.metadata.count(key) == 0) return *fallback;
    const std::string& s = st_.meta(key);
    char* end = nullptr;
    const double v = std::strtod(s.c_str(), &end);
    if (s.empty() || *end != '\0' || !(v >= lo && v <= hi))
      refuse("metadata '", key, "' is '", s, "'; a number in [", lo, ", ", hi, "] was expected");
    return v;
  }
  /// A compressed layer's dense S is not justified by the file's bytes (see ReadLimits): the
  /// whole model's linear weights are bounded before any layer is built.
  void check_linear_entries(std::int64_t entries) const {
    if (entries > (std::int64_t(1) << 31))
      fail<format_error>(where_.c_str(), "'", path_, "' describes ", entries,
                         " linear weights; at most 2^31 are supported by the model tier");
  }

  RowMatrix<float> matrix(const std::string& name, Index rows, Index cols) const {
    return st_.matrix<float>(name, rows, cols);
  }
  Vector<float> vector(const std::string& name, Index n) const { return st_.vector<float>(name, n); }

  /// Linear layer `name`: compressed when stored so, else dense from "<name>.weight" (and
  /// "<name>.bias" when `with_bias`); refused unless it is (out, in), with a bias exactly when asked.
  LowRankSparseLinear<float> linear(const std::string& name, int out, int in, bool with_bias) const {
    if (!has_compressed_layer(st_, name)) {
      auto layer = make_dense_layer<float>(st_.matrix<float>(name + ".weight", out, in), with_bias);
      if (with_bias) layer.bias() = st_.vector<float>(name + ".bias", out);
      return layer;
    }
    auto layer = get_compressed_layer<float>(st_, name);
    if (layer.out_features() != out || layer.in_features() != in || with_bias != layer.has_bias())
      refuse("layer '", name, "' is ", layer.out_features(), "x", layer.in_features(),
             layer.has_bias() ? " with a bias" : " without a bias", " but the config needs ", out, "x", in,
             with_bias ? " with a bias" : " without a bias");
    return layer;
  }

 private:
  const SafeTensors& st_;
  std::string path_, where_;
};

}  // namespace models
LMSHRINK_NAMESPACE_END
