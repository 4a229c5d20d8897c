// Fuzz target: a compressed layer's metadata. The input's first line gives rank, out_features,
// in_features and kept_rows (as text, any bytes allowed) and whether an element mask and a bias
// are stored; the rest fills the tensors those numbers imply, clamped to [0, 64] (cycled).
// get_compressed_layer must refuse or build a layer whose shape is exactly what the metadata text
// says (a plain decimal, nothing around it), and a layer that builds must write back and read to
// the same layer.
#include <charconv>
#include <cstdint>
#include <cstring>
#include <lmshrink/io/safetensors.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const std::size_t eol = std::min(text.find('\n'), text.size());
  std::istringstream head(text.substr(0, eol));
  std::string field[6];
  for (auto& f : field) head >> f;
  // The tensors' bytes, cycled; a zero byte when the input ends at (or has no) first newline.
  std::string payload = eol < text.size() ? text.substr(eol + 1) : std::string();
  if (payload.empty()) payload.assign(1, '\0');
  lmshrink::SafeTensors st;
  st.metadata = {{"l.rank", field[0]}, {"l.out_features", field[1]}, {"l.in_features", field[2]},
                 {"l.kept_rows", field[3]}, {"l.method", "fuzz"}};
  const auto number = [](const std::string& s) {
    try {
      return std::max(0L, std::min(std::stol(s), 64L));  // tensors small enough to build
    } catch (...) {
      return 0L;
    }
  };
  const long r = number(field[0]), out = number(field[1]), in = number(field[2]), k = number(field[3]);
  // What the metadata text means when read strictly; -1 when it is not a plain decimal.
  const auto exactly = [](const std::string& s) {
    long v = -1;
    const auto [end, status] = std::from_chars(s.data(), s.data() + s.size(), v);
    return status == std::errc() && end == s.data() + s.size() && !s.empty() ? v : -1L;
  };
  std::size_t at = 0;
  const auto fill = [&](std::size_t bytes) {
    std::vector<char> b(bytes);
    for (auto& c : b) c = payload[at++ % payload.size()];
    return b;
  };
  const auto put = [&](const std::string& name, lmshrink::Dtype d, std::vector<std::int64_t> shape) {
    std::size_t n = 1;
    for (auto s : shape) n *= std::size_t(s);
    const auto b = fill(n * lmshrink::dtype_size(d));
    st.put(name, d, shape, b.data());
  };
  if (r > 0) {
    put("l.U", lmshrink::Dtype::f32, {out, r});
    put("l.V", lmshrink::Dtype::f32, {r, in});
  }
  put("l.S_index", lmshrink::Dtype::i32, {k});
  put("l.S_rows", lmshrink::Dtype::f32, {k, in});
  if (field[4] == "1") put("l.S_mask", lmshrink::Dtype::u8, {k, in});
  if (field[5] == "1") put("l.bias", lmshrink::Dtype::f32, {out});
  lmshrink::ReadLimits limits;
  limits.max_layer_elements = 1 << 16;
  try {
    const auto layer = lmshrink::get_compressed_layer<float>(st, "l", limits);
    FUZZ_CHECK(layer.rank() == exactly(field[0]) && layer.out_features() == exactly(field[1]) &&
               layer.in_features() == exactly(field[2]));
    FUZZ_CHECK(layer.U().allFinite() && layer.V().allFinite() && layer.S().allFinite());
    FUZZ_CHECK(long(layer.row_mask().cast<int>().sum()) == exactly(field[3]));
    lmshrink::SafeTensors again;
    lmshrink::put_compressed_layer(again, "l", layer, "fuzz");
    const auto back = lmshrink::get_compressed_layer<float>(again, "l", limits);
    FUZZ_CHECK(back.U() == layer.U() && back.V() == layer.V() && back.S() == layer.S() &&
               back.row_mask() == layer.row_mask() && back.has_element_mask() == layer.has_element_mask());
  } catch (const lmshrink::error&) {
  }
  return 0;
}
