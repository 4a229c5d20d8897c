// Fuzz target: tokenizer.json parsing, then encoding fixed tricky texts and the input's last
// bytes (with and without special tokens), and decoding what came out.
#include <algorithm>
#include <cstdint>
#include <lmshrink/io/hf_tokenizer.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const std::string_view json(reinterpret_cast<const char*>(data), size);
    const lmshrink::HfTokenizer tok = lmshrink::parse_hf_tokenizer(json, "fuzz");
    FUZZ_CHECK(tok.vocab_size() >= 256);
    const std::size_t tail = std::min<std::size_t>(size, 48);
    const std::string texts[] = {"", "  a\r\n\r\n b 12345 it'S", "e\xcc\x81\xff\xc3<|endoftext|>",
                                 std::string(json.substr(size - tail))};
    for (const std::string& text : texts)
      for (const bool special : {false, true}) {
        const std::vector<int> ids = tok.encode(text, special);
        for (int id : ids) FUZZ_CHECK(id >= 0 && id < tok.vocab_size());
        // Without special tokens and NFC, decoding gives the text back byte for byte.
        if (!special && !tok.nfc()) FUZZ_CHECK(tok.decode(ids) == text);
      }
  } catch (const lmshrink::error&) {
  }
  return 0;
}
