#pragma once
// Text sampled from a teacher model: the training stream and the validation stream of the main
// job, each from its own seed, and a check that the two share no story.
//
//   auto train = examples::sample_stories(*teacher, codec, 100000, /*seed=*/20231, threads, on_progress);
//   // (options: StoryOptions{context, max_tokens}; stories already sampled, e.g. from a cache)
//   auto val = examples::sample_stories(*teacher, codec, 30000, /*seed=*/7, threads, on_progress);
//   examples::check_disjoint(train, val);                 // lmshrink::value_error on overlap
//   std::vector<int> stream = examples::concatenate(train);

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <lmshrink/random.hpp>
#include <lmshrink/errors.hpp>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "../models/registry.hpp"
#include "team.hpp"

namespace examples {

using Story = std::vector<int>;

/// How stories are sampled: at most `context` positions each (0: the model's context), cut at
/// `max_tokens` tokens (0: no cut; a model that never emits its end token otherwise writes every
/// story to the full context).
struct StoryOptions {
  int context = 0;
  int max_tokens = 0;
  int round = 0;      // stories sampled per round; 0: as many as the missing tokens need, at most 16
  bool trim = true;   // keep the fewest stories that hold the tokens needed (else every one sampled)
};

/// The most tokens a story can have under `o` for `teacher`.
inline int story_cap(const Model& teacher, const StoryOptions& o) {
  const int ctx = o.context > 0 ? std::min(o.context, teacher.shape().seq_len) : teacher.shape().seq_len;
  return o.max_tokens > 0 ? std::min(o.max_tokens, ctx) : ctx;
}

/// Stories sampled at temperature 1 by the teacher's own layers (Model::decoder), each from the codec's
/// story start until the model emits the story end (BOS for llama2.c models, <|endoftext|> for
/// GPT-2, the config's EOS for Hugging Face models) or reaches story_cap tokens, until
/// `tokens_needed` tokens are there. Story i draws from its own stream seeded by (seed, i), so
/// the text depends neither on the number of threads nor on how many stories a round samples;
/// `stories` may hold stories 0..k−1 already (from a cache), and sampling goes on from story k.
/// `progress(tokens, stories)` is called after each round. With a team of several processes,
/// each samples every size-th story of a round and the round is gathered: the same stories.
inline std::vector<Story> sample_stories(
    const Model& teacher, const TextCodec& codec, std::size_t tokens_needed, std::uint64_t seed,
    int threads, const std::function<void(std::size_t, std::size_t)>& progress = {}, Team* team = nullptr,
    const StoryOptions& options = {}, std::vector<Story> stories = {}) {
  const int ranks = team ? team->size() : 1, rank = team ? team->rank() : 0;
  const int start = codec.story_start(), end = codec.story_end();
  const int cap = story_cap(teacher, options);
  (void)threads;  // without OpenMP, one thread
  std::size_t have = 0;
  for (const Story& s : stories) have += s.size();
  while (have < tokens_needed) {
    // Enough stories for what is missing were each to reach the cap, at least one per thread and
    // process, at most 16.
    const std::size_t missing = (tokens_needed - have + std::size_t(cap) - 1) / std::size_t(cap);
    const int round = options.round > 0 ? options.round
                                        : int(std::max<std::size_t>(std::size_t(std::max(1, threads)) * std::size_t(ranks),
                                                                    std::min<std::size_t>(16, missing)));
    const std::size_t first = stories.size();
    stories.resize(first + std::size_t(round));
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic) num_threads(threads)
#endif
    for (int s = rank; s < round; s += ranks) {
      const std::unique_ptr<Decoder> dec = teacher.decoder();
      lmshrink::SplitMix64 rng(seed * 0x9E3779B97F4A7C15ull + first + std::size_t(s));
      Story& story = stories[first + std::size_t(s)];
      int token = start;
      story.push_back(start);
      for (int pos = 0; pos + 1 < cap; ++pos) {
        const auto& z = dec->forward_token(token, pos);
        const double max = z.maxCoeff();
        double sum = 0;
        for (int j = 0; j < z.size(); ++j) sum += std::exp(double(z[j]) - max);
        double u = double(rng.next() >> 11) * 0x1.0p-53 * sum;
        int next = int(z.size()) - 1;
        for (int j = 0; j < z.size(); ++j) {
          u -= std::exp(double(z[j]) - max);
          if (u < 0) {
            next = j;
            break;
          }
        }
        if (next == end) break;
        story.push_back(next);
        token = next;
      }
    }
    if (ranks > 1) {  // every rank's stories of the round: [index, length, tokens...] each
      std::vector<int> mine;
      for (int s = rank; s < round; s += ranks) {
        const Story& story = stories[first + std::size_t(s)];
        mine.push_back(s);
        mine.push_back(int(story.size()));
        mine.insert(mine.end(), story.begin(), story.end());
      }
      const std::vector<int> all = team->all_gather(mine);
      for (std::size_t at = 0; at < all.size();) {
        const std::size_t index = first + std::size_t(all[at]), length = std::size_t(all[at + 1]);
        stories[index].assign(all.begin() + std::ptrdiff_t(at + 2), all.begin() + std::ptrdiff_t(at + 2 + length));
        at += 2 + length;
      }
    }
    for (std::size_t s = first; s < stories.size(); ++s) have += stories[s].size();
    if (progress) progress(have, stories.size());
  }
  // The fewest stories that hold the tokens needed: the same list however it was sampled or cached.
  if (!options.trim) return stories;
  std::size_t keep = 0;
  for (std::size_t total = 0; keep < stories.size() && total < tokens_needed; ++keep) total += stories[keep].size();
  stories.resize(keep);
  return stories;
}

inline std::vector<int> concatenate(const std::vector<Story>& stories) {
  std::vector<int> stream;
  for (const auto& s : stories) stream.insert(stream.end(), s.begin(), s.end());
  return stream;
}

/// Throws lmshrink::value_error if a story of at least `min_tokens` tokens is in both sets: a
/// validation stream must never repeat training text (short stories can coincide by chance and
/// say nothing about overlap).
inline void check_disjoint(const std::vector<Story>& train, const std::vector<Story>& validation,
                           std::size_t min_tokens = 16) {
  std::unordered_set<std::string> seen;
  const auto key = [](const Story& s) {
    return std::string(reinterpret_cast<const char*>(s.data()), s.size() * sizeof(int));
  };
  for (const auto& s : train)
    if (s.size() >= min_tokens) seen.insert(key(s));
  std::size_t shared = 0, first = 0;
  for (std::size_t i = 0; i < validation.size(); ++i)
    if (validation[i].size() >= min_tokens && seen.count(key(validation[i])) && shared++ == 0)
      first = i;
  if (shared > 0)
    lmshrink::fail<lmshrink::value_error>(
        "check_disjoint", shared, " validation stories (the first is story ", first, ", ",
        validation[first].size(), " tokens) also appear in the training stream; the validation "
        "stream must be disjoint from it (use another validation seed)");
}

}  // namespace examples
