// Layer truncation: strategies, invalid selections, in-memory blocks, the real llama2.c
// checkpoint truncated, written and loaded again, and tensor-name remapping.
#include <catch2/catch.hpp>
#include <cstdio>
#include <lmshrink/truncation.hpp>
#include <string>
#include <lmshrink/models/llama/llama2c.hpp>

using lmshrink::LayerSelection;

TEST_CASE("selection strategies", "[truncation]") {
  REQUIRE(lmshrink::first_layers(12, 3) == LayerSelection{0, 1, 2});
  REQUIRE(lmshrink::last_layers(12, 3) == LayerSelection{9, 10, 11});
  REQUIRE(lmshrink::every_other_layer(12) == LayerSelection{0, 2, 4, 6, 8, 10});
  REQUIRE(lmshrink::every_other_layer(5) == LayerSelection{0, 2, 4});
  REQUIRE(lmshrink::distilgpt2_layers() == LayerSelection{0, 2, 4, 7, 9, 11});
  REQUIRE(lmshrink::distilgpt2_layers(12) == LayerSelection{0, 2, 4, 7, 9, 11});
  REQUIRE(lmshrink::distilgpt2_layers(24) == LayerSelection{0, 2, 4, 6, 8, 10, 13, 15, 17, 19, 21, 23});
  REQUIRE(lmshrink::distilgpt2_layers(6) == LayerSelection{0, 3, 5});  // 2.5 rounds away from 0
  REQUIRE(lmshrink::distilgpt2_layers(3) == LayerSelection{0});
  for (int n = 2; n <= 48; ++n) REQUIRE_NOTHROW(lmshrink::validate_selection(lmshrink::distilgpt2_layers(n), n));
  REQUIRE(lmshrink::first_layers(1, 1) == LayerSelection{0});
  REQUIRE_THROWS_WITH(lmshrink::first_layers(12, 0), Catch::Contains("k must be in [1, 12], got 0"));
  REQUIRE_THROWS_WITH(lmshrink::last_layers(4, 5), Catch::Contains("k must be in [1, 4], got 5"));
  REQUIRE_THROWS_AS(lmshrink::every_other_layer(0), lmshrink::value_error);
}

TEST_CASE("invalid selections are errors naming what was wrong", "[truncation]") {
  using lmshrink::validate_selection;
  REQUIRE_NOTHROW(validate_selection({0, 2, 4}, 6));
  REQUIRE_THROWS_WITH(validate_selection({}, 6), Catch::Contains("the selection is empty"));
  REQUIRE_THROWS_WITH(validate_selection({0, 6}, 6),
                      Catch::Contains("block 6 (entry 1) is out of range [0, 6)"));
  REQUIRE_THROWS_WITH(validate_selection({-1}, 6), Catch::Contains("block -1 (entry 0)"));
  REQUIRE_THROWS_WITH(validate_selection({1, 3, 1}, 6),
                      Catch::Contains("block 1 is selected twice (entries 0 and 2)"));
  REQUIRE_THROWS_WITH(validate_selection({2, 1}, 6),
                      Catch::Contains("ascending order, but entry 1 (1) follows 2"));
  REQUIRE_NOTHROW(validate_selection({2, 1}, 6, /*require_sorted=*/false));
  REQUIRE_THROWS_AS(validate_selection({2, 2}, 6, false), lmshrink::value_error);
  REQUIRE_THROWS_AS(validate_selection({0}, 0), lmshrink::value_error);
}

TEST_CASE("blocks of an in-memory model are kept in selection order", "[truncation]") {
  const std::vector<std::string> blocks = {"b0", "b1", "b2", "b3", "b4"};
  REQUIRE(lmshrink::keep_layers(blocks, {0, 2, 4}) == std::vector<std::string>{"b0", "b2", "b4"});
  REQUIRE(lmshrink::keep_layers(blocks, {3, 1}, false) == std::vector<std::string>{"b3", "b1"});
  REQUIRE_THROWS_AS(lmshrink::keep_layers(blocks, {5}), lmshrink::value_error);
}

TEST_CASE("the real stories260K truncated to blocks {0, 2, 4} is a valid smaller checkpoint",
          "[truncation]") {
  const auto teacher = lmshrink::models::llama::read_llama2c(LMSHRINK_DATA_DIR "/stories260K.bin");
  REQUIRE(teacher.config.n_layers == 5);
  const auto student = lmshrink::models::llama::truncate_layers(teacher, {0, 2, 4});
  REQUIRE(student.config.n_layers == 3);

  // Parameters per block, from the config: two norms, four attention and three FFN matrices.
  const auto& c = teacher.config;
  const std::int64_t per_block = 2LL * c.dim + 2LL * c.dim * c.dim + 2LL * c.kv_dim() * c.dim +
                                 3LL * c.hidden_dim * c.dim;
  REQUIRE(teacher.parameter_count() - student.parameter_count() == 2 * per_block);

  const std::string path = LMSHRINK_TEST_TMP "/stories260K_blocks_0_2_4.bin";
  lmshrink::models::llama::write_llama2c(student, path);
  const auto loaded = lmshrink::models::llama::read_llama2c(path);
  std::remove(path.c_str());
  REQUIRE(loaded.config.n_layers == 3);
  REQUIRE(loaded.parameter_count() == student.parameter_count());
  REQUIRE(loaded.token_embedding == teacher.token_embedding);
  REQUIRE(loaded.rms_final == teacher.rms_final);
  const int kept[] = {0, 2, 4};
  for (int i = 0; i < 3; ++i) {
    const auto t = std::size_t(kept[i]), s = std::size_t(i);
    REQUIRE(loaded.wq[s] == teacher.wq[t]);
    REQUIRE(loaded.wk[s] == teacher.wk[t]);
    REQUIRE(loaded.wv[s] == teacher.wv[t]);
    REQUIRE(loaded.wo[s] == teacher.wo[t]);
    REQUIRE(loaded.w1[s] == teacher.w1[t]);
    REQUIRE(loaded.w2[s] == teacher.w2[t]);
    REQUIRE(loaded.w3[s] == teacher.w3[t]);
    REQUIRE(loaded.rms_att[s] == teacher.rms_att[t]);
    REQUIRE(loaded.rms_ffn[s] == teacher.rms_ffn[t]);
  }
  REQUIRE_THROWS_AS(lmshrink::models::llama::truncate_layers(teacher, {0, 5}), lmshrink::value_error);
}

TEST_CASE("tensor names are remapped for GPT-2 and Llama naming", "[truncation]") {
  const std::vector<std::string> gpt2 = {
      "transformer.wte.weight",         "transformer.wpe.weight",
      "transformer.h.0.ln_1.weight",    "transformer.h.1.attn.c_attn.weight",
      "transformer.h.2.mlp.c_fc.bias",  "transformer.h.7.attn.c_proj.weight",
      "transformer.h.10.ln_2.bias",     "transformer.h.11.mlp.c_proj.weight",
      "transformer.ln_f.weight",        "lm_head.weight"};
  const auto m = lmshrink::truncate_tensor_names(gpt2, lmshrink::distilgpt2_layers(), 12);
  const std::vector<std::pair<std::string, std::string>> want = {
      {"transformer.wte.weight", "transformer.wte.weight"},
      {"transformer.wpe.weight", "transformer.wpe.weight"},
      {"transformer.h.0.ln_1.weight", "transformer.h.0.ln_1.weight"},
      {"transformer.h.2.mlp.c_fc.bias", "transformer.h.1.mlp.c_fc.bias"},
      {"transformer.h.7.attn.c_proj.weight", "transformer.h.3.attn.c_proj.weight"},
      {"transformer.h.11.mlp.c_proj.weight", "transformer.h.5.mlp.c_proj.weight"},
      {"transformer.ln_f.weight", "transformer.ln_f.weight"},
      {"lm_head.weight", "lm_head.weight"}};
  REQUIRE(m == want);

  const std::vector<std::string> llama = {"model.embed_tokens.weight",
                                          "model.layers.3.self_attn.q_proj.weight",
                                          "model.layers.10.mlp.down_proj.weight",
                                          "layers.10.attention.wq", "model.norm.weight",
                                          "graph.1.weights", "heads.2.x"};
  const auto l = lmshrink::truncate_tensor_names(llama, {3, 10}, 12);
  REQUIRE(l.size() == 7);
  REQUIRE(l[1].second == "model.layers.0.self_attn.q_proj.weight");
  REQUIRE(l[2].second == "model.layers.1.mlp.down_proj.weight");
  REQUIRE(l[3].second == "layers.1.attention.wq");
  REQUIRE(l[4].second == "model.norm.weight");
  REQUIRE(l[5].second == "graph.1.weights");  // not a block: "h." must start a path component
  REQUIRE(l[6].second == "heads.2.x");

  REQUIRE_THROWS_WITH(lmshrink::truncate_tensor_names({"h.12.attn.weight"}, {0}, 12),
                      Catch::Contains("names block 12 but the model has 12 blocks"));
}
