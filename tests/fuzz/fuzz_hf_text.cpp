// Fuzz target: the text files of Hugging Face checkpoints. The first byte selects the parser:
//  even: config.json (parse_hf_config), then its re-written form must parse to the same config;
//  odd:  a GPT-2 vocabulary and merges, separated by the first NUL byte (parse_gpt2_tokenizer),
//        then the input's bytes must encode and decode back exactly.
#include <algorithm>
#include <cstdint>
#include <lmshrink/io/gpt2_tokenizer.hpp>
#include <lmshrink/io/hf_checkpoint.hpp>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include <lmshrink/models/hf.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    if (data[0] % 2 == 0) {
      const lmshrink::HfConfig c = lmshrink::models::parse_hf_config(text, "fuzz");
      FUZZ_CHECK(c.vocab_size > 0 && c.hidden_size > 0 && c.num_layers > 0 && c.num_heads > 0);
      FUZZ_CHECK(c.hidden_size % c.num_heads == 0 && c.num_heads % c.num_kv_heads == 0);
      FUZZ_CHECK(c.model_type == "llama" || c.model_type == "gpt2");
      const lmshrink::HfConfig back = lmshrink::models::parse_hf_config(lmshrink::models::hf_config_json(c), "again");
      FUZZ_CHECK(back.model_type == c.model_type && back.vocab_size == c.vocab_size &&
                 back.hidden_size == c.hidden_size && back.intermediate_size == c.intermediate_size &&
                 back.num_layers == c.num_layers && back.num_heads == c.num_heads &&
                 back.num_kv_heads == c.num_kv_heads && back.max_positions == c.max_positions &&
                 back.norm_eps == c.norm_eps && back.tie_word_embeddings == c.tie_word_embeddings);
    } else {
      const std::size_t nul = std::min(text.find('\0'), text.size());
      const auto tok = lmshrink::parse_gpt2_tokenizer(text.substr(0, nul), "vocab",
                                                      text.substr(std::min(nul + 1, text.size())), "merges");
      FUZZ_CHECK(tok.vocab_size() >= 256);
      const std::string_view sample = text.substr(0, 64);
      const auto ids = tok.encode(sample);
      for (int id : ids) FUZZ_CHECK(id >= 0 && id < tok.vocab_size());
      FUZZ_CHECK(tok.decode(ids) == sample);
    }
  } catch (const lmshrink::error&) {
  }
  return 0;
}
