// lmshrink_scaling_plot: NLL against training tokens per student, from several
// lmshrink_compress runs that differ in --tokens (docs/scaling.md).
//
//   lmshrink_scaling_plot --out scaling.svg 327680=out/t0 1048576=out/t1 3145728=out/t2
//
// Each TOKENS=DIR reads DIR/results.csv (a budget may name several runs); --ratios 0.7,0.5
// keeps those ratios' students (and the ratio-free ones). The plot has one series per method
// and ratio; the table (stdout, markdown) has one row per series and one column per budget.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "cli/svg_plot.hpp"

namespace {

// One CSV record, with RFC 4180 quoting (the job quotes paths and samples).
std::vector<std::string> csv_fields(std::istream& in) {
  std::vector<std::string> fields(1);
  bool quoted = false;
  char c;
  while (in.get(c)) {
    if (quoted) {
      if (c == '"') {
        if (in.peek() == '"') fields.back() += char(in.get());
        else quoted = false;
      } else {
        fields.back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      fields.emplace_back();
    } else if (c == '\n') {
      return fields;
    } else if (c != '\r') {
      fields.back() += c;
    }
  }
  if (quoted) throw std::runtime_error("a quoted field runs to the end of the file");
  return fields.size() == 1 && fields[0].empty() ? std::vector<std::string>{} : fields;
}

struct Point {
  double tokens, nll;
};

[[noreturn]] void usage(const std::string& why) {
  throw std::invalid_argument(why +
                              "\nusage: lmshrink_scaling_plot [--out FILE.svg] [--metric heldout|validation] "
                              "[--ratios LIST] TOKENS=DIR...");
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string out = "scaling.svg", metric = "heldout", ratios;
    std::vector<std::pair<double, std::string>> runs;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--out" || a == "--metric" || a == "--ratios") {
        if (i + 1 >= argc) usage(a + " needs a value");
        (a == "--out" ? out : a == "--metric" ? metric : ratios) = argv[++i];
      } else {
        const auto eq = a.find('=');
        if (eq == std::string::npos) usage("expected TOKENS=DIR, got '" + a + "'");
        char* end = nullptr;
        const double tokens = std::strtod(a.c_str(), &end);
        if (end != a.c_str() + eq || !(tokens > 0)) usage("TOKENS must be a positive number, got '" + a.substr(0, eq) + "'");
        runs.push_back({tokens, a.substr(eq + 1)});
      }
    }
    std::vector<double> keep_ratios;
    for (std::size_t at = 0; !ratios.empty() && at <= ratios.size();) {
      const std::size_t comma = std::min(ratios.find(',', at), ratios.size());
      const std::string item = ratios.substr(at, comma - at);
      char* end = nullptr;
      const double r = std::strtod(item.c_str(), &end);
      if (item.empty() || end != item.c_str() + item.size() || !(r > 0 && r < 1))
        usage("--ratios takes ratios in (0, 1), got '" + item + "'");
      keep_ratios.push_back(r);
      at = comma + 1;
    }
    if (metric != "heldout" && metric != "validation") usage("--metric must be heldout or validation, got '" + metric + "'");
    if (runs.empty()) usage("no runs given");
    const std::string column = metric == "heldout" ? "nll" : "val_nll";
    std::map<std::string, std::vector<Point>> series;  // "method ratio" → points
    std::set<double> budgets;
    for (const auto& [tokens, dir] : runs) {
      const std::string path = dir + "/results.csv";
      std::ifstream in(path);
      if (!in) throw std::runtime_error("cannot open '" + path + "'");
      const auto header = csv_fields(in);
      std::size_t method = header.size(), ratio = header.size(), value = header.size();
      for (std::size_t c = 0; c < header.size(); ++c) {
        if (header[c] == "method") method = c;
        if (header[c] == "ratio") ratio = c;
        if (header[c] == column) value = c;
      }
      if (method == header.size() || ratio == header.size() || value == header.size())
        throw std::runtime_error("'" + path + "' has no method, ratio and " + column + " columns");
      budgets.insert(tokens);
      for (auto row = csv_fields(in); !row.empty(); row = csv_fields(in)) {
        if (row.size() != header.size())
          throw std::runtime_error("'" + path + "': a row has " + std::to_string(row.size()) + " fields, the header " +
                                   std::to_string(header.size()));
        if (row[method] == "teacher" || row[value].empty()) continue;
        if (!keep_ratios.empty() && row[ratio] != "-" &&
            std::none_of(keep_ratios.begin(), keep_ratios.end(),
                         [&](double r) { return std::abs(r - std::stod(row[ratio])) < 1e-9; }))
          continue;
        const double nll = std::stod(row[value]);
        if (metric == "heldout" && nll == 0) continue;  // not scored (--no-heldout)
        series[row[method] + (row[ratio] == "-" ? "" : " " + row[ratio])].push_back({tokens, nll});
      }
    }
    examples::Plot plot;
    plot.title = std::string(metric == "heldout" ? "Held-out" : "Validation") + " NLL against training tokens per student";
    plot.x_label = "training tokens per student";
    plot.y_label = metric == "heldout" ? "held-out NLL" : "validation NLL";
    plot.log_x = true;
    const char* colors[] = {"#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#7f7f7f",
                            "#ff7f0e", "#e377c2", "#17becf", "#bcbd22", "#000000", "#aec7e8"};
    std::size_t n = 0;
    std::printf("| student |");
    for (double b : budgets) std::printf(" %.0f |", b);
    std::printf("\n|---|");
    for (std::size_t i = 0; i < budgets.size(); ++i) std::printf("---|");
    std::printf("\n");
    for (auto& [name, points] : series) {
      std::sort(points.begin(), points.end(), [](const Point& a, const Point& b) { return a.tokens < b.tokens; });
      examples::Series s;
      s.label = name;
      s.color = colors[n % (sizeof colors / sizeof colors[0])];
      s.dashed = n >= sizeof colors / sizeof colors[0];
      s.markers = true;
      ++n;
      std::printf("| %s |", name.c_str());
      for (double b : budgets) {
        std::string cell = " ";
        for (const auto& p : points)
          if (p.tokens == b) {
            char buf[32];
            std::snprintf(buf, sizeof buf, " %.4f", p.nll);
            cell = buf;
          }
        std::printf("%s |", cell.c_str());
      }
      std::printf("\n");
      for (const auto& p : points) {
        s.x.push_back(p.tokens);
        s.y.push_back(p.nll);
      }
      plot.series.push_back(s);
    }
    std::ofstream svg(out);
    svg << plot.svg();
    if (!svg.flush()) throw std::runtime_error("cannot write '" + out + "'");
    std::printf("\nwrote %s (%zu series, %zu budgets)\n", out.c_str(), series.size(), budgets.size());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lmshrink_scaling_plot: %s\n", e.what());
    return 1;
  }
}
