// Fuzz target: tokenizer.model parsing, then encoding fixed tricky texts and the input's last
// bytes, and decoding what came out and the input's bytes as ids.
#include <algorithm>
#include <cstdint>
#include <lmshrink/io/sentencepiece.hpp>
#include <string>
#include <vector>

#include "fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const lmshrink::SentencePieceTokenizer tok =
        lmshrink::parse_sentencepiece(reinterpret_cast<const char*>(data), size, "fuzz");
    FUZZ_CHECK(tok.vocab_size() > 0 && tok.unk_id() >= 0 && tok.unk_id() < tok.vocab_size());
    const std::size_t tail = std::min<std::size_t>(size, 40);
    const std::string texts[] = {"", "  a  b ", "\xE2\x96\x81x\xff\xc3", "<s>\t\n\xF0\x9F\x99\x82",
                                 std::string(reinterpret_cast<const char*>(data) + size - tail, tail)};
    for (const std::string& text : texts) {
      const std::vector<int> ids = tok.encode(text);
      for (int id : ids) FUZZ_CHECK(id >= 0 && id < tok.vocab_size());
      (void)tok.decode(ids);
    }
    std::vector<int> raw;
    for (std::size_t i = 0; i < tail; ++i) raw.push_back(data[size - tail + i] % tok.vocab_size());
    (void)tok.decode(raw);
  } catch (const lmshrink::error&) {
  }
  return 0;
}
