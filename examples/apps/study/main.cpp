// lmshrink_study: the seed study ("A Short Study on Compressing Decoder-Based Language Models")
// on a real model, at equal budgets over several seeds (docs/study.md).
//
//   lmshrink_study [--studies blocks,losses,cleaning] [--seeds 3] [lmshrink_compress options]
//
// 1. blocks:   every 3-of-5 subset of the teacher's blocks, plus first-k / last-k / spread for
//              5 → 4 and 5 → 2, each initialised from the teacher's blocks and distilled with
//              the main job's recipe (α·KL + (1 − α)·CE + layer-wise hidden MSE).
// 2. losses:   the best 3-block subset (by validation NLL) and LoSparse at 0.5, trained with each
//              loss of lmshrink/distillation.hpp (compress::kLosses); and, as the table
//              "distilgpt2", DistilGPT-2's recipe (every other block, triple loss) against the
//              first blocks trained on the LM loss alone.
// 3. cleaning: the best 3-block subset on clean teacher text, on the same text polluted like
//              web text (pollution.hpp), and on the polluted text after lmshrink::DocumentFilter,
//              with the same number of training tokens.
// A seed is an independent training stream sampled from the teacher; the validation stream
// (its own seed) chooses the best subset, and the held-out stories are scored for the tables.
// Writes study.md, study.csv (one row per run) and per table two SVG plots to --out: the
// validation curves and the held-out perplexity per arm.
//
// Every option of lmshrink_compress that sets the model, data or budget applies (--tokens or
// --steps, --batch, --length, --lr, --val-windows, --eval-windows, --curve-points, --threads,
// --seed, --val-seed, --out; --keep names the 3-block student when the blocks study does not
// run). --curve-points N: validation NLL N times per student (default 8). --lr-grid A,B,...:
// each arm first trains on seed 0 at every rate of the grid, and all its seeds then train at the
// rate with the lowest validation NLL (without it, every arm trains at --lr / --method-lr).
// Runs that would repeat an earlier run (same method, blocks, loss, stream and rate) reuse it.

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "cli/option_parsing.hpp"
#include "cli/output_dir.hpp"
#include "cli/svg_plot.hpp"
#include "runtime/thread_index.hpp"
#include "runtime/teacher_text.hpp"
#include "apps/compress/compress.hpp"
#include "pollution.hpp"

using namespace compress;

namespace {

constexpr const char* kWhere = "lmshrink_study";

struct StudyOptions {
  std::vector<std::string> studies = {"blocks", "losses", "cleaning"};
  int seeds = 3;
  int curve_points = 8;  // validation NLL this many times per student
  std::vector<double> lr_grid;  // per-arm learning-rate tuning on seed 0; empty = no tuning
};

template <class T>
bool has(const std::vector<T>& v, const T& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

// Takes the study's own options out of argv; the rest are lmshrink_compress's.
StudyOptions take_study_options(int& argc, char** argv) {
  StudyOptions s;
  int out = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--studies" || a == "--seeds" || a == "--curve-points" || a == "--lr-grid") && i + 1 >= argc)
      fail<lmshrink::value_error>(kWhere, a, " needs a value");
    if (a == "--studies") {
      s.studies.clear();
      for (const auto& item : examples::split_list(argv[++i])) {
        if (item != "blocks" && item != "losses" && item != "cleaning")
          fail<lmshrink::value_error>(kWhere, "--studies takes blocks, losses and cleaning, got '", item, "'");
        s.studies.push_back(item);
      }
    } else if (a == "--seeds") {
      s.seeds = int(examples::parse_int(kWhere, a, argv[++i], 1, 100));
    } else if (a == "--curve-points") {
      s.curve_points = int(examples::parse_int(kWhere, a, argv[++i], 0, 1000));
    } else if (a == "--lr-grid") {
      for (const auto& item : examples::split_list(argv[++i])) {
        char* end = nullptr;
        const double lr = std::strtod(item.c_str(), &end);
        if (item.empty() || *end != '\0' || !(lr > 0 && lr < 1))
          fail<lmshrink::value_error>(kWhere, "--lr-grid takes learning rates in (0, 1), got '", item, "'");
        if (has(s.lr_grid, lr)) fail<lmshrink::value_error>(kWhere, "--lr-grid names ", item, " twice");
        s.lr_grid.push_back(lr);
      }
      if (s.lr_grid.empty()) fail<lmshrink::value_error>(kWhere, "--lr-grid needs at least one learning rate");
    } else {
      argv[out++] = argv[i];
    }
  }
  argc = out;
  return s;
}

std::string keep_text(const std::vector<int>& keep) {
  std::string s = "{";
  for (std::size_t i = 0; i < keep.size(); ++i) s += (i ? "," : "") + std::to_string(keep[i]);
  return s + "}";
}

// k of n blocks, evenly spaced from the first to the last (every other block at 3 of 5).
std::vector<int> spread_layers(int n, int k) {
  std::vector<int> keep;
  for (int i = 0; i < k; ++i) keep.push_back(k == 1 ? 0 : int(std::lround(double(i) * (n - 1) / (k - 1))));
  return keep;
}

struct Run {
  std::string table, arm;
  int seed = 0;
  bool tuning = false;  // a learning-rate tuning run (seed 0), not a table row
  Job job;
  Result result;
  std::size_t same_as = SIZE_MAX;  // an earlier run this one repeats exactly
};

// What makes two runs identical (every run is reproducible from its job).
bool same_job(const Job& a, const Job& b) {
  return a.method == b.method && a.ratio == b.ratio && a.keep == b.keep && a.loss == b.loss && a.train == b.train &&
         a.calib == b.calib && a.lr == b.lr;
}

struct Stats {
  double mean = 0, sd = 0;
};

Stats stats(const std::vector<double>& v) {
  Stats s;
  for (double x : v) s.mean += x;
  s.mean /= double(v.size());
  for (double x : v) s.sd += (x - s.mean) * (x - s.mean);
  s.sd = v.size() > 1 ? std::sqrt(s.sd / double(v.size() - 1)) : 0.0;
  return s;
}

std::string pm(const Stats& s, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f ± %.*f", digits, s.mean, digits, s.sd);
  return buf;
}

void write_text(const std::string& path, const std::string& text) {
  lmshrink::write_file_atomically(kWhere, path, [&](std::FILE* f) {
    return std::fwrite(text.data(), 1, text.size(), f) == text.size();
  });
}

// Runs every run[i] for i in [first, runs.size()), one student per thread; a run that repeats
// an earlier one takes its result.
void run_all(std::vector<Run>& runs, std::size_t first, Shared& sh, int threads, const std::string& label) {
  std::vector<std::size_t> todo;
  for (std::size_t j = first; j < runs.size(); ++j) {
    for (std::size_t i = 0; i < j && runs[j].same_as == SIZE_MAX; ++i)
      if (runs[i].same_as == SIZE_MAX && same_job(runs[i].job, runs[j].job)) runs[j].same_as = i;
    if (runs[j].same_as == SIZE_MAX) todo.push_back(j);
  }
  sh.steps_done = 0;
  sh.steps_total = long(todo.size()) * sh.steps;
  sh.status.assign(std::size_t(threads), "");
  examples::Progress bar(label, double(sh.steps_total));
  sh.bar = &bar;
  std::atomic<std::size_t> next{0};
  std::string error;
  std::mutex error_mutex;
#pragma omp parallel num_threads(threads)
  {
    const int worker = examples::thread_index();
    for (std::size_t t; (t = next++) < todo.size();) {
      try {
        {
          std::lock_guard<std::mutex> lock(error_mutex);
          if (!error.empty()) break;
        }
        Run& r = runs[todo[t]];
        r.result = run_job(r.job, sh, worker, 1);
        char line[320];
        std::snprintf(line, sizeof line,
                      "  %-9s %-28s seed %d  lr %-7g  validation NLL %.4f  held-out ppl %.3f  (%.0f s)%s",
                      r.table.c_str(), r.arm.c_str(), r.seed, peak_lr(*sh.opt, r.job), r.result.val_score.nll,
                      r.result.score.ppl, r.result.train_seconds, r.tuning ? "  [lr tuning]" : "");
        bar.print(line);
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (error.empty()) error = e.what();
      }
    }
  }
  if (!error.empty()) throw std::runtime_error(error);
  for (std::size_t j = first; j < runs.size(); ++j)
    if (runs[j].same_as != SIZE_MAX) runs[j].result = runs[runs[j].same_as].result;
  bar.finish(std::to_string(todo.size()) + " runs, " + std::to_string(runs.size() - first - todo.size()) +
             " repeated earlier ones");
}

// The runs of one table (its rows, or its tuning runs), grouped by arm in first-seen order.
std::vector<std::pair<std::string, std::vector<const Run*>>> arms_of(const std::vector<Run>& runs,
                                                                     const std::string& table, bool tuning = false) {
  std::vector<std::pair<std::string, std::vector<const Run*>>> arms;
  for (const auto& r : runs) {
    if (r.table != table || r.tuning != tuning) continue;
    auto it = std::find_if(arms.begin(), arms.end(), [&](const auto& a) { return a.first == r.arm; });
    if (it == arms.end()) arms.push_back({r.arm, {&r}});
    else it->second.push_back(&r);
  }
  return arms;
}

const char* kColors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                         "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#000000", "#aec7e8"};

// Validation NLL against training tokens, the mean over seeds, one line per arm.
std::string curves_svg(const std::vector<Run>& runs, const std::string& table, const std::string& title) {
  examples::Plot plot;
  plot.title = title;
  plot.x_label = "training tokens";
  plot.y_label = "validation NLL (mean over seeds)";
  int color = 0;
  for (const auto& [arm, rs] : arms_of(runs, table)) {
    examples::Series s;
    s.label = arm;
    s.color = kColors[color++ % 12];
    const auto& first = rs.front()->result.curve;
    for (std::size_t i = 0; i < first.size(); ++i) {
      double sum = 0;
      for (const Run* r : rs) sum += r->result.curve[i].second;
      s.x.push_back(double(first[i].first));
      s.y.push_back(sum / double(rs.size()));
    }
    if (!s.x.empty()) plot.series.push_back(s);
  }
  return plot.svg();
}

// Held-out perplexity per arm as horizontal bars (mean over seeds, whisker ± one standard
// deviation), the teacher's as a dashed line.
std::string perplexity_bars_svg(const std::vector<Run>& runs, const std::string& table,
                                const std::string& title, double teacher_ppl) {
  const auto arms = arms_of(runs, table);
  const double left = 190, right = 40, top = 50, bar = 22, gap = 6;
  const double width = 900, pw = width - left - right;
  const double height = top + double(arms.size()) * (bar + gap) + 50;
  std::vector<Stats> st;
  double x1 = teacher_ppl;
  for (const auto& [arm, rs] : arms) {
    std::vector<double> ppl;
    for (const Run* r : rs) ppl.push_back(r->result.score.ppl);
    st.push_back(stats(ppl));
    x1 = std::max(x1, st.back().mean + st.back().sd);
  }
  x1 *= 1.05;
  const auto px = [&](double v) { return left + v / x1 * pw; };
  std::ostringstream o;
  o << "<svg xmlns='http://www.w3.org/2000/svg' width='" << width << "' height='" << height
    << "' font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n"
    << "<text x='" << left + pw / 2 << "' y='28' text-anchor='middle' font-size='16'>" << title << "</text>\n";
  for (std::size_t i = 0; i < arms.size(); ++i) {
    const double y = top + double(i) * (bar + gap);
    const double m = st[i].mean, sd = st[i].sd;
    o << "<text x='" << left - 8 << "' y='" << y + bar * 0.7 << "' text-anchor='end'>" << arms[i].first << "</text>\n"
      << "<rect x='" << left << "' y='" << y << "' width='" << px(m) - left << "' height='" << bar
      << "' fill='" << kColors[0] << "'/>\n"
      << "<line x1='" << px(m - sd) << "' y1='" << y + bar / 2 << "' x2='" << px(m + sd) << "' y2='" << y + bar / 2
      << "' stroke='black'/>\n"
      << "<text x='" << px(m + sd) + 6 << "' y='" << y + bar * 0.7 << "'>" << pm(st[i], 2) << "</text>\n";
  }
  const double bottom = top + double(arms.size()) * (bar + gap);
  o << "<line x1='" << px(teacher_ppl) << "' y1='" << top - 6 << "' x2='" << px(teacher_ppl) << "' y2='" << bottom
    << "' stroke='#d62728' stroke-dasharray='5,4'/>\n<text x='" << px(teacher_ppl) + 4 << "' y='" << bottom + 16
    << "' fill='#d62728'>teacher " << teacher_ppl << "</text>\n"
    << "<text x='" << left + pw / 2 << "' y='" << height - 8
    << "' text-anchor='middle'>held-out perplexity (mean ± sd over seeds)</text>\n</svg>\n";
  return o.str();
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const auto wall0 = std::chrono::steady_clock::now();
    const StudyOptions so = take_study_options(argc, argv);
    Options o = parse(argc, argv);
    if (o.out == "out/compress") o.out = "out/study";
    o.curve_points = so.curve_points;
#ifdef _OPENMP
    const int threads = o.threads > 0 ? o.threads : omp_get_num_procs();
#else
    const int threads = 1;
#endif
    Eigen::setNbThreads(1);

    const std::unique_ptr<lmshrink::models::Model> teacher_model = examples::load_model(o.model);
    lmshrink::models::Model& teacher = *teacher_model;
    const lmshrink::models::ModelShape c = teacher.shape();
    if (c.n_layers != 5)
      fail<lmshrink::value_error>(kWhere, "the study's subsets are of 5 blocks; '", o.model, "' has ", c.n_layers);
    const std::unique_ptr<lmshrink::models::TextCodec> codec = examples::load_codec(teacher, o.model, o.tokenizer);
    if (o.eval.empty()) o.eval = default_eval(*codec);
    const std::vector<int> eval = read_eval_tokens(o.eval, *codec);
    const int eval_len = c.seq_len;
    const int available = int((eval.size() - 1) / std::size_t(eval_len));
    if (available < 1)
      fail<lmshrink::value_error>(kWhere, "'", o.eval, "' has ", eval.size(), " tokens; one window needs ", eval_len + 1);
    const int eval_windows = o.eval_windows > 0 ? std::min(o.eval_windows, available) : available;
    const int length = o.length > 0 ? o.length : c.seq_len;
    const int steps = o.tokens > 0 ? int((o.tokens + std::int64_t(o.batch) * length - 1) / (std::int64_t(o.batch) * length))
                                   : o.steps;
    const int data_windows = o.data_windows > 0 ? o.data_windows : std::max(1, steps * o.batch / 2);
    const std::size_t need = std::size_t(data_windows) * std::size_t(length) + 1;
    examples::prepare_output_directory(kWhere, o.out + "/checkpoints");
    std::printf("lmshrink_study: %s, %d seeds, %d steps x %d x %d tokens (%lld tokens per student), %d threads, output %s\n\n",
                o.model.c_str(), so.seeds, steps, o.batch, length,
                static_cast<long long>(std::int64_t(steps) * o.batch * length), threads, o.out.c_str());

    // Text: per seed a training stream (and, for the cleaning study, its polluted and cleaned
    // versions); one validation stream.
    const bool cleaning = has(so.studies, std::string("cleaning"));
    const std::size_t val_need = std::size_t(o.val_windows) * std::size_t(eval_len) + 1;
    std::vector<std::vector<int>> train(std::size_t(so.seeds)), polluted(train.size()), cleaned(train.size());
    std::vector<Calibration> calib(train.size());
    std::vector<std::string> cleaning_notes(train.size());
    std::vector<int> val;
    {
      examples::Progress bar("generate ", double(so.seeds) * double(cleaning ? 2 * need : need) + double(val_need));
      // Rounds of 16 stories, all kept: the study's streams as its tables were made.
      examples::StoryOptions rounds;
      rounds.round = 16;
      rounds.trim = false;
      const auto val_stories = examples::sample_stories(teacher, *codec, val_need, o.val_seed, threads, {}, nullptr, rounds);
      val = examples::concatenate(val_stories);
      double done = double(val_need);
      for (int s = 0; s < so.seeds; ++s) {
        const std::uint64_t seed = o.seed + 1000u * std::uint64_t(s);
        // Extra stories for the cleaning arms, which drop documents; the first stories are the
        // same in every call (story i draws from its own seeded stream), so the clean stream does
        // not depend on which studies run.
        const std::size_t want = cleaning ? 2 * need : need + need / 4;
        const auto stories = examples::sample_stories(teacher, *codec, want, seed, threads, [&](std::size_t have, std::size_t n) {
          bar.update(done + double(std::min(have, want)), "seed " + std::to_string(s) + ": " + std::to_string(n) + " stories");
        }, nullptr, rounds);
        done += double(want);
        examples::check_disjoint(stories, val_stories);
        // Every stream from text, encoded the same way and cut to the same number of tokens.
        std::vector<std::string> texts;
        for (const auto& st : stories) texts.push_back(codec->decode(st));
        const auto fill = [&](const std::vector<std::string>& d, std::vector<int>& stream,
                              lmshrink::DocumentFilter* filter) {
          for (const auto& doc : d) {
            if (stream.size() >= need) break;
            if (filter && filter->add(doc) != lmshrink::Verdict::keep) continue;
            const auto ids = codec->encode_story(doc);
            stream.insert(stream.end(), ids.begin(), ids.end());
          }
          if (stream.size() < need)
            fail<lmshrink::value_error>(kWhere, "the training text ran out (", stream.size(), " of ", need, " tokens)");
          stream.resize(need);
        };
        fill(texts, train[std::size_t(s)], nullptr);
        if (cleaning) {
          study::PollutionCounts pc;
          const auto docs = study::pollute(texts, seed, &pc);
          fill(docs, polluted[std::size_t(s)], nullptr);
          lmshrink::DocumentFilter filter;
          fill(docs, cleaned[std::size_t(s)], &filter);
          const auto& fc = filter.counts();
          char note[256];
          std::snprintf(note, sizeof note,
                        "polluted: %zu near-duplicates, %zu markup, %zu boilerplate, %zu unchanged of %zu documents; "
                        "the filter saw %llu, kept %llu, dropped %llu duplicates and %llu markup",
                        pc.near_duplicates, pc.markup, pc.boilerplate, pc.unchanged, docs.size(),
                        static_cast<unsigned long long>(fc.seen), static_cast<unsigned long long>(fc.kept),
                        static_cast<unsigned long long>(fc.duplicates), static_cast<unsigned long long>(fc.markup));
          cleaning_notes[std::size_t(s)] = note;
        }
        if (o.whitened && has(so.studies, std::string("losses")))
          calib[std::size_t(s)] = lmshrink::models::collect_calibration(teacher, train[std::size_t(s)], length,
                                                                        std::min(o.calib_windows, data_windows),
                                                                        examples::thread_team(threads));
      }
      bar.finish(std::to_string(so.seeds) + " training streams of " + std::to_string(need) +
                 " tokens, validation " + std::to_string(val.size()) + " tokens");
    }
    const Score teacher_val = evaluate(decoders_of(teacher), val, o.val_windows, eval_len, threads);
    const Score teacher_score = o.heldout ? evaluate(decoders_of(teacher), eval, eval_windows, eval_len, threads) : Score{};
    std::printf("teacher: validation NLL %.4f, held-out perplexity %.4f\n", teacher_val.nll, teacher_score.ppl);

    Shared sh;
    sh.opt = &o;
    sh.teacher = &teacher;
    sh.train = &train[0];
    sh.windows = data_windows;
    sh.length = length;
    sh.eval = &eval;
    sh.eval_windows = eval_windows;
    sh.eval_len = eval_len;
    sh.val = &val;
    sh.val_windows = o.val_windows;
    sh.calib = &calib[0];
    sh.steps = steps;
    sh.codec = codec.get();
    examples::Team one_process;  // the study runs in one process
    sh.team = &one_process;
    sh.out_dir = o.out;  // the study writes in place (its checkpoints are scratch)
    sh.shards = resolve_shards(o, 1);
    // The teacher's outputs for each batch of each stream, kept for every arm and seed that
    // trains on it (--teacher-cache-mb; auto: up to 1 GiB, the study has no memory plan).
    examples::TeacherOutputCache teacher_outputs((o.teacher_cache_mb < 0 ? 1024 : o.teacher_cache_mb) << 20);
    sh.teacher_outputs = &teacher_outputs;

    // An arm is one row of a table: a job trained on every seed's stream (streams[s]).
    struct Arm {
      std::string table, name;
      Job job;
      const std::vector<std::vector<int>>* streams;
    };
    std::vector<Run> runs;
    const auto make_run = [&](const Arm& arm, int s, double lr, bool tuning) {
      Run r{arm.table, arm.name, s, tuning, arm.job, {}};
      r.job.train = &(*arm.streams)[std::size_t(s)];
      r.job.calib = &calib[std::size_t(s)];
      r.job.lr = lr;
      r.job.tag = arm.table + "_" + std::to_string(runs.size());
      return r;
    };
    // Trains every arm on every seed, each at its tuned rate when there is a grid.
    const auto run_arms = [&](const std::vector<Arm>& arms, const std::string& label) {
      std::vector<double> lr(arms.size(), 0.0);
      if (!so.lr_grid.empty()) {
        const std::size_t first = runs.size();
        for (const auto& arm : arms)
          for (double g : so.lr_grid) runs.push_back(make_run(arm, 0, g, true));
        run_all(runs, first, sh, threads, "lr grid  ");
        for (std::size_t a = 0; a < arms.size(); ++a) {
          double best_nll = 1e300;
          for (std::size_t g = 0; g < so.lr_grid.size(); ++g) {
            const double nll = runs[first + a * so.lr_grid.size() + g].result.val_score.nll;
            if (nll < best_nll) best_nll = nll, lr[a] = so.lr_grid[g];
          }
        }
      }
      const std::size_t first = runs.size();
      for (std::size_t a = 0; a < arms.size(); ++a)
        for (int s = 0; s < so.seeds; ++s) runs.push_back(make_run(arms[a], s, lr[a], false));
      run_all(runs, first, sh, threads, label);
    };
    const auto trunc_arm = [&](const std::string& table, const std::string& name, const std::vector<int>& keep,
                               Loss loss) {
      Arm arm{table, name, {}, &train};
      arm.job.method = Method::trunc_kd;
      arm.job.keep = keep;
      arm.job.loss = loss;
      return arm;
    };

    // 1. Which blocks to keep.
    std::vector<int> best = o.keep;  // --keep when the blocks study does not run
    if (has(so.studies, std::string("blocks"))) {
      const std::map<std::string, std::string> named = {
          {keep_text(lmshrink::first_layers(5, 3)), "first-k"},
          {keep_text(lmshrink::last_layers(5, 3)), "last-k"},
          {keep_text(lmshrink::every_other_layer(5)), "every other"}};
      std::vector<std::vector<int>> subsets;
      for (int a = 0; a < 5; ++a)
        for (int b = a + 1; b < 5; ++b)
          for (int d = b + 1; d < 5; ++d) subsets.push_back({a, b, d});
      for (int k : {4, 2})
        for (const auto& keep : {lmshrink::first_layers(5, k), lmshrink::last_layers(5, k), spread_layers(5, k)})
          subsets.push_back(keep);
      std::vector<Arm> arms;
      for (const auto& keep : subsets) {
        std::string name = keep_text(keep);
        const auto it = named.find(name);
        if (it != named.end()) name += " " + it->second;
        else if (keep.size() != 3)
          name += keep == lmshrink::first_layers(5, int(keep.size())) ? " first-k"
                  : keep == lmshrink::last_layers(5, int(keep.size())) ? " last-k" : " spread";
        arms.push_back(trunc_arm("blocks", name, keep, Loss::recipe));
      }
      run_arms(arms, "blocks   ");
      // The best 3-block subset by mean validation NLL (never by held-out text).
      double best_nll = 1e300;
      for (const auto& [arm, rs] : arms_of(runs, "blocks")) {
        if (rs.front()->job.keep.size() != 3) continue;
        std::vector<double> v;
        for (const Run* r : rs) v.push_back(r->result.val_score.nll);
        const double m = stats(v).mean;
        if (m < best_nll) best_nll = m, best = rs.front()->job.keep;
      }
      std::printf("best 3-block subset by validation NLL: %s\n", keep_text(best).c_str());
    }

    // 2. Which distillation loss; 3. what cleaning buys.
    std::vector<Arm> later;
    if (has(so.studies, std::string("losses")))
      for (const auto& each : kLosses) {
        const std::string loss = each.name;
        later.push_back(trunc_arm("losses", "trunc " + keep_text(best) + " " + loss, best, each.loss));
        Arm lp{"losses", "losparse 0.5 " + loss, {}, &train};
        lp.job.method = Method::losparse;
        lp.job.ratio = 0.5;
        lp.job.loss = each.loss;
        later.push_back(lp);
      }
    // The seed paper's headline comparison in miniature: DistilGPT-2's recipe (every other
    // block, triple loss) against a layer-truncated model (the first blocks) trained on the LM
    // loss alone.
    if (has(so.studies, std::string("losses"))) {
      later.push_back(trunc_arm("distilgpt2", keep_text(lmshrink::every_other_layer(5)) + " triple (DistilGPT-2's recipe)",
                                lmshrink::every_other_layer(5), Loss::triple));
      later.push_back(trunc_arm("distilgpt2", keep_text(lmshrink::first_layers(5, 3)) + " lm (truncation, LM loss)",
                                lmshrink::first_layers(5, 3), Loss::lm));
    }
    if (cleaning) {
      later.push_back(trunc_arm("cleaning", "clean", best, Loss::recipe));
      later.push_back(trunc_arm("cleaning", "polluted", best, Loss::recipe));
      later.back().streams = &polluted;
      later.push_back(trunc_arm("cleaning", "polluted, then filtered", best, Loss::recipe));
      later.back().streams = &cleaned;
    }
    if (!later.empty()) run_arms(later, "studies  ");

    // Reports.
    std::ostringstream md, csv;
    csv << "table,arm,purpose,seed,keep,loss,lr,parameters,linear_ratio,val_nll,heldout_nll,heldout_ppl,"
           "train_seconds\n";
    for (const auto& r : runs) {
      char line[512];
      std::snprintf(line, sizeof line, "%s,\"%s\",%s,%d,\"%s\",%s,%g,%lld,%.4f,%.5f,%.5f,%.5f,%.1f\n",
                    r.table.c_str(), r.arm.c_str(), r.tuning ? "lr tuning" : "table", r.seed,
                    keep_text(r.job.keep).c_str(), r.job.loss ? name(*r.job.loss) : "", peak_lr(o, r.job),
                    static_cast<long long>(r.result.parameters),
                    double(r.result.linear_live) / double(r.result.linear_dense), r.result.val_score.nll,
                    r.result.score.nll, r.result.score.ppl, r.result.train_seconds);
      csv << line;
    }
    md << "# lmshrink_study results\n\nModel `" << o.model << "`, " << so.seeds << " seeds, " << steps
       << " steps of " << o.batch << " x " << length << " tokens per student. Teacher: validation NLL "
       << teacher_val.nll << ", held-out perplexity " << teacher_score.ppl
       << ". Mean ± sample standard deviation over seeds.";
    if (!so.lr_grid.empty()) {
      md << " Each arm's learning rate (lr) was chosen from the grid";
      for (double g : so.lr_grid) md << " " << g;
      md << " by seed 0's validation NLL.";
    }
    md << "\n";
    for (const std::string table : {"blocks", "losses", "distilgpt2", "cleaning"}) {
      const auto arms = arms_of(runs, table);
      if (arms.empty()) continue;
      md << "\n## " << table << "\n\n| arm | lr | parameters | validation NLL | held-out NLL | held-out perplexity |\n"
         << "| --- | --- | --- | --- | --- | --- |\n";
      for (const auto& [arm, rs] : arms) {
        std::vector<double> val_nll, nll, ppl;
        for (const Run* r : rs) {
          val_nll.push_back(r->result.val_score.nll);
          nll.push_back(r->result.score.nll);
          ppl.push_back(r->result.score.ppl);
        }
        md << "| " << arm << " | " << peak_lr(o, rs.front()->job) << " | " << rs.front()->result.parameters << " | "
           << pm(stats(val_nll), 4) << " | "
           << pm(stats(nll), 4) << " | " << pm(stats(ppl), 3) << " |\n";
      }
      if (table == "cleaning")
        for (int s = 0; s < so.seeds; ++s) md << "\nSeed " << s << ": " << cleaning_notes[std::size_t(s)] << ".\n";
      const auto tuned = arms_of(runs, table, true);
      if (!tuned.empty()) {
        md << "\nLearning-rate tuning, validation NLL of seed 0 (the chosen rate in bold):\n\n| arm |";
        for (double g : so.lr_grid) md << " " << g << " |";
        md << "\n| --- |";
        for (std::size_t g = 0; g < so.lr_grid.size(); ++g) md << " --- |";
        md << "\n";
        for (const auto& [arm, rs] : tuned) {
          const Run* chosen = *std::min_element(rs.begin(), rs.end(), [](const Run* x, const Run* y) {
            return x->result.val_score.nll < y->result.val_score.nll;
          });
          md << "| " << arm << " |";
          for (const Run* r : rs) {
            char cell[32];
            std::snprintf(cell, sizeof cell, r == chosen ? " **%.4f** |" : " %.4f |", r->result.val_score.nll);
            md << cell;
          }
          md << "\n";
        }
      }
      write_text(o.out + "/curves_" + table + ".svg", curves_svg(runs, table, "lmshrink_study: " + table));
      if (o.heldout)
        write_text(o.out + "/perplexity_" + table + ".svg",
                   perplexity_bars_svg(runs, table, "lmshrink_study: " + table, teacher_score.ppl));
    }
    write_text(o.out + "/study.md", md.str());
    write_text(o.out + "/study.csv", csv.str());
    std::printf("\n%s\nwrote %s/study.md, study.csv and the plots (%.0f s)\n", md.str().c_str(), o.out.c_str(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lmshrink_study: %s\n", e.what());
    return 1;
  }
}
