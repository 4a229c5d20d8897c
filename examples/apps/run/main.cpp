// Uses a model: scores text, generates from a prompt, measures its speed. Any model lmshrink
// reads or writes: a llama2.c file, a Hugging Face directory, or a checkpoint written by
// lmshrink_compress (dense or compressed, .safetensors).
//
//   lmshrink_run MODEL score FILE        [--context N] [--windows N] [--threads N] [--compact]
//   lmshrink_run MODEL generate [PROMPT] [--temperature T] [--top-p P] [--seed S] [--max-tokens N] [--compact]
//   lmshrink_run MODEL bench             [--prompt-tokens N] [--tokens N] [--repeats N]
//   common: [--tokenizer PATH] [--parse-special] [--pack modelled|timed]
//
// score: FILE is text (stories separated by <|endoftext|>, each encoded as the model's stories)
// or a .u16 token stream, cut into non-overlapping windows of --context tokens (default: the
// model's context) predicting the next token: the main job's protocol (README), so the NLL is the
// job's (which scores a teacher with its own layers and a student in its compact form: --compact). generate: streams the text after PROMPT; temperature 0 is greedy, and the sampler is
// run.c's (the same seed gives run.c's text). bench: prompt processing and generation tokens/s,
// the model's own layers against its compact form (medians of --repeats runs). --pack: each
// linear layer of the compact form in the form of least modelled cost for one token per call
// (the checkpoint's stated form; default), or of least time measured here (lmshrink::PackForm::timed).
#include <lmshrink/compact.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <lmshrink/models/codecs.hpp>
#include <lmshrink/models/sampling.hpp>
#include <memory>
#include <string>
#include <vector>

#include "apps/compress/compress.hpp"
#include "models/registry.hpp"

namespace {

struct Options {
  std::string model, command, argument, tokenizer;
  int context = 0, windows = 0, threads = 1, max_tokens = 256, prompt_tokens = 128, tokens = 64, repeats = 5;
  float temperature = 1.0f, top_p = 0.9f;
  unsigned long long seed = 42;
  bool compact = false, parse_special = false, timed_pack = false;
};

[[noreturn]] void usage(const char* argv0, const std::string& why) {
  std::fprintf(stderr,
               "%s\nusage: %s MODEL score FILE | generate [PROMPT] | bench [options]\n"
               "  MODEL                a llama2.c file, a Hugging Face directory, or an lmshrink checkpoint (.safetensors)\n"
               "  --tokenizer PATH     tokenizer.json, tokenizer.model, a llama2.c tokenizer or a directory (default:\n"
               "                       the model directory's, else the bundled one)\n"
               "  --parse-special      special-token text in FILE or PROMPT is the special token (tokenizer.json)\n"
               "  --context N          score: window length; generate, bench: most positions (default: the model's)\n"
               "  --windows N          score: at most N windows (default: all)\n"
               "  --threads N          score: threads (default 1)\n"
               "  --temperature T      generate: 0 is greedy (default 1.0)\n"
               "  --top-p P            generate: nucleus mass, outside (0, 1) for all tokens (default 0.9)\n"
               "  --seed S             generate: the sampler's seed, not 0 (default 42)\n"
               "  --max-tokens N       generate: tokens after the prompt (default 256)\n"
               "  --compact            score, generate: with the compact form (default: the model's own layers)\n"
               "  --pack FORM          the compact form's layers: modelled (least modelled cost, the checkpoint's\n"
               "                       stated form) or timed (least time on this machine, at one token) (default: modelled)\n"
               "  --prompt-tokens N    bench: prompt length (default 128)\n"
               "  --tokens N           bench: generated tokens (default 64)\n"
               "  --repeats N          bench: runs of each measurement, the median is reported (default 5)\n",
               why.c_str(), argv0);
  std::exit(2);
}

long long integer(const char* argv0, const std::string& name, const char* text, long long lo, long long hi) {
  char* end = nullptr;
  const long long v = std::strtoll(text, &end, 10);
  if (*text == '\0' || *end != '\0' || v < lo || v > hi)
    usage(argv0, "[lmshrink.value] lmshrink_run: " + name + " '" + text + "'; an integer in [" + std::to_string(lo) +
                     ", " + std::to_string(hi) + "] was expected");
  return v;
}

float real(const char* argv0, const std::string& name, const char* text) {
  char* end = nullptr;
  const float v = std::strtof(text, &end);
  if (*text == '\0' || *end != '\0' || !(v == v))
    usage(argv0, "[lmshrink.value] lmshrink_run: " + name + " '" + text + "'; a number was expected");
  return v;
}

Options parse(int argc, char** argv) {
  Options o;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--tokenizer" && has_value) o.tokenizer = argv[++i];
    else if (a == "--parse-special") o.parse_special = true;
    else if (a == "--compact") o.compact = true;
    else if (a == "--pack" && has_value) {
      const std::string v = argv[++i];
      if (v != "modelled" && v != "timed")
        usage(argv[0], "[lmshrink.value] lmshrink_run: --pack '" + v + "'; modelled or timed was expected");
      o.timed_pack = v == "timed";
    }
    else if (a == "--context" && has_value) o.context = int(integer(argv[0], a, argv[++i], 2, 1 << 20));
    else if (a == "--windows" && has_value) o.windows = int(integer(argv[0], a, argv[++i], 1, 1 << 30));
    else if (a == "--threads" && has_value) o.threads = int(integer(argv[0], a, argv[++i], 1, 1024));
    else if (a == "--max-tokens" && has_value) o.max_tokens = int(integer(argv[0], a, argv[++i], 0, 1 << 20));
    else if (a == "--prompt-tokens" && has_value) o.prompt_tokens = int(integer(argv[0], a, argv[++i], 1, 1 << 20));
    else if (a == "--tokens" && has_value) o.tokens = int(integer(argv[0], a, argv[++i], 1, 1 << 20));
    else if (a == "--repeats" && has_value) o.repeats = int(integer(argv[0], a, argv[++i], 1, 1000));
    else if (a == "--seed" && has_value) o.seed = (unsigned long long)integer(argv[0], a, argv[++i], 1, (1LL << 62));
    else if (a == "--temperature" && has_value) o.temperature = real(argv[0], a, argv[++i]);
    else if (a == "--top-p" && has_value) o.top_p = real(argv[0], a, argv[++i]);
    else if (!a.empty() && a[0] == '-' && a != "-") usage(argv[0], "[lmshrink.value] lmshrink_run: unknown option or missing value '" + a + "'");
    else positional.push_back(a);
  }
  if (positional.size() < 2) usage(argv[0], "[lmshrink.value] lmshrink_run: MODEL and a command were expected");
  o.model = positional[0];
  o.command = positional[1];
  if (o.command != "score" && o.command != "generate" && o.command != "bench")
    usage(argv[0], "[lmshrink.value] lmshrink_run: command '" + o.command + "'; score, generate or bench was expected");
  // score FILE; generate [PROMPT] (none: the story start alone, as run.c without -i); bench
  const std::size_t most = o.command == "bench" ? 2 : 3, least = o.command == "score" ? 3 : 2;
  if (positional.size() < least || positional.size() > most)
    usage(argv[0], "[lmshrink.value] lmshrink_run: " + o.command +
                       (o.command == "score" ? " takes a FILE" : o.command == "generate" ? " takes at most a PROMPT" : " takes no argument"));
  if (positional.size() == 3) o.argument = positional[2];
  return o;
}

std::unique_ptr<examples::Packed> pack(const Options& o, const examples::Model& model) {
  lmshrink::PackOptions options = lmshrink::fastest_pack();
  if (o.timed_pack) options.form = lmshrink::PackForm::timed;
  return model.pack(options);
}

// "24 low-rank + sparse, 11 dense" for the compact form's linear layers.
std::string form_counts(const examples::Packed& packed) {
  using lmshrink::CompactForm;
  const auto forms = packed.linear_forms();
  std::string text;
  for (const CompactForm f : {CompactForm::low_rank_sparse, CompactForm::low_rank, CompactForm::sparse, CompactForm::dense}) {
    const auto n = std::count(forms.begin(), forms.end(), f);
    if (n == 0) continue;
    text += (text.empty() ? "" : ", ") + std::to_string(n) + " " + lmshrink::compact_form_name(f);
  }
  return text;
}

bool is_checkpoint(const std::string& path) {
  return path.size() > 12 && path.compare(path.size() - 12, 12, ".safetensors") == 0;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

int score(const Options& o, const examples::Model& model, const examples::TextCodec& codec) {
  const int context = o.context > 0 ? o.context : model.shape().seq_len;
  const std::vector<int> stream = compress::read_eval_tokens(o.argument, codec);
  for (std::size_t i = 0; i < stream.size(); ++i)
    if (stream[i] < 0 || stream[i] >= model.shape().vocab_size)
      lmshrink::fail<lmshrink::format_error>("lmshrink_run", "'", o.argument, "' token ", i, " is ", stream[i],
                                             "; the model's vocabulary is [0, ", model.shape().vocab_size, ")");
  const int available = int((stream.size() - 1) / std::size_t(context));
  if (available < 1)
    lmshrink::fail<lmshrink::value_error>("lmshrink_run", "'", o.argument, "' has ", stream.size(),
                                          " tokens; one window of --context ", context, " needs ", context + 1);
  const int windows = o.windows > 0 ? std::min(o.windows, available) : available;
  std::unique_ptr<examples::Packed> packed;
  if (o.compact) packed = pack(o, model);
  const compress::Score s = compress::evaluate(packed ? compress::decoders_of(*packed) : compress::decoders_of(model),
                                               stream, windows, context, o.threads);
  std::printf("%s: NLL %.6f, perplexity %.4f, top-1 %.4f over %ld tokens (%d windows of %d)\n", o.argument.c_str(),
              s.nll, s.ppl, s.top1, s.tokens, windows, context);
  return 0;
}

int generate(const Options& o, const examples::Model& model, const examples::TextCodec& codec) {
  const int context = std::min(o.context > 0 ? o.context : model.shape().seq_len, model.shape().seq_len);
  std::vector<int> ids = codec.encode_story(o.argument);
  if (int(ids.size()) >= context)
    lmshrink::fail<lmshrink::value_error>("lmshrink_run", "the prompt is ", ids.size(), " tokens; the context holds ", context);
  std::unique_ptr<examples::Packed> packed;
  std::unique_ptr<examples::Decoder> dec;
  if (o.compact) {
    packed = pack(o, model);
    dec = packed->decoder();
  } else {
    dec = model.decoder();
  }
  lmshrink::models::Sampler sampler(model.shape().vocab_size, {o.temperature, o.top_p, o.seed});
  std::string shown = codec.decode(ids);
  std::fputs(shown.c_str(), stdout);
  std::fflush(stdout);
  // The prompt's tokens are fed one by one (the decoder's cache), then each sampled token.
  const int prompt = int(ids.size());
  for (int pos = 0; pos < context && pos < prompt - 1 + o.max_tokens; ++pos) {
    const Eigen::VectorXf& logits = dec->forward_token(ids[std::size_t(pos)], pos);
    if (pos + 1 < prompt) continue;
    const int next = sampler.sample(logits);
    if (next == codec.story_end()) break;
    ids.push_back(next);
    const std::string text = codec.decode(ids);  // whole text: pieces and bytes decode in context
    if (text.size() > shown.size() && text.compare(0, shown.size(), shown) == 0) {
      std::fputs(text.c_str() + shown.size(), stdout);
      std::fflush(stdout);
      shown = text;
    } else if (text != shown) {
      shown = text;  // a decoder that rewrote earlier text (never for these tokenizers)
    }
  }
  std::fputc('\n', stdout);
  return 0;
}

int bench(const Options& o, const examples::Model& model) {
  const int context = std::min(o.context > 0 ? o.context : model.shape().seq_len, model.shape().seq_len);
  if (o.prompt_tokens + o.tokens > context)
    lmshrink::fail<lmshrink::value_error>("lmshrink_run", "--prompt-tokens ", o.prompt_tokens, " + --tokens ", o.tokens,
                                          " exceed the context ", context);
  std::vector<int> prompt(std::size_t(o.prompt_tokens));
  for (std::size_t i = 0; i < prompt.size(); ++i) prompt[i] = int((i * 7919 + 1) % std::size_t(model.shape().vocab_size));
  const std::unique_ptr<examples::Packed> packed = pack(o, model);
  struct Row {
    const char* name;
    compress::DecoderFactory decoders;
    double prompt_rate = 0, generation_rate = 0;
  };
  Row rows[] = {{"own layers", compress::decoders_of(model)}, {"compact", compress::decoders_of(*packed)}};
  std::vector<std::vector<double>> rates(4);  // per form: prompt, generation
  for (int r = 0; r < o.repeats; ++r)
    for (Row& row : rows) {  // interleaved, so that both see the same machine
      const std::unique_ptr<examples::Decoder> dec = row.decoders();
      const auto t0 = std::chrono::steady_clock::now();
      dec->forward_sequence(prompt.data(), o.prompt_tokens);
      const auto t1 = std::chrono::steady_clock::now();
      int token = prompt.back();
      for (int i = 0; i < o.tokens; ++i) {
        Eigen::Index next = 0;
        dec->forward_token(token, o.prompt_tokens + i).maxCoeff(&next);
        token = int(next);
      }
      const auto t2 = std::chrono::steady_clock::now();
      const std::size_t k = std::size_t(&row - rows) * 2;
      rates[k].push_back(o.prompt_tokens / std::chrono::duration<double>(t1 - t0).count());
      rates[k + 1].push_back(o.tokens / std::chrono::duration<double>(t2 - t1).count());
      if (r + 1 == o.repeats) {
        row.prompt_rate = median(rates[k]);
        row.generation_rate = median(rates[k + 1]);
      }
    }
  std::printf("%d-token prompt, %d generated tokens (greedy, after the prompt), 1 thread, median of %d runs\n",
              o.prompt_tokens, o.tokens, o.repeats);
  std::printf("| form | prompt tokens/s | generation tokens/s | parameters |\n| --- | --- | --- | --- |\n");
  for (const Row& row : rows)
    std::printf("| %s | %.1f | %.1f | %lld |\n", row.name, row.prompt_rate, row.generation_rate,
                static_cast<long long>(&row == rows ? model.parameters() : packed->parameters()));
  std::printf("compact / own layers: %.2fx prompt, %.2fx generation\n", rows[1].prompt_rate / rows[0].prompt_rate,
              rows[1].generation_rate / rows[0].generation_rate);
  std::printf("compact linear layers (--pack %s): %s\n", o.timed_pack ? "timed" : "modelled", form_counts(*packed).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  // --threads is the parallelism (windows, or each product's team). Eigen's own OpenMP threads
  // would change the last digits of a score with OMP_NUM_THREADS; lmshrink_compress sets the same.
  Eigen::setNbThreads(1);
  try {
    const std::unique_ptr<examples::Model> model =
        is_checkpoint(o.model) ? examples::load_checkpoint(o.model) : examples::load_model(o.model);
    const std::unique_ptr<examples::TextCodec> loaded = examples::load_codec(*model, o.model, o.tokenizer);
    std::unique_ptr<examples::TextCodec> parsing;  // --parse-special
    if (o.parse_special) parsing = std::make_unique<lmshrink::models::SpecialTokenCodec>(*loaded);
    const examples::TextCodec& codec = parsing ? *parsing : *loaded;
    const examples::ModelShape& c = model->shape();
    std::fprintf(stderr, "%s (%s, dim %d, %d layers, vocab %d, context %d, %lld parameters); tokenizer: %s\n",
                 o.model.c_str(), model->family().c_str(), c.dim, c.n_layers, c.vocab_size, c.seq_len,
                 static_cast<long long>(model->parameters()), codec.description().c_str());
    if (o.command == "score") return score(o, *model, codec);
    if (o.command == "generate") return generate(o, *model, codec);
    return bench(o, *model);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
