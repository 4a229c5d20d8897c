// lmshrink_compress: scoring, greedy generation and its timing, for the teacher and the students.
#include <lmshrink/io/gpt2_tokenizer.hpp>
#include <fstream>
#include <sstream>

#include "compress.hpp"

namespace compress {

std::vector<int> read_eval_tokens(const std::string& path, const lmshrink::models::TextCodec& codec) {
  std::vector<int> tokens;
  if (path.size() >= 4 && path.compare(path.size() - 4, 4, ".u16") == 0) {
    const auto bytes = lmshrink::read_file_bytes("lmshrink_compress", path, 2,
                                                         "at least one token", std::int64_t(1) << 34, "too large");
    if (bytes.size() % 2 != 0)
      fail<lmshrink::format_error>("lmshrink_compress", "'", path, "' has ", bytes.size(),
                                   " bytes; a .u16 token stream has an even size");
    for (std::size_t i = 0; i < bytes.size(); i += 2)
      tokens.push_back(int(static_cast<unsigned char>(bytes[i])) | (int(static_cast<unsigned char>(bytes[i + 1])) << 8));
    return tokens;
  }
  // Text: stories separated by <|endoftext|>, each stripped, "\n\n" → "\n", then encoded as the
  // model's stories are (llama2.c: BOS + dummy prefix; GPT-2: <|endoftext|> first).
  const auto bytes = lmshrink::read_file_bytes("lmshrink_compress", path, 1, "some text",
                                                       std::int64_t(1) << 32, "too large");
  const std::string text(bytes.begin(), bytes.end());
  const std::size_t bad = lmshrink::first_invalid_utf8(text);
  if (bad != std::string::npos)
    fail<lmshrink::format_error>("lmshrink_compress", "'", path, "' is not valid UTF-8 text: byte ", bad,
                                 " (0x", "0123456789abcdef"[static_cast<unsigned char>(text[bad]) >> 4],
                                 "0123456789abcdef"[static_cast<unsigned char>(text[bad]) & 15],
                                 ") does not start a valid sequence; held-out text must be UTF-8");
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
      const auto ids = codec.encode_story(story);
      tokens.insert(tokens.end(), ids.begin(), ids.end());
    }
    start = end + sep.size();
  }
  return tokens;
}

std::string default_eval(const lmshrink::models::TextCodec& codec) {
  return codec.vocab_size() == 512 && codec.story_start() == 1
             ? LMSHRINK_DATA_DIR "/tinystories_valid_first1000.tok512.u16"
             : LMSHRINK_DATA_DIR "/tinystories_valid_first1000.txt";
}

// ---- evaluation --------------------------------------------------------------------------------

Score evaluate(const DecoderFactory& decoders, const std::vector<int>& stream, int windows, int window_len,
               int threads, examples::Team* team) {
  const int ranks = team ? team->size() : 1, rank = team ? team->rank() : 0;
  const int first = int(std::int64_t(windows) * rank / ranks), last = int(std::int64_t(windows) * (rank + 1) / ranks);
  std::vector<lmshrink::models::SequenceScore> per(static_cast<std::size_t>(last - first));
#pragma omp parallel num_threads(threads)
  {
    const std::unique_ptr<lmshrink::models::Decoder> dec = decoders();
#pragma omp for schedule(dynamic)
    for (int w = first; w < last; ++w) {
      const int* in = stream.data() + std::size_t(w) * window_len;
      per[std::size_t(w - first)] = lmshrink::models::score_logits<float>(dec->forward_sequence(in, window_len), in + 1);
    }
  }
  if (ranks > 1) {  // every window's sums, in window order (rank r's windows follow rank r − 1's)
    std::vector<double> mine;
    for (const auto& p : per) mine.insert(mine.end(), {p.nll_sum, double(p.top1), double(p.tokens)});
    const std::vector<double> all = team->all_gather(mine);
    per.resize(all.size() / 3);
    for (std::size_t w = 0; w < per.size(); ++w) {
      per[w].nll_sum = all[3 * w];
      per[w].top1 = decltype(per[w].top1)(all[3 * w + 1]);
      per[w].tokens = decltype(per[w].tokens)(all[3 * w + 2]);
    }
  }
  Score s;
  double nll = 0;
  long top1 = 0;
  for (const auto& p : per) {  // in window order: the same sum for any thread or process count
    nll += p.nll_sum;
    top1 += p.top1;
    s.tokens += p.tokens;
  }
  s.nll = nll / double(s.tokens);
  s.ppl = std::exp(s.nll);
  s.top1 = double(top1) / double(s.tokens);
  return s;
}

std::vector<int> greedy(const DecoderFactory& decoders, const lmshrink::models::TextCodec& codec, int n, int context) {
  const std::unique_ptr<lmshrink::models::Decoder> dec = decoders();
  std::vector<int> out{codec.story_start()};
  for (int pos = 0; pos < n && pos + 1 < context; ++pos) {
    Eigen::Index next = 0;
    dec->forward_token(out.back(), pos).maxCoeff(&next);
    out.push_back(int(next));
  }
  return out;
}

std::string sample_text(const lmshrink::models::TextCodec& codec, std::vector<int> ids) {
  const auto end = std::find(ids.begin() + 1, ids.end(), codec.story_end());
  ids.erase(end, ids.end());
  return codec.decode(ids);
}

double generation_seconds(const DecoderFactory& decoders, const lmshrink::models::TextCodec& codec, int n, int context) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto ids = greedy(decoders, codec, n, context);
  const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return ids.empty() ? 0 : t;
}

}  // namespace compress
