// Writes the fuzz targets' seed corpora with the library's own writers:
//   fuzz_make_corpus DIR   →  DIR/{safetensors,llama2c,tokenizer,pruner_state,hf_text,hf_directory,
//                                   tokenizer_files,half_floats,layer_metadata,sentencepiece,
//                                   hf_tokenizer}/*
// The bundled model and tokenizers, and tests/data's SentencePiece models and tokenizer.json
// files (sentencepiece/ and hf_tokenizer/ are left empty here), are added by the callers (ctest
// and cmake/quickstart.sh fuzz).
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <lmshrink/io/gpt2_tokenizer.hpp>
#include <lmshrink/io/hf_checkpoint.hpp>
#include <lmshrink/models/llama/llama2c.hpp>
#include <lmshrink/io/safetensors.hpp>
#include <lmshrink/io/tokenizer.hpp>
#include <string>
#include <vector>

#include "pruner_variants.hpp"
#include <lmshrink/models/hf.hpp>

namespace fs = std::filesystem;
using lmshrink::Index;

namespace {

lmshrink::RowMatrix<float> ramp(Index rows, Index cols, float scale) {
  lmshrink::RowMatrix<float> m(rows, cols);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = scale * float((i * 7) % 11) - 0.5f;
  return m;
}

void safetensors(const fs::path& dir) {
  {
    lmshrink::SafeTensors st;
    lmshrink::write_safetensors(st, (dir / "empty.safetensors").string());
  }
  {
    lmshrink::SafeTensors st;
    st.metadata["format"] = "pt";
    st.put("w", ramp(3, 2, 0.5f));
    st.put("v", lmshrink::Vector<double>::LinSpaced(4, -1, 1));
    st.put_int32("i", {0, 2, 5});
    const std::uint16_t halves[3] = {0x3c00, 0xc000, 0x0001};
    st.put("h", lmshrink::Dtype::f16, {3}, halves);
    st.put("b", lmshrink::Dtype::bf16, {1, 3}, halves);
    const std::uint8_t bytes[2] = {1, 0};
    st.put("u", lmshrink::Dtype::u8, {2}, bytes);
    st.put("z", lmshrink::Dtype::f32, {0, 5}, nullptr);
    lmshrink::write_safetensors(st, (dir / "dtypes.safetensors").string());
  }
  // Compressed layers: rank and rows, rank only, rows only with an element mask and a bias.
  for (int variant = 0; variant < 3; ++variant) {
    lmshrink::LowRankSparseLinear<float> layer(4, 3, variant == 2 ? 0 : 1, variant == 2);
    if (layer.rank() > 0) layer.set_low_rank(ramp(4, 1, 0.25f), ramp(1, 3, 0.5f));
    layer.S() = ramp(4, 3, 0.125f);
    lmshrink::RowMask rows = lmshrink::RowMask::Ones(4);
    rows[1] = 0;
    if (variant == 1) rows.setZero();
    layer.set_row_mask(rows);
    if (variant == 2) {
      lmshrink::ElementMask em = lmshrink::ElementMask::Ones(4, 3);
      em(0, 1) = 0;
      layer.set_element_mask(em);
      layer.bias().setConstant(0.5f);
    }
    layer.apply_masks();
    lmshrink::SafeTensors st;
    lmshrink::put_compressed_layer(st, "layers.0.wq", layer, "losparse");
    lmshrink::write_safetensors(st, (dir / ("layer" + std::to_string(variant) + ".safetensors")).string());
  }
}

/// A one-block Llama of dim 4 with every weight set (its legacy RoPE tables empty).
lmshrink::models::llama::DenseModel tiny_llama(bool shared) {
  lmshrink::models::llama::DenseModel m;
  auto& c = m.config;
  c.dim = 4; c.hidden_dim = 6; c.n_layers = 1; c.n_heads = 2;
  c.n_kv_heads = 1; c.vocab_size = 8; c.seq_len = 3; c.shared_classifier = shared;
  const Index d = c.dim, hd = c.hidden_dim, kv = c.kv_dim(), v = c.vocab_size;
  m.token_embedding = ramp(v, d, 0.1f);
  m.rms_att = {lmshrink::Vector<float>::Ones(d)};
  m.rms_ffn = {lmshrink::Vector<float>::Ones(d)};
  m.wq = {ramp(d, d, 0.2f)};
  m.wk = {ramp(kv, d, 0.2f)};
  m.wv = {ramp(kv, d, 0.3f)};
  m.wo = {ramp(d, d, 0.1f)};
  m.w1 = {ramp(hd, d, 0.1f)};
  m.w2 = {ramp(d, hd, 0.1f)};
  m.w3 = {ramp(hd, d, 0.2f)};
  m.rms_final = lmshrink::Vector<float>::Ones(d);
  if (!shared) m.wcls = ramp(v, d, 0.05f);
  return m;
}

void llama2c(const fs::path& dir) {
  for (int shared = 0; shared < 2; ++shared) {
    lmshrink::models::llama::DenseModel m = tiny_llama(shared == 1);
    m.freq_cis_real = ramp(m.config.seq_len, m.config.head_size() / 2, 0.1f);
    m.freq_cis_imag = ramp(m.config.seq_len, m.config.head_size() / 2, 0.1f);
    lmshrink::models::llama::write_llama2c(m, (dir / (shared ? "tiny_shared.bin" : "tiny_wcls.bin")).string());
  }
}

void tokenizer(const fs::path& dir) {
  std::vector<std::string> pieces = {"<unk>", "<s>", "</s>"};
  std::vector<float> scores = {0, 0, 0};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    pieces.push_back(name);
    scores.push_back(0);
  }
  for (const char* p : {" ", "a", "b", "ab", " a", "ba", "\xc3\xa9"}) {
    pieces.push_back(p);
    scores.push_back(-float(pieces.size()));
  }
  lmshrink::write_tokenizer(lmshrink::Tokenizer(pieces, scores), (dir / "small.bin").string());
}

void write_text(const fs::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// Selector byte 0: config.json files as lmshrink writes them and as Hugging Face ships them;
// selector 1: a byte-level vocabulary with two merges.
void hf_text(const fs::path& dir) {
  lmshrink::models::llama::Config llama;
  llama.dim = 8; llama.hidden_dim = 12; llama.n_layers = 2; llama.n_heads = 2;
  llama.n_kv_heads = 1; llama.vocab_size = 16; llama.seq_len = 8; llama.shared_classifier = false;
  lmshrink::models::gpt2::Config gpt2;
  gpt2.vocab_size = 20, gpt2.dim = 8, gpt2.hidden_dim = 32, gpt2.n_layers = 2, gpt2.n_heads = 2,
  gpt2.n_positions = 6;
  write_text(dir / "llama_config", std::string(1, '\0') + lmshrink::models::hf_config_json(lmshrink::models::llama::hf_config_of(llama)));
  write_text(dir / "gpt2_config", std::string(1, '\0') + lmshrink::models::hf_config_json(lmshrink::models::gpt2::hf_config_of(gpt2)));
  write_text(dir / "gpt2_hub_config", std::string(1, '\0') + R"({
  "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
  "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256, "initializer_range": 0.02,
  "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": 1024, "n_embd": 768, "n_head": 12,
  "n_layer": 12, "n_positions": 1024, "resid_pdrop": 0.1, "summary_activation": null,
  "summary_first_dropout": 0.1, "summary_proj_to_labels": true, "summary_type": "cls_index",
  "summary_use_proj": true, "task_specific_params": {"text-generation": {"do_sample": true,
  "max_length": 50}}, "vocab_size": 50257})");
  std::string vocab = "{";
  for (int b = 0; b < 256; ++b) {
    const std::uint32_t cp = lmshrink::detail::gpt2_byte_char(static_cast<unsigned char>(b));
    std::string c;
    if (cp < 0x80) {
      c += char(cp);
    } else {
      c += char(0xC0 | (cp >> 6));
      c += char(0x80 | (cp & 0x3F));
    }
    std::string key;
    lmshrink::detail::json_escape(key, c);
    vocab += key + ": " + std::to_string(b) + ", ";
  }
  vocab += "\"ab\": 256, \"\u0120ab\": 257, \"<|endoftext|>\": 258}";
  write_text(dir / "gpt2_vocab", std::string(1, '\1') + vocab + std::string(1, '\0') +
                                     "#version: 0.2\na b\n\u0120 ab\n");
}

/// Length-prefixed parts, as fuzz_files.hpp's split_parts reads them.
std::string parts(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& p : items) {
    for (int i = 0; i < 4; ++i) out += char((p.size() >> (8 * i)) & 0xff);
    out += p;
  }
  return out;
}

std::string file_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}


// Directories as the writers make them (one file, or an index and shards), packed as
// config.json then (name, contents) pairs.
void hf_directories(const fs::path& dir) {
  lmshrink::models::gpt2::DenseModel g;
  g.config.vocab_size = 8, g.config.dim = 4, g.config.hidden_dim = 8, g.config.n_layers = 1, g.config.n_heads = 2,
  g.config.n_positions = 3;
  g.wte = ramp(8, 4, 0.1f);
  g.wpe = ramp(3, 4, 0.1f);
  g.ln1_w = g.ln2_w = {lmshrink::Vector<float>::Ones(4)};
  g.ln1_b = g.ln2_b = g.proj_b = g.fc_proj_b = {lmshrink::Vector<float>::Zero(4)};
  g.attn_w = {ramp(12, 4, 0.1f)};
  g.attn_b = {lmshrink::Vector<float>::Zero(12)};
  g.proj_w = {ramp(4, 4, 0.1f)};
  g.fc_w = {ramp(8, 4, 0.1f)};
  g.fc_b = {lmshrink::Vector<float>::Zero(8)};
  g.fc_proj_w = {ramp(4, 8, 0.1f)};
  g.lnf_w = lmshrink::Vector<float>::Ones(4);
  g.lnf_b = lmshrink::Vector<float>::Zero(4);
  const fs::path tmp = dir / "tmp_model";
  const auto pack = [&](const std::string& name) {
    std::vector<std::string> items = {file_bytes(tmp / "config.json")};
    for (const auto& e : fs::directory_iterator(tmp))
      if (e.path().filename() != "config.json") {
        items.push_back(e.path().filename().string());
        items.push_back(file_bytes(e.path()));
      }
    write_text(dir / name, parts(items));
  };
  for (int shared = 0; shared < 2; ++shared) {
    lmshrink::models::llama::write_hf(tiny_llama(shared == 1), tmp.string(), lmshrink::Dtype::f32);
    pack(shared ? "llama_shared" : "llama_wcls");
  }
  lmshrink::models::llama::write_hf(tiny_llama(false), tmp.string(), lmshrink::Dtype::bf16, 200);
  pack("llama_bf16_shards");
  lmshrink::models::gpt2::write_hf(g, tmp.string(), lmshrink::Dtype::f16);
  pack("gpt2_f16");
  fs::remove_all(tmp);
}

// tokenizer_files: (vocab.json, merges.txt) and then a llama2.c tokenizer; half_floats: a dtype
// selector and payload; layer_metadata: a header line and payload bytes.
void more_corpora(const fs::path& root) {
  const std::string vocab_input = file_bytes(root / "hf_text" / "gpt2_vocab").substr(1);
  const std::size_t nul = vocab_input.find('\0');
  const std::string tok = file_bytes(root / "tokenizer" / "small.bin");
  write_text(root / "tokenizer_files" / "gpt2_and_llama",
             parts({vocab_input.substr(0, nul), vocab_input.substr(nul + 1), tok}));
  write_text(root / "tokenizer_files" / "llama_only", parts({tok}));
  const std::uint16_t halves[6] = {0x3c00, 0xc000, 0x0001, 0x7bff, 0x8400, 0x3555};
  for (int d = 0; d < 4; ++d) {
    std::string b(1, char(d));
    const float floats[3] = {1.5f, -65504.0f, 1e-8f};
    const double doubles[2] = {3.0e38, -2.5};
    if (d < 2) b.append(reinterpret_cast<const char*>(halves), sizeof halves);
    else if (d == 2) b.append(reinterpret_cast<const char*>(floats), sizeof floats);
    else b.append(reinterpret_cast<const char*>(doubles), sizeof doubles);
    write_text(root / "half_floats" / ("dtype" + std::to_string(d)), b);
  }
  write_text(root / "layer_metadata" / "rank_and_rows", "2 6 5 3 0 1\n" + std::string("\x00\x00\x80\x3f\x01\x00\x00\x00", 8));
  write_text(root / "layer_metadata" / "rows_with_mask", "0 4 4 2 1 0\n" + std::string("\x02\x00\x00\x00\x00\x00\x00\x40", 8));
  write_text(root / "layer_metadata" / "rank_only", "1 3 3 0 0 0\n" + std::string("\x00\x00\x00\x3f", 4));
}

void pruner_states(const fs::path& dir) {
  for (int variant = 0; variant < fuzz::kPrunerVariants; ++variant) {
    for (int steps : {0, 5}) {
      fuzz::PrunerRig rig(variant);
      for (int g = 0; g < steps; ++g) rig.pruner.after_optimizer_step(g);
      const fs::path tmp = dir / "state.tmp";
      rig.pruner.save(tmp.string());
      std::ifstream in(tmp, std::ios::binary);
      std::vector<char> bytes((std::istreambuf_iterator<char>(in)), {});
      in.close();
      fs::remove(tmp);
      bytes.insert(bytes.begin(), char(variant));
      std::ofstream out(dir / ("variant" + std::to_string(variant) + "_step" + std::to_string(steps)),
                        std::ios::binary);
      out.write(bytes.data(), std::streamsize(bytes.size()));
    }
  }
}

/// The pruner-state regressions (tests/fuzz/regressions/pruner_state/): states that once loaded
/// and must not. Each is a real save after three steps with one field changed, behind the byte
/// that picks the pruner's options (pruner_variants.hpp).
void pruner_state_regressions(const fs::path& dir) {
  const auto write = [&](const char* name, int variant, const std::function<void(lmshrink::SafeTensors&)>& edit) {
    fuzz::PrunerRig rig(variant);
    for (int g = 0; g < 3; ++g) rig.pruner.after_optimizer_step(g);
    const fs::path tmp = dir / "state.tmp";
    rig.pruner.save(tmp.string());
    lmshrink::SafeTensors st = lmshrink::read_safetensors(tmp.string());
    edit(st);
    lmshrink::write_safetensors(st, tmp.string());
    std::ifstream in(tmp, std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), {});
    in.close();
    fs::remove(tmp);
    bytes.insert(bytes.begin(), char(variant));
    std::ofstream out(dir / name, std::ios::binary);
    out.write(bytes.data(), std::streamsize(bytes.size()));
  };
  const auto step = [](const char* value) {
    return [value](lmshrink::SafeTensors& st) { st.metadata["lmshrink.step"] = value; };
  };
  write("step_int64_max", 0, step("9223372036854775807"));  // the next step overflowed
  write("step_minus_1000", 3, step("-1000"));               // re-opened add()
  write("step_2p62_plus_1", 1, step("4611686018427387905"));
  write("step_minus_1_after_steps", 6, step("-1"));         // importance without a step
  write("negative_taylor_importance", 0, [](lmshrink::SafeTensors& st) {
    const float minus = -1.0f;
    std::memcpy(st.tensors.at("layers.0.wq.ema").bytes.data(), &minus, sizeof minus);
  });
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--pruner-regressions") {
    try {
      fs::create_directories(argv[2]);
      pruner_state_regressions(argv[2]);
      std::printf("wrote the pruner-state regressions to %s\n", argv[2]);
      return 0;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s\n", e.what());
      return 1;
    }
  }
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_make_corpus DIR | --pruner-regressions DIR\n");
    return 2;
  }
  try {
    const fs::path root = argv[1];
    for (const char* t : {"safetensors", "llama2c", "tokenizer", "pruner_state", "hf_text", "hf_directory",
                          "tokenizer_files", "half_floats", "layer_metadata", "sentencepiece",
                          "hf_tokenizer"})
      fs::create_directories(root / t);
    safetensors(root / "safetensors");
    llama2c(root / "llama2c");
    tokenizer(root / "tokenizer");
    pruner_states(root / "pruner_state");
    hf_text(root / "hf_text");
    hf_directories(root / "hf_directory");
    more_corpora(root);
    std::printf("wrote the seed corpora to %s\n", argv[1]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
