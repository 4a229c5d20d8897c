#pragma once
// A Hugging Face checkpoint directory: config.json and model.safetensors, or shards listed by
// model.safetensors.index.json. Tensors are read as one SafeTensors (read_hf_tensors), named
// tensors as float of the expected shape (detail::HfTensorReader), and written as F32, F16 or
// BF16; a directory is replaced as a whole (write_hf_directory) and read from one version of it
// (lmshrink::read_directory_consistently). What each family's tensors are called:
// lmshrink/models/<family>/hf.hpp.
#include <Eigen/Core>
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
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
#include "hf_config.hpp"
#include "safetensors.hpp"

LMSHRINK_NAMESPACE_BEGIN

/// The files that go with a Hugging Face model beside its config and weights: its tokenizer (any
/// of the formats) and its generation settings. A converted or exported model is usable as it
/// stands only with them.
inline constexpr const char* kHfCompanionFiles[] = {
    "tokenizer.model",  "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "added_tokens.json", "vocab.json",    "merges.txt",            "generation_config.json"};

/// Copies the companion files `from_dir` holds into `to_dir`, each atomically (a failed copy
/// leaves the old file or none); returns their names. Each is at most 256 MiB.
inline std::vector<std::string> copy_hf_companion_files(const std::string& from_dir, const std::string& to_dir) {
  static constexpr const char* where = "copy_hf_companion_files";
  std::vector<std::string> copied;
  for (const char* name : kHfCompanionFiles) {
    const std::filesystem::path from = std::filesystem::path(from_dir) / name;
    std::error_code ec;
    if (!std::filesystem::is_regular_file(from, ec)) continue;
    const std::vector<char> bytes = detail::read_file_bytes(where, from.string(), 0, "", std::int64_t(256) << 20,
                                                            "more than the 256 MiB a tokenizer file may have");
    detail::write_file_atomically(where, (std::filesystem::path(to_dir) / name).string(), [&](std::FILE* f) {
      return bytes.empty() || std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
    });
    copied.push_back(name);
  }
  return copied;
}

/// config.json's torch_dtype for weights stored as `dtype` ("float32", "float16", "bfloat16").
inline const char* torch_dtype_name(Dtype dtype) {
  return dtype == Dtype::bf16 ? "bfloat16" : dtype == Dtype::f16 ? "float16" : "float32";
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
  if (!fs::exists(single, ec) && !fs::exists(index_path, ec)) {
    // PyTorch's pickle checkpoints are not read: unpickling can run any code the file holds,
    // and a safe subset reader would still be a second format to trust. One command converts.
    for (const char* pickle : {"pytorch_model.bin", "pytorch_model.bin.index.json"})
      if (fs::exists(fs::path(dir) / pickle, ec))
        detail::fail<io_error>(where, "'", dir, "' holds ", pickle, " (a PyTorch pickle) and no model.safetensors; "
                               "lmshrink reads safetensors only, since unpickling can run code. Convert it once, where "
                               "transformers is installed: python -c \"from transformers import AutoModelForCausalLM as M; "
                               "M.from_pretrained('", dir, "').save_pretrained('", dir, "-safetensors', "
                               "safe_serialization=True)\" (then copy the tokenizer files along)");
  }
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
/// A model of `model_type` from directory `dir`, read from one version of it even while a save
/// replaces it: another model_type is a format_error naming `where`; else `read(fields, tensors)`
/// with config.json's keys (HfConfigFields) and the tensors (read_hf_tensors). How each family
/// reads its directory (lmshrink/models/<family>/hf.hpp).
template <class Read>
auto read_hf_model(const char* where, const std::string& model_type, const std::string& dir, Read read) {
  return detail::read_directory_consistently("read_hf", dir, [&](const std::string& path) {
    const HfConfigFields fields =
        HfConfigFields::read("read_hf_config", (std::filesystem::path(path) / "config.json").string());
    const std::string type = fields.text("model_type", "");
    if (type != model_type)  // the family first
      detail::fail<format_error>(where, "'", dir, "' is a '", type, "' model; \"", model_type, "\" was expected");
    return read(fields, read_hf_tensors(path));
  });
}

/// `config_json` is config.json's text, written as given (a family outside io/ writes its own).
inline void write_hf_directory(const std::string& config_json, const SafeTensors& st, const std::string& dir,
                               std::int64_t max_shard_bytes = 0) {
  namespace fs = std::filesystem;
  const std::string& json = config_json;
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

LMSHRINK_NAMESPACE_END
