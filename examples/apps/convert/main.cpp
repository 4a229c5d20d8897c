// Converts checkpoints between llama2.c files and Hugging Face directories, and between weight
// dtypes: what a user runs to bring a model into lmshrink's jobs, or to take one out.
//
//   lmshrink_convert IN OUT [--dtype f32|f16|bf16] [--shard-mb N]
//
// IN is a llama2.c file (.bin) or a Hugging Face directory (config.json + model.safetensors or
// shards; "llama", "qwen2" or "gpt2"). OUT is a directory (written in Hugging Face layout) or, for a
// Llama model, a file name ending in .bin (llama2.c). --shard-mb splits the weights into shards
// of at most N MiB with model.safetensors.index.json.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "models/convert.hpp"

int main(int argc, char** argv) {
  std::string in, out, dtype = "f32";
  long long shard_mb = 0;
  const auto usage = [&] {
    std::fprintf(stderr, "usage: %s IN OUT [--dtype f32|f16|bf16] [--shard-mb N]\n", argv[0]);
    return 2;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--dtype" && i + 1 < argc) {
      dtype = argv[++i];
      if (dtype != "f32" && dtype != "f16" && dtype != "bf16") {
        std::fprintf(stderr, "[lmshrink.value] lmshrink_convert: --dtype '%s'; f32, f16 or bf16 was expected\n", dtype.c_str());
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
      return usage();
    }
  }
  if (in.empty() || out.empty()) return usage();
  try {
    const examples::Converted c = examples::convert_checkpoint(in, out, dtype, std::int64_t(shard_mb) << 20);
    std::string along;
    for (const std::string& f : c.companion_files) along += (along.empty() ? " (with " : ", ") + f;
    std::printf("%s (%s, %lld parameters) -> %s%s\n", in.c_str(), c.from_format.c_str(),
                static_cast<long long>(c.parameters), out.c_str(), along.empty() ? "" : (along + ")").c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
