#pragma once
// Web-like pollution of clean stories, for the data-cleaning arm of lmshrink_study
// (docs/study.md). The recipe, per document in order, from a seeded stream:
//   - 20 %: a near-duplicate of one of the first 5 stories: the same text with one change, either
//     its punctuation (every '.' becomes '!' or a ',' is dropped) or one middle word replaced by
//     "very" — the kind of copy a crawl collects;
//   - 10 %: the story wrapped in HTML markup (<div class="post"><p>…</p></div>);
//   - 10 %: the story with a boilerplate line appended ("Click here to subscribe for more
//     stories!" or "Copyright 2023. All rights reserved.");
//   - otherwise the story unchanged.
// lmshrink's DocumentFilter drops the markup and the duplicates; boilerplate lines are not among
// what it looks for, so they stay.

#include <cstdint>
#include <lmshrink/random.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace study {

struct PollutionCounts {
  std::size_t near_duplicates = 0, markup = 0, boilerplate = 0, unchanged = 0;
};

inline std::string near_duplicate(const std::string& story, std::uint64_t r) {
  std::string out = story;
  if (r % 2 == 0) {  // punctuation
    bool changed = false;
    for (char& c : out)
      if (c == '.') c = '!', changed = true;
    if (!changed) out += "!";
    return out;
  }
  // One middle word replaced.
  std::istringstream in(story);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  if (words.size() < 3) return story + " very";
  words[words.size() / 2] = "very";
  std::string joined;
  for (const auto& w : words) joined += (joined.empty() ? "" : " ") + w;
  return joined;
}

/// The polluted corpus: one document per clean story (the same count), by the recipe above.
inline std::vector<std::string> pollute(const std::vector<std::string>& stories, std::uint64_t seed,
                                        PollutionCounts* counts = nullptr) {
  lmshrink::SplitMix64 rng(seed);
  std::vector<std::string> docs;
  PollutionCounts c;
  const std::size_t sources = std::min<std::size_t>(5, stories.size());
  for (const auto& story : stories) {
    const std::uint64_t r = rng.next();
    const double u = double(r >> 11) * 0x1.0p-53;
    if (u < 0.2 && sources > 0) {
      docs.push_back(near_duplicate(stories[(r >> 3) % sources], r >> 7));
      ++c.near_duplicates;
    } else if (u < 0.3) {
      docs.push_back("<div class=\"post\"><p>" + story + "</p></div>");
      ++c.markup;
    } else if (u < 0.4) {
      docs.push_back(story + ((r >> 5) % 2 ? "\nClick here to subscribe for more stories!"
                                           : "\nCopyright 2023. All rights reserved."));
      ++c.boilerplate;
    } else {
      docs.push_back(story);
      ++c.unchanged;
    }
  }
  if (counts) *counts = c;
  return docs;
}

}  // namespace study
