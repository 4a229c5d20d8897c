// Fuzz target: llama2.c checkpoint parsing; what parses must describe itself consistently.
#include <cstdint>
#include <lmshrink/models/llama/llama2c.hpp>

#include "fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    lmshrink::models::llama::DenseModel m = lmshrink::models::llama::parse_llama2c(reinterpret_cast<const char*>(data), size, "fuzz");
    const auto& c = m.config;
    FUZZ_CHECK(c.dim > 0 && c.vocab_size > 0 && c.n_layers > 0);
    FUZZ_CHECK(m.linear_weights().size() == std::size_t(7 * c.n_layers));
    FUZZ_CHECK(m.token_embedding.rows() == c.vocab_size && m.token_embedding.cols() == c.dim);
    FUZZ_CHECK(lmshrink::models::llama::llama2c_detail::llama2c_file_bytes(c) == std::int64_t(size));
    (void)m.parameter_count();
  } catch (const lmshrink::error&) {
  }
  return 0;
}
