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
#include <lmshrink/models/hf.hpp>

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
    const lmshrink::models::HfCheckpoint c = lmshrink::models::read_hf_directory(dir);
    if (c.config.model_type == "llama") {
      const lmshrink::models::llama::DenseModel m = lmshrink::models::llama::from_hf(c.config, c.tensors, dir);
      const lmshrink::models::llama::DenseModel back = lmshrink::models::llama::from_hf(c.config, lmshrink::models::llama::to_hf(m), "again");
      FUZZ_CHECK(back.token_embedding == m.token_embedding && back.wq == m.wq && back.w2 == m.w2 &&
                 back.rms_final == m.rms_final && back.wcls == m.wcls);
    } else {
      const lmshrink::models::gpt2::DenseModel m = lmshrink::models::gpt2::from_hf(c.config, c.tensors, dir);
      const lmshrink::models::gpt2::DenseModel back = lmshrink::models::gpt2::from_hf(c.config, lmshrink::models::gpt2::to_hf(m), "again");
      FUZZ_CHECK(back.wte == m.wte && back.attn_w == m.attn_w && back.fc_proj_b == m.fc_proj_b);
    }
  } catch (const lmshrink::error&) {
  }
  return 0;
}
