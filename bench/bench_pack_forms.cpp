// The cost model of PackForm::fastest (lmshrink::compact_form_cost) against measured time.
//
// For layers of stories260K's and GPT-2 small's shapes, batch 1, 8, 64 and 512, one thread, it
// times the dense packed layer and compact forms of several sizes: low rank alone, kept rows
// alone, CSR alone, low rank + kept rows. For each form it compares the measured time over the
// dense one's with the modelled cost over the dense cost, and counts the choices the model gets
// wrong: a form chosen (modelled no dearer than dense) that measured slower than dense, and a
// form refused that measured faster. The report also packs each layer with PackForm::timed (its
// own timing, after the benchmarks) and counts that choice's errors against the same measurements.
//
//   bench_pack_forms [--report=DIR] [benchmark options]
// `--report=DIR` writes DIR/pack_forms.md: every form's measured and modelled ratios, and the
// wrong choices (docs/compact.md quotes it).

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include <lmshrink/compact.hpp>
#include <lmshrink/random.hpp>

#include "bench_context.hpp"
#include "bench_random.hpp"

using lmshrink::Index;
using Matrix = lmshrink::RowMatrix<float>;
using Layer = lmshrink::LowRankSparseLinear<float>;

namespace {

struct Shape {
  Index out, in;
};
const Shape kShapes[] = {{64, 64}, {32, 64}, {172, 64}, {64, 172}, {768, 768}, {3072, 768}, {768, 3072}};
const Index kBatches[] = {1, 8, 64, 512};

// One form of a layer: rank, kept rows, CSR entries (entries < 0: rows format).
struct Form {
  std::string name;
  Index rank, kept, entries;
};

std::vector<Form> forms_of(Shape s) {
  const Index n = s.out * s.in, r = std::max<Index>(1, n / 8 / (s.out + s.in));
  std::vector<Form> f = {{"dense", 0, s.out, -1}};
  for (Index k : {Index(1), r, 2 * r}) f.push_back({"lowrank_r" + std::to_string(k), k, 0, -1});
  for (int pct : {10, 30, 60}) {
    const Index kept = Index(double(pct) / 100 * double(s.out) + 0.5);
    f.push_back({"rows_" + std::to_string(kept), 0, kept, -1});
  }
  for (int permille : {30, 100, 300}) {
    const Index entries = Index(double(permille) / 1000 * double(n));
    f.push_back({"csr_" + std::to_string(entries), 0, 0, entries});
  }
  f.push_back({"lowrank_r" + std::to_string(r) + "+rows_" + std::to_string(s.out / 4), r, s.out / 4, -1});
  return f;
}

Matrix random(Index r, Index c, std::uint64_t seed) { return bench::random_normal(r, c, seed); }
using bench::pick;

Layer make_layer(Shape s, const Form& f) {
  Layer layer(s.out, s.in, f.rank, true);
  if (f.rank > 0) {
    layer.U() = random(s.out, f.rank, 1);
    layer.V() = random(f.rank, s.in, 2);
  }
  layer.S() = random(s.out, s.in, 3);
  layer.bias() = random(s.out, 1, 4);
  if (f.entries >= 0) {
    lmshrink::ElementMask m = lmshrink::ElementMask::Zero(s.out, s.in);
    for (Index e : pick(s.out * s.in, f.entries, 5)) m.data()[e] = 1;
    layer.set_element_mask(m);
  } else {
    lmshrink::RowMask m = lmshrink::RowMask::Zero(s.out);
    for (Index i : pick(s.out, f.kept, 6)) m[i] = 1;
    layer.set_row_mask(m);
  }
  return layer;
}

std::string key(Shape s, Index batch, const std::string& form) {
  return std::to_string(s.out) + "x" + std::to_string(s.in) + "/batch:" + std::to_string(batch) + "/" + form;
}

void bench_form(benchmark::State& state, Shape s, Form f, Index batch) {
  lmshrink::PackOptions o;
  o.format = f.entries >= 0 ? lmshrink::SparseFormat::csr : lmshrink::SparseFormat::rows;
  const auto c = lmshrink::CompactLinear<float>::pack(make_layer(s, f), o);
  const Matrix x = random(batch, s.in, 7);
  Matrix y(batch, s.out);
  auto ws = c.make_workspace(batch);
  for (auto _ : state) {
    c.forward(x, y, ws);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.counters["ns_per_token"] = benchmark::Counter(double(batch), benchmark::Counter::kIsIterationInvariantRate |
                                                                         benchmark::Counter::kInvert);
  state.counters["modelled"] = lmshrink::compact_form_cost(f.rank, s.out, s.in, f.entries >= 0 ? 0 : f.kept,
                                                           std::max<Index>(f.entries, 0), batch);
}

void write_report(const std::string& dir, const std::map<std::string, double>& seconds) {
  std::filesystem::create_directories(dir);
  std::ofstream md(dir + "/pack_forms.md");
  md << "| W (out, in) | batch | form | measured / dense | modelled / dense | choice | timed choice |\n"
        "| --- | --- | --- | --- | --- | --- | --- |\n";
  int chosen_slower = 0, refused_faster = 0, total = 0;
  int timed_slower = 0, timed_refused = 0, timed_other = 0;
  for (const Shape& s : kShapes)
    for (Index batch : kBatches) {
      const auto dense = seconds.find(key(s, batch, "dense"));
      if (dense == seconds.end()) continue;
      const double dense_cost = lmshrink::compact_form_cost(0, s.out, s.in, s.out, 0, batch);
      for (const Form& f : forms_of(s)) {
        if (f.name == "dense") continue;
        const auto t = seconds.find(key(s, batch, f.name));
        if (t == seconds.end()) continue;
        const double measured = t->second / dense->second;
        const double modelled = lmshrink::compact_form_cost(f.rank, s.out, s.in, f.entries >= 0 ? 0 : f.kept,
                                                            std::max<Index>(f.entries, 0), batch) / dense_cost;
        const bool chosen = modelled <= 1;
        std::string verdict = chosen ? "kept" : "dense";
        if (chosen && measured > 1) verdict += " (**slower than dense**)", ++chosen_slower;
        if (!chosen && measured < 1) verdict += " (faster refused)", ++refused_faster;
        ++total;
        // PackForm::timed on the same layer: the benchmarked form (its format) or dense; CSR
        // layers may also go to rows with zeros, which this table did not measure.
        lmshrink::PackOptions timed;
        timed.form = lmshrink::PackForm::timed;
        timed.batch = batch;
        lmshrink::PackChoice choice;
        const auto layer = make_layer(s, f);
        lmshrink::pack_fastest_of(layer, timed, [](const std::vector<const lmshrink::CompactLinear<float>*>& c, Index b) {
          return lmshrink::time_compact_forms(c, b, lmshrink::PackOptions().timing_repeats);
        }, &choice);
        const auto bench_format = f.entries >= 0 ? lmshrink::SparseFormat::csr : lmshrink::SparseFormat::rows;
        std::string timed_verdict;
        if (choice.densified) {
          timed_verdict = "dense";
          if (measured < 1) timed_verdict += " (faster refused)", ++timed_refused;
        } else if (choice.format == bench_format) {
          timed_verdict = "kept";
          if (measured > 1) timed_verdict += " (**slower than dense**)", ++timed_slower;
        } else {
          timed_verdict = "rows", ++timed_other;
        }
        char line[320];
        std::snprintf(line, sizeof line, "| %ldx%ld | %ld | %s | %.2f | %.2f | %s | %s |\n", long(s.out), long(s.in),
                      long(batch), f.name.c_str(), measured, modelled, verdict.c_str(), timed_verdict.c_str());
        md << line;
      }
    }
  md << "\nOf " << total << " forms: " << chosen_slower << " chosen that measured slower than dense, "
     << refused_faster << " refused that measured faster (modelled); timed: " << timed_slower << " and "
     << timed_refused << " (" << timed_other << " CSR layers timed fastest in rows).\n";
  std::printf("\n%s/pack_forms.md: of %d forms, %d chosen that measured slower than dense, %d refused that "
              "measured faster; timed choice: %d and %d (%d CSR layers in rows)\n", dir.c_str(), total, chosen_slower,
              refused_faster, timed_slower, timed_refused, timed_other);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string report = bench::take_report_dir(argc, argv);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  bench::add_build_context();
  for (const Shape& s : kShapes)
    for (Index batch : kBatches)
      for (const Form& f : forms_of(s))
        benchmark::RegisterBenchmark(key(s, batch, f.name).c_str(), bench_form, s, f, batch)
            ->Unit(benchmark::kMicrosecond);
  bench::MedianCollector collector([](const benchmark::BenchmarkReporter::Run& run, double& v) {
    if (run.error_occurred) return false;
    v = run.GetAdjustedRealTime();
    return true;
  });
  benchmark::RunSpecifiedBenchmarks(&collector);
  if (!report.empty()) write_report(report, collector.values);
  benchmark::Shutdown();
  return 0;
}
