// Fuzz target: a Hugging Face checkpoint directory as one input. Parts (fuzz_files.hpp):
// config.json, then up to four (file name, contents) pairs: model.safetensors, or an index and
// its shards. A name that is not a plain file name becomes "f<k>". What reads is converted to a
// model and back to tensors, which must read to the same model.
#include <cstdint>
#include <filesystem>
#include <lmshrink/io/hf_checkpoint.hpp>
#include <string>

#include "fuzz_check.hpp"
#include "fuzz_files.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto parts = fuzz::split_parts(data, size, 9);
  if (parts.empty()) return 0;
  const std::string dir = fuzz::scratch_dir() + "/model";
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  std::filesystem::create_directories(dir, ec);
  fuzz::write_file(dir + "/config.json", parts[0]);
  for (std::size_t i = 1; i + 1 < parts.size(); i += 2) {
    std::string name(parts[i]);
    if (name.empty() || name.size() > 64 || name == "." || name == ".." || name == "config.json" ||
        name.find_first_of(std::string("/\\\0", 3)) != std::string::npos)
      name = "f" + std::to_string(i);
    fuzz::write_file(dir + "/" + name, parts[i + 1]);
  }
  try {
    const lmshrink::HfCheckpoint c = lmshrink::read_hf_directory(dir);
    if (c.config.model_type == "llama") {
      const lmshrink::Llama2cModel m = lmshrink::llama_from_hf(c.config, c.tensors, dir);
      const lmshrink::Llama2cModel back = lmshrink::llama_from_hf(c.config, lmshrink::llama_to_hf(m), "again");
      FUZZ_CHECK(back.token_embedding == m.token_embedding && back.wq == m.wq && back.w2 == m.w2 &&
                 back.rms_final == m.rms_final && back.wcls == m.wcls);
    } else {
      const lmshrink::Gpt2Model m = lmshrink::gpt2_from_hf(c.config, c.tensors, dir);
      const lmshrink::Gpt2Model back = lmshrink::gpt2_from_hf(c.config, lmshrink::gpt2_to_hf(m), "again");
      FUZZ_CHECK(back.wte == m.wte && back.attn_w == m.attn_w && back.fc_proj_b == m.fc_proj_b);
    }
  } catch (const lmshrink::error&) {
  }
  return 0;
}
