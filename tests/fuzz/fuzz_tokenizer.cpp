// Fuzz target: tokenizer parsing, then encoding and decoding the input's first bytes as text.
#include <algorithm>
#include <cstdint>
#include <lmshrink/io/tokenizer.hpp>
#include <string>

#include "fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const lmshrink::Tokenizer tok =
        lmshrink::parse_tokenizer(reinterpret_cast<const char*>(data), size, "fuzz");
    FUZZ_CHECK(tok.vocab_size() >= 259);
    const std::string text(reinterpret_cast<const char*>(data), std::min<std::size_t>(size, 48));
    const std::vector<int> ids = tok.encode(text, true, true);
    for (int id : ids) FUZZ_CHECK(id >= 0 && id < tok.vocab_size());
    (void)tok.decode(ids);
  } catch (const lmshrink::error&) {
  }
  return 0;
}
