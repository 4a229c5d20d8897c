// Converts checkpoints between llama2.c files and Hugging Face directories, and between weight
// dtypes: what a user runs to bring a model into lmshrink's jobs, or to take one out.
//
//   lmshrink_convert IN OUT [--dtype f32|f16|bf16] [--shard-mb N]
//
// IN is a llama2.c file (.bin) or a Hugging Face directory (config.json + model.safetensors or
// shards; "llama" or "gpt2"). OUT is a directory (written in Hugging Face layout) or, for a
// Llama model, a file name ending in .bin (llama2.c). --shard-mb splits the weights into shards
// of at most N MiB with model.safetensors.index.json.
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <lmshrink/io/hf_checkpoint.hpp>
#include <lmshrink/io/llama2c.hpp>
#include <string>

namespace {

int usage(const char* argv0) {
  std::fprintf(stderr, "usage: %s IN OUT [--dtype f32|f16|bf16] [--shard-mb N]\n", argv0);
  return 2;
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string in, out;
  lmshrink::Dtype dtype = lmshrink::Dtype::f32;
  long long shard_mb = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--dtype" && i + 1 < argc) {
      const std::string d = argv[++i];
      if (d == "f32") dtype = lmshrink::Dtype::f32;
      else if (d == "f16") dtype = lmshrink::Dtype::f16;
      else if (d == "bf16") dtype = lmshrink::Dtype::bf16;
      else {
        std::fprintf(stderr, "[lmshrink.value] lmshrink_convert: --dtype '%s'; f32, f16 or bf16 was expected\n", d.c_str());
        return 2;
      }
    } else if (a == "--shard-mb" && i + 1 < argc) {
      char* end = nullptr;
      shard_mb = std::strtoll(argv[++i], &end, 10);
      if (*end != '\0' || shard_mb < 1 || shard_mb > (1LL << 20)) {
        std::fprintf(stderr, "[lmshrink.value] lmshrink_convert: --shard-mb '%s'; an integer in [1, 1048576] was expected\n", argv[i]);
        return 2;
      }
    } else if (!a.empty() && a[0] != '-' && in.empty()) {
      in = a;
    } else if (!a.empty() && a[0] != '-' && out.empty()) {
      out = a;
    } else {
      return usage(argv[0]);
    }
  }
  if (in.empty() || out.empty()) return usage(argv[0]);
  try {
    const bool to_llama2c = ends_with(out, ".bin");
    const std::int64_t shard_bytes = shard_mb << 20;
    if (!std::filesystem::is_directory(in)) {  // a llama2.c file
      const lmshrink::Llama2cModel m = lmshrink::read_llama2c(in);
      if (to_llama2c) lmshrink::write_llama2c(m, out);
      else lmshrink::write_hf_llama(m, out, dtype, shard_bytes);
      std::printf("%s (llama2.c, %lld parameters) -> %s\n", in.c_str(),
                  static_cast<long long>(m.parameter_count()), out.c_str());
      return 0;
    }
    const lmshrink::HfConfig config = lmshrink::read_hf_config(in + "/config.json");
    if (config.model_type == "gpt2") {
      if (to_llama2c)
        lmshrink::detail::fail<lmshrink::value_error>("lmshrink_convert", "'", in, "' is a GPT-2 model; "
                                                      "llama2.c files hold Llama models only");
      const lmshrink::Gpt2Model m = lmshrink::read_hf_gpt2(in);
      lmshrink::write_hf_gpt2(m, out, dtype, shard_bytes);
      std::printf("%s (gpt2, %lld parameters) -> %s\n", in.c_str(), static_cast<long long>(m.parameter_count()),
                  out.c_str());
    } else {
      const lmshrink::Llama2cModel m = lmshrink::read_hf_llama(in);
      if (to_llama2c) lmshrink::write_llama2c(m, out);
      else lmshrink::write_hf_llama(m, out, dtype, shard_bytes);
      std::printf("%s (llama, %lld parameters) -> %s\n", in.c_str(), static_cast<long long>(m.parameter_count()),
                  out.c_str());
    }
  } catch (const lmshrink::error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
