// Fuzz target: tokenizers read from files, as the main job reads them. Parts (fuzz_files.hpp):
// a GPT-2 vocab.json and merges.txt (read_gpt2_tokenizer), and a llama2.c tokenizer.bin
// (read_tokenizer, with and without an expected vocabulary size). What reads must encode and
// decode bytes back exactly (GPT-2) or decode every id (llama2.c).
#include <cstdint>
#include <lmshrink/io/gpt2_tokenizer.hpp>
#include <lmshrink/io/tokenizer.hpp>
#include <algorithm>
#include <string>
#include <vector>

#include "fuzz_check.hpp"
#include "fuzz_files.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto parts = fuzz::split_parts(data, size, 3);
  const std::string dir = fuzz::scratch_dir();
  if (parts.size() >= 2) {
    fuzz::write_file(dir + "/vocab.json", parts[0]);
    fuzz::write_file(dir + "/merges.txt", parts[1]);
    try {
      const auto tok = lmshrink::read_gpt2_tokenizer(dir + "/vocab.json", dir + "/merges.txt");
      FUZZ_CHECK(tok.vocab_size() >= 256 && tok.merge_count() <= std::size_t(tok.vocab_size()));
      const std::string_view sample = parts[1].substr(0, 256);
      const auto ids = tok.encode(sample);
      for (int id : ids) FUZZ_CHECK(id >= 0 && id < tok.vocab_size());
      FUZZ_CHECK(tok.decode(ids) == sample);
    } catch (const lmshrink::error&) {
    }
  }
  if (parts.size() >= 3 || parts.size() == 1) {
    fuzz::write_file(dir + "/tokenizer.bin", parts.back());
    for (int expected : {0, 512}) {
      try {
        const auto tok = lmshrink::read_tokenizer(dir + "/tokenizer.bin", expected);
        FUZZ_CHECK(tok.vocab_size() > 0 && (expected == 0 || tok.vocab_size() == expected));
        std::vector<int> ids;
        for (int id = 0; id < std::min(tok.vocab_size(), 64); ++id) ids.push_back(id);
        (void)tok.decode(ids);
      } catch (const lmshrink::error&) {
      }
    }
  }
  return 0;
}
