// Two tools of the truncation/distillation study on real data:
//  1. Truncates the bundled stories260K (5 blocks) to blocks {0, 2, 4} and writes it as an
//     ordinary, smaller llama2.c checkpoint, which is read back to check it.
//  2. Runs the data cleaner over the 1000 held-out TinyStories plus planted near-duplicates and
//     markup, and prints what it dropped and why.
//
//   lmshrink_truncate_clean [--model M] [--text T] [--keep 0,2,4] [--out DIR]

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <lmshrink/lmshrink.hpp>

#include "cli/output_dir.hpp"
#include <sstream>
#include <string>
#include <vector>
#include <lmshrink/models/llama/llama2c.hpp>

namespace {

int usage(const char* argv0) {
  std::fprintf(stderr, "usage: %s [--model M] [--text T] [--keep 0,2,4] [--out DIR]\n", argv0);
  return 2;
}

lmshrink::LayerSelection parse_list(const std::string& s) {
  lmshrink::LayerSelection out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    std::size_t used = 0;
    int v = 0;
    try {
      v = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size())
      throw lmshrink::value_error("[lmshrink.value] --keep: '" + item + "' is not a block number");
    out.push_back(v);
  }
  return out;
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::vector<std::string> split_stories(const std::string& text) {
  std::vector<std::string> stories;
  const std::string sep = "<|endoftext|>";
  std::size_t at = 0;
  while (at <= text.size()) {
    const std::size_t next = text.find(sep, at);
    const std::string story = trim(text.substr(at, next == std::string::npos ? std::string::npos : next - at));
    if (!story.empty()) stories.push_back(story);
    if (next == std::string::npos) break;
    at = next + sep.size();
  }
  return stories;
}

std::string preview(const std::string& s) {
  std::string p = s.substr(0, 60);
  for (char& c : p)
    if (c == '\n') c = ' ';
  return p + (s.size() > 60 ? "…" : "");
}

// Replaces the first occurrence of `from` (a whole word) by `to`.
std::string replace_word(std::string s, const std::string& from, const std::string& to) {
  const auto at = s.find(" " + from + " ");
  if (at != std::string::npos) s.replace(at + 1, from.size(), to);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_path = LMSHRINK_DATA_DIR "/stories260K.bin";
  std::string text_path = LMSHRINK_DATA_DIR "/tinystories_valid_first1000.txt";
  std::string keep_arg = "0,2,4", out_dir = "out/truncate_clean";
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--model") && i + 1 < argc) model_path = argv[++i];
    else if (!std::strcmp(argv[i], "--text") && i + 1 < argc) text_path = argv[++i];
    else if (!std::strcmp(argv[i], "--keep") && i + 1 < argc) keep_arg = argv[++i];
    else if (!std::strcmp(argv[i], "--out") && i + 1 < argc) out_dir = argv[++i];
    else return usage(argv[0]);
  }
  try {
    // ---- 1. truncation ----
    const auto teacher = lmshrink::models::llama::read_llama2c(model_path);
    const auto keep = parse_list(keep_arg);
    const auto student = lmshrink::models::llama::truncate_layers(teacher, keep);
    examples::prepare_output_directory("lmshrink_truncate_and_clean", out_dir);
    std::string name = "stories260K_blocks";
    for (int b : keep) name += "_" + std::to_string(b);
    const std::string path = out_dir + "/" + name + ".bin";
    lmshrink::models::llama::write_llama2c(student, path);
    const auto reloaded = lmshrink::models::llama::read_llama2c(path);
    std::printf("teacher  %s: %d blocks, %lld parameters, %lld bytes\n", model_path.c_str(),
                teacher.config.n_layers, static_cast<long long>(teacher.parameter_count()),
                static_cast<long long>(std::filesystem::file_size(model_path)));
    std::printf("student  %s: %d blocks (kept %s), %lld parameters, %lld bytes\n", path.c_str(),
                reloaded.config.n_layers, keep_arg.c_str(),
                static_cast<long long>(reloaded.parameter_count()),
                static_cast<long long>(std::filesystem::file_size(path)));
    std::printf("student/teacher parameters: %.3f\n\n",
                double(reloaded.parameter_count()) / double(teacher.parameter_count()));

    // ---- 2. data cleaning ----
    std::ifstream in(text_path, std::ios::binary);
    if (!in) throw lmshrink::io_error("[lmshrink.io] cannot open " + text_path);
    std::stringstream buf;
    buf << in.rdbuf();
    auto stories = split_stories(buf.str());
    const std::size_t real = stories.size();
    // Planted: an exact copy, a copy with its punctuation changed, a copy with a middle word
    // replaced by one of the same length, two documents with markup, and a punctuation-only one.
    std::string punct = stories[5];
    for (char& c : punct)
      if (c == '.') c = '!';
    const std::string swapped = replace_word(stories[10], "the", "one");
    if (swapped == stories[10] || punct == stories[5])
      throw lmshrink::value_error("[lmshrink.value] planting near-duplicates changed nothing");
    stories.push_back(stories[20]);
    stories.push_back(punct);
    stories.push_back(swapped);
    stories.push_back("<p>" + stories[30] + "</p>");
    stories.push_back(stories[40] + "<br/>Click <a href=\"https://example.com\">here</a>.");
    stories.push_back("... !!! ???");
    const std::size_t planted = stories.size() - real;

    lmshrink::DocumentFilter filter;
    std::printf("%-9s %5s  %s\n", "dropped", "doc", "start");
    for (std::size_t i = 0; i < stories.size(); ++i) {
      const auto v = filter.add(stories[i]);
      if (v != lmshrink::Verdict::keep)
        std::printf("%-9s %5zu  %s%s\n", lmshrink::to_string(v), i, preview(stories[i]).c_str(),
                    i >= real ? "   (planted)" : "");
    }
    const auto& c = filter.counts();
    std::printf("\n%zu held-out stories + %zu planted: seen %llu, kept %llu, duplicates %llu, "
                "markup %llu, empty %llu\n",
                real, planted, static_cast<unsigned long long>(c.seen),
                static_cast<unsigned long long>(c.kept),
                static_cast<unsigned long long>(c.duplicates),
                static_cast<unsigned long long>(c.markup), static_cast<unsigned long long>(c.empty));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
