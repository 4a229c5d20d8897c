// Fuzz target: safetensors parsing, every typed accessor, get_compressed_layer, and the round
// trip of whatever parses (written back, it must parse to the same tensors).
#include <cstdint>
#include <cstring>
#include <lmshrink/io/safetensors.hpp>
#include <string>
#include <vector>

#include "fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  lmshrink::SafeTensors st;
  try {
    st = lmshrink::parse_safetensors(reinterpret_cast<const char*>(data), size, "fuzz");
  } catch (const lmshrink::error&) {
    return 0;
  }
  for (const auto& [name, t] : st.tensors) {
    try {
      // What is returned as float is finite: narrowing is checked, not only the stored value.
      if (t.shape.size() == 2) FUZZ_CHECK(st.matrix<float>(name, t.shape[0], t.shape[1]).allFinite());
      if (t.shape.size() == 1) {
        (void)st.vector<double>(name, t.shape[0]);
        (void)st.int32s(name, t.shape[0]);
      }
    } catch (const lmshrink::error&) {
    }
  }
  lmshrink::ReadLimits limits;
  limits.max_layer_elements = 1 << 16;  // keeps each input fast; the bound itself is tested
  lmshrink::SafeTensors again;
  for (const auto& [key, value] : st.metadata) {
    const std::string suffix = ".rank";
    if (key.size() <= suffix.size() || key.compare(key.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    const std::string prefix = key.substr(0, key.size() - suffix.size());
    try {
      const auto layer = lmshrink::get_compressed_layer<float>(st, prefix, limits);
      FUZZ_CHECK(layer.U().allFinite() && layer.V().allFinite() && layer.S().allFinite());
      lmshrink::put_compressed_layer(again, prefix, layer, "fuzz");
      (void)lmshrink::get_compressed_layer<float>(again, prefix, limits);
    } catch (const lmshrink::error&) {
    }
  }
  // Round trip of the whole file.
  const std::string header = lmshrink::detail::safetensors_header(st);
  std::vector<char> bytes(8);
  for (int i = 0; i < 8; ++i) bytes[std::size_t(i)] = char(std::uint64_t(header.size()) >> (8 * i));
  bytes.insert(bytes.end(), header.begin(), header.end());
  for (const auto& [name, t] : st.tensors) bytes.insert(bytes.end(), t.bytes.begin(), t.bytes.end());
  const lmshrink::SafeTensors back = lmshrink::parse_safetensors(bytes.data(), bytes.size(), "round trip");
  FUZZ_CHECK(back.metadata == st.metadata);
  FUZZ_CHECK(back.tensors.size() == st.tensors.size());
  for (const auto& [name, t] : st.tensors) {
    const auto& u = back.tensors.at(name);
    FUZZ_CHECK(u.dtype == t.dtype && u.shape == t.shape && u.bytes == t.bytes);
  }
  return 0;
}
