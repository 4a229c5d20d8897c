// lmshrink_compress: scoring, greedy generation and its timing, for the teacher and the students.
#include <fstream>
#include <sstream>

#include "compress.hpp"

namespace compress {

std::vector<int> read_eval_tokens(const std::string& path, const lmshrink::Tokenizer& tok) {
  std::vector<int> tokens;
  if (path.size() >= 4 && path.compare(path.size() - 4, 4, ".u16") == 0) {
    const auto bytes = lmshrink::detail::read_file_bytes("lmshrink_compress", path, 2,
                                                         "at least one token", std::int64_t(1) << 34, "too large");
    if (bytes.size() % 2 != 0)
      fail<lmshrink::format_error>("lmshrink_compress", "'", path, "' has ", bytes.size(),
                                   " bytes; a .u16 token stream has an even size");
    for (std::size_t i = 0; i < bytes.size(); i += 2)
      tokens.push_back(int(static_cast<unsigned char>(bytes[i])) | (int(static_cast<unsigned char>(bytes[i + 1])) << 8));
    return tokens;
  }
  // Text: stories separated by <|endoftext|>, each stripped, "\n\n" → "\n", BOS + dummy prefix.
  const auto bytes = lmshrink::detail::read_file_bytes("lmshrink_compress", path, 1, "some text",
                                                       std::int64_t(1) << 32, "too large");
  const std::string text(bytes.begin(), bytes.end());
  const std::string sep = "<|endoftext|>";
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find(sep, start);
    if (end == std::string::npos) end = text.size();
    std::string story = text.substr(start, end - start);
    const auto first = story.find_first_not_of(" \t\r\n");
    const auto last = story.find_last_not_of(" \t\r\n");
    story = first == std::string::npos ? "" : story.substr(first, last - first + 1);
    for (std::size_t p; (p = story.find("\n\n")) != std::string::npos;) story.replace(p, 2, "\n");
    if (!story.empty()) {
      const auto ids = tok.encode(story, true, false);
      tokens.insert(tokens.end(), ids.begin(), ids.end());
    }
    start = end + sep.size();
  }
  return tokens;
}

// ---- evaluation --------------------------------------------------------------------------------

template <class View>
Score evaluate(View view, const std::vector<int>& stream, int windows, int window_len, int threads) {
  std::vector<examples::SequenceScore> per(static_cast<std::size_t>(windows));
#pragma omp parallel num_threads(threads)
  {
    examples::SequenceDecoder<View> dec(view);
#pragma omp for schedule(dynamic)
    for (int w = 0; w < windows; ++w) {
      const int* in = stream.data() + std::size_t(w) * window_len;
      per[std::size_t(w)] = examples::score_logits(dec.forward(in, window_len), in + 1);
    }
  }
  Score s;
  double nll = 0;
  long top1 = 0;
  for (const auto& p : per) {  // in window order: the same sum for any thread count
    nll += p.nll_sum;
    top1 += p.top1;
    s.tokens += p.tokens;
  }
  s.nll = nll / double(s.tokens);
  s.ppl = std::exp(s.nll);
  s.top1 = double(top1) / double(s.tokens);
  return s;
}

template <class View>
std::vector<int> greedy(View view, int n) {
  examples::KvDecoder<View> dec(view);
  std::vector<int> out{1};
  for (int pos = 0; pos < n && pos + 1 < dec.config().seq_len; ++pos) {
    Eigen::Index next = 0;
    dec.forward(out.back(), pos).maxCoeff(&next);
    out.push_back(int(next));
  }
  return out;
}

// The greedy story up to the first BOS after the start (the model's end of story).
std::string sample_text(const lmshrink::Tokenizer& tok, std::vector<int> ids) {
  const auto end = std::find(ids.begin() + 1, ids.end(), 1);
  ids.erase(end, ids.end());
  return tok.decode(ids);
}

template <class View>
double generation_seconds(View view, int n) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto ids = greedy(view, n);
  const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return ids.empty() ? 0 : t;
}

template Score evaluate<examples::DenseView>(examples::DenseView, const std::vector<int>&, int, int, int);
template Score evaluate<examples::CompactView>(examples::CompactView, const std::vector<int>&, int, int, int);
template std::vector<int> greedy<examples::DenseView>(examples::DenseView, int);
template std::vector<int> greedy<examples::CompactView>(examples::CompactView, int);
template double generation_seconds<examples::DenseView>(examples::DenseView, int);
template double generation_seconds<examples::CompactView>(examples::CompactView, int);

}  // namespace compress
