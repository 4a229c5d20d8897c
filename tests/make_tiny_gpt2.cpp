// Writes a small random GPT-2 as a Hugging Face directory, with GPT-2's tokenizer files beside
// it (vocab.json, merges.txt): what the main job's GPT-2 tests run on, since no pretrained GPT-2
// can be downloaded here. GPT-2's vocabulary and 12 blocks (so DistilGPT-2's block choice
// applies), 64 dimensions, 2 heads, 32 positions; weights drawn as GPT-2 initialises them
// (normal, sd 0.02; norms 1 and 0).
//
//   make_tiny_gpt2 OUT_DIR DATA_DIR
#include <cstdio>
#include <filesystem>
#include <lmshrink/detail/random.hpp>
#include <lmshrink/io/hf_checkpoint.hpp>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: make_tiny_gpt2 OUT_DIR DATA_DIR\n");
    return 2;
  }
  try {
    lmshrink::Gpt2Model m;
    auto& c = m.config;
    c.vocab_size = 50257, c.dim = 64, c.hidden_dim = 256, c.n_layers = 12, c.n_heads = 2, c.n_positions = 32;
    lmshrink::detail::SplitMix64 rng(2019);
    const auto normal = [&](lmshrink::Index r, lmshrink::Index k) {
      lmshrink::RowMatrix<float> x(r, k);
      for (lmshrink::Index i = 0; i < x.size(); ++i) x.data()[i] = float(0.02 * rng.normal());
      return x;
    };
    const auto ones = [](int n) { return lmshrink::Vector<float>::Ones(n); };
    const auto zeros = [](int n) { return lmshrink::Vector<float>::Zero(n); };
    m.wte = normal(c.vocab_size, c.dim);
    m.wpe = normal(c.n_positions, c.dim);
    for (int l = 0; l < c.n_layers; ++l) {
      m.ln1_w.push_back(ones(c.dim));
      m.ln1_b.push_back(zeros(c.dim));
      m.attn_w.push_back(normal(3 * c.dim, c.dim));
      m.attn_b.push_back(zeros(3 * c.dim));
      m.proj_w.push_back(normal(c.dim, c.dim));
      m.proj_b.push_back(zeros(c.dim));
      m.ln2_w.push_back(ones(c.dim));
      m.ln2_b.push_back(zeros(c.dim));
      m.fc_w.push_back(normal(c.hidden_dim, c.dim));
      m.fc_b.push_back(zeros(c.hidden_dim));
      m.fc_proj_w.push_back(normal(c.dim, c.hidden_dim));
      m.fc_proj_b.push_back(zeros(c.dim));
    }
    m.lnf_w = ones(c.dim);
    m.lnf_b = zeros(c.dim);
    const std::string out = argv[1], data = argv[2];
    lmshrink::write_hf_gpt2(m, out);
    namespace fs = std::filesystem;
    fs::copy_file(data + "/gpt2_encoder.json", out + "/vocab.json", fs::copy_options::overwrite_existing);
    fs::copy_file(data + "/gpt2_vocab.bpe", out + "/merges.txt", fs::copy_options::overwrite_existing);
    std::printf("wrote %s (gpt2, %lld parameters)\n", out.c_str(), static_cast<long long>(m.parameter_count()));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
