#pragma once
// Teacher text kept on disk. Sampling a GPT-2-sized teacher's stories takes hours, and every run
// with the same teacher, tokenizer, seed and story options samples the same stories (story i
// from its own seeded stream): a second run, or a run of other methods, reads them back, and a
// run that needs more samples only the stories after the cached ones.
//
//   const std::uint64_t key = examples::text_key(teacher, codec, seed, options);
//   const std::string path = examples::text_cache_path(dir, key);
//   examples::CachedText cached = examples::read_cached_text(path, key, teacher, codec, options);
//   // cached.stories (empty when absent), cached.problem (why a file was not used)
//   auto stories = examples::sample_stories(..., options, std::move(cached.stories));
//   examples::write_cached_text(path, key, stories);               // atomically
//
// The file: "lmshrink-text\0\0\x01" (16 bytes), the key (u64), the story cap (u32), the number of
// stories (u64), then each story as its length (u32) and tokens (u32 each), little-endian. A
// file that does not hold exactly that, with every length within the cap and every token in
// the vocabulary, is not used (and the text is sampled again).

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <lmshrink/digest.hpp>
#include <lmshrink/files.hpp>

#include "teacher_text.hpp"

namespace examples {

inline constexpr char kTextCacheMagic[16] = {'l', 'm', 's', 'h', 'r', 'i', 'n', 'k', '-', 't', 'e', 'x', 't', 0, 0, 1};

/// What determines the stories: the teacher's weights, the tokenizer's vocabulary and story
/// tokens, the seed and the story options (not how many are needed).
inline std::uint64_t text_key(Model& teacher, const TextCodec& codec, std::uint64_t seed, const StoryOptions& o) {
  lmshrink::Digest d;
  const std::string version = "lmshrink teacher text 1: temperature 1, SplitMix64 per story";
  d.add(version.data(), version.size());
  const std::string family = teacher.family();
  d.add(family.data(), family.size());
  const ModelShape s = teacher.shape();
  for (int v : {s.n_layers, s.dim, s.vocab_size, s.seq_len, s.n_heads, s.n_kv_heads}) d.add(std::int64_t(v));
  for (const TensorRef& t : teacher.plain_params()) {
    d.add(std::int64_t(t.size));
    d.add(t.data, std::size_t(t.size) * sizeof(float));
  }
  for (int l = 0; l < s.n_layers; ++l)
    for (int k = 0; k < teacher.linear_kinds(); ++k) {
      const lmshrink::models::Layer& layer = teacher.linear(l, k);
      d.add(layer.U());
      d.add(layer.V());
      d.add(layer.S());
      d.add(layer.bias());
      d.add(layer.row_mask());
      d.add(layer.element_mask());
    }
  d.add(std::int64_t(codec.vocab_size()));
  for (int id = 0; id < codec.vocab_size(); ++id) {
    const std::string piece = codec.decode({id});
    d.add(std::int64_t(piece.size()));
    d.add(piece.data(), piece.size());
  }
  for (std::int64_t v : {std::int64_t(codec.story_start()), std::int64_t(codec.story_end()), std::int64_t(seed),
                         std::int64_t(story_cap(teacher, o))})
    d.add(v);
  return d.value();
}

/// `dir`/stories-<key in hex>.bin.
inline std::string text_cache_path(const std::string& dir, std::uint64_t key) {
  char name[40];
  std::snprintf(name, sizeof name, "stories-%016llx.bin", static_cast<unsigned long long>(key));
  return (std::filesystem::path(dir) / name).string();
}

struct CachedText {
  std::vector<Story> stories;  // empty: nothing usable
  std::string problem;         // why an existing file was not used (empty: used, or absent)
};

/// The stories in `bytes` (a cache file's content), or the reason they cannot be used.
inline CachedText parse_cached_text(const std::vector<char>& bytes, std::uint64_t key, int cap, int vocab) {
  CachedText out;
  std::size_t at = 0;
  const auto take = [&](void* to, std::size_t n) {
    if (bytes.size() - at < n) return false;
    std::memcpy(to, bytes.data() + at, n);
    at += n;
    return true;
  };
  char magic[16];
  std::uint64_t file_key = 0, count = 0;
  std::uint32_t file_cap = 0;
  if (!take(magic, sizeof magic) || std::memcmp(magic, kTextCacheMagic, sizeof magic) != 0) {
    out.problem = "it is not an lmshrink text cache (version 1)";
    return out;
  }
  if (!take(&file_key, 8) || !take(&file_cap, 4) || !take(&count, 8)) {
    out.problem = "its header is truncated";
    return out;
  }
  if (file_key != key || int(file_cap) != cap) {
    out.problem = "it was written for other inputs";
    return out;
  }
  if (count > (bytes.size() - at) / 4) {  // every story takes at least its length word
    out.problem = "it claims " + std::to_string(count) + " stories in " + std::to_string(bytes.size()) + " bytes";
    return out;
  }
  std::vector<Story> stories(count);
  for (std::uint64_t i = 0; i < count; ++i) {
    std::uint32_t length = 0;
    if (!take(&length, 4) || length < 1 || length > std::uint32_t(cap) || (bytes.size() - at) / 4 < length) {
      out.problem = "story " + std::to_string(i) + " is truncated or longer than the cap of " + std::to_string(cap);
      return out;
    }
    Story& s = stories[i];
    s.resize(length);
    for (std::uint32_t t = 0; t < length; ++t) {
      std::uint32_t id = 0;
      take(&id, 4);
      if (id >= std::uint32_t(vocab)) {
        out.problem = "story " + std::to_string(i) + " holds token " + std::to_string(id) + ", outside the vocabulary";
        return out;
      }
      s[t] = int(id);
    }
  }
  if (at != bytes.size()) {
    out.problem = "it has " + std::to_string(bytes.size() - at) + " bytes after its last story";
    return out;
  }
  out.stories = std::move(stories);
  return out;
}

/// The cached stories at `path` for `key` (none when there is no file).
inline CachedText read_cached_text(const std::string& path, std::uint64_t key, const Model& teacher,
                                   const TextCodec& codec, const StoryOptions& o) {
  std::error_code error;
  if (!std::filesystem::exists(path, error)) return {};
  std::vector<char> bytes;
  try {
    bytes = lmshrink::read_file_bytes("read_cached_text", path, 0, "a text cache", std::int64_t(1) << 38,
                                      "more than a text cache may hold");
  } catch (const lmshrink::error& e) {
    return {{}, e.what()};
  }
  return parse_cached_text(bytes, key, story_cap(teacher, o), codec.vocab_size());
}

/// Writes `stories` to `path` (atomically: the old file or the new one, never a mix), making
/// its folder when missing.
inline void write_cached_text(const std::string& path, std::uint64_t key, int cap, const std::vector<Story>& stories) {
  std::error_code error;
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, error);
  lmshrink::write_file_atomically("write_cached_text", path, [&](std::FILE* f) {
    const std::uint32_t c = std::uint32_t(cap);
    const std::uint64_t count = stories.size();
    bool ok = std::fwrite(kTextCacheMagic, 1, sizeof kTextCacheMagic, f) == sizeof kTextCacheMagic &&
              std::fwrite(&key, 8, 1, f) == 1 && std::fwrite(&c, 4, 1, f) == 1 && std::fwrite(&count, 8, 1, f) == 1;
    std::vector<std::uint32_t> words;
    for (const Story& s : stories) {
      if (!ok) break;
      words.assign(1, std::uint32_t(s.size()));
      for (int t : s) words.push_back(std::uint32_t(t));
      ok = std::fwrite(words.data(), 4, words.size(), f) == words.size();
    }
    return ok;
  });
}

}  // namespace examples
