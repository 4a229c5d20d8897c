// Singular-value spectra of every weight matrix of a llama2.c model, and how much of each matrix
// a truncated SVD keeps at several parameter ratios ρ (LoSparse's Figure 2, on a real model).
//
//   lmshrink_spectrum [--model stories260K.bin] [--out out/spectrum]
//
// Writes spectra.csv (every singular value), summary.csv (one row per matrix) and spectra.svg.

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <lmshrink/lmshrink.hpp>
#include <map>
#include <string>

#include "cli/output_dir.hpp"
#include "cli/svg_plot.hpp"
#include <lmshrink/models/llama/llama2c.hpp>

#ifndef LMSHRINK_DATA_DIR
#define LMSHRINK_DATA_DIR "examples/data"
#endif

namespace {

const double kRatios[] = {0.05, 0.1, 0.25, 0.5};

std::string kind_of(const std::string& name) { return name.substr(name.rfind('.') + 1); }

int usage(const char* argv0) {
  std::fprintf(stderr, "usage: %s [--model PATH] [--out DIR]\n", argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_path = LMSHRINK_DATA_DIR "/stories260K.bin";
  std::string out_dir = "out/spectrum";
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--model") && i + 1 < argc) model_path = argv[++i];
    else if (!std::strcmp(argv[i], "--out") && i + 1 < argc) out_dir = argv[++i];
    else return usage(argv[0]);
  }

  try {
    auto model = lmshrink::models::llama::read_llama2c(model_path);
    const auto& c = model.config;
    std::printf("%s: dim %d, hidden %d, %d layers, %d heads (%d kv), vocab %d, %lld parameters\n\n",
                model_path.c_str(), c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads,
                c.vocab_size, static_cast<long long>(model.parameter_count()));
    examples::prepare_output_directory("lmshrink_spectrum", out_dir);
    std::ofstream spectra(out_dir + "/spectra.csv"), summary(out_dir + "/summary.csv");
    spectra << "matrix,index,sigma,sigma_over_max,cumulative_energy\n";
    summary << "matrix,out,in,sigma_max,sigma_min,stable_rank,rank_90pct_energy";
    for (double r : kRatios) summary << ",rank_rho" << r << ",rel_error_rho" << r;
    summary << "\n";

    std::printf("%-26s %9s %8s %8s %7s %6s", "matrix", "shape", "σ_max", "σ_min", "stable", "r@90%");
    for (double r : kRatios) std::printf("   ρ=%-4g (r)", r);
    std::printf("\n");

    const std::map<std::string, std::string> colors = {
        {"wq", "#1f77b4"}, {"wk", "#ff7f0e"}, {"wv", "#2ca02c"}, {"wo", "#d62728"},
        {"w1", "#9467bd"}, {"w2", "#8c564b"}, {"w3", "#e377c2"}};
    examples::Plot plot;
    plot.title = "Singular values of the weight matrices of " +
                 std::filesystem::path(model_path).filename().string();
    plot.x_label = "index / min(out, in)";
    plot.y_label = "σ_i / σ_max";
    std::map<std::string, bool> legend_done;
    std::map<std::string, double> mean_error[4];

    for (const auto& w : model.linear_weights()) {
      lmshrink::LowRankSparseLinear<float> layer;
      lmshrink::SvdInitOptions opt;
      opt.ratio = kRatios[0];
      const auto full = lmshrink::svd_init<float>(*w.matrix, layer, opt);
      const Eigen::VectorXd& s = full.singular_values;
      const double total = s.squaredNorm();
      const Eigen::VectorXd s_norm = s / s[0];
      examples::Series series;
      series.label = kind_of(w.name);
      series.color = colors.at(series.label);
      series.in_legend = !legend_done[series.label];
      legend_done[series.label] = true;
      series.width = 1.2;
      double cum = 0;
      for (Eigen::Index i = 0; i < s.size(); ++i) {
        cum += s[i] * s[i];
        spectra << w.name << ',' << i << ',' << s[i] << ',' << s_norm[i] << ',' << cum / total << '\n';
        series.x.push_back(static_cast<double>(i) / static_cast<double>(s.size() - 1));
        series.y.push_back(s_norm[i]);
      }
      plot.series.push_back(series);
      const Eigen::Index r90 = lmshrink::rank_from_energy(s, 0.9);
      const double stable = total / (s[0] * s[0]);
      char shape[32];
      std::snprintf(shape, sizeof shape, "%ldx%ld", static_cast<long>(w.matrix->rows()),
                    static_cast<long>(w.matrix->cols()));
      std::printf("%-26s %9s %8.3f %8.4f %7.2f %6ld", w.name.c_str(), shape, s[0],
                  s[s.size() - 1], stable, static_cast<long>(r90));
      summary << w.name << ',' << w.matrix->rows() << ',' << w.matrix->cols() << ',' << s[0] << ','
              << s[s.size() - 1] << ',' << stable << ',' << r90;
      for (int k = 0; k < 4; ++k) {
        lmshrink::SvdInitOptions o;
        o.ratio = kRatios[k];
        const auto res = lmshrink::svd_init<float>(*w.matrix, layer, o);
        std::printf("   %6.3f (%2ld)", res.relative_error, static_cast<long>(res.rank));
        summary << ',' << res.rank << ',' << res.relative_error;
        mean_error[k][kind_of(w.name)] += res.relative_error / c.n_layers;
      }
      std::printf("\n");
      summary << '\n';
    }

    // Reference: the spectrum of a Gaussian matrix of the FFN shape (no structure at all).
    {
      lmshrink::SplitMix64 rng(42);
      Eigen::MatrixXd g(c.hidden_dim, c.dim);
      for (Eigen::Index i = 0; i < g.size(); ++i) g.data()[i] = rng.normal();
      const Eigen::VectorXd s = lmshrink::singular_values<double>(g);
      examples::Series noise;
      noise.label = "Gaussian noise";
      noise.color = "black";
      noise.dashed = true;
      noise.width = 2.5;
      for (Eigen::Index i = 0; i < s.size(); ++i) {
        noise.x.push_back(static_cast<double>(i) / static_cast<double>(s.size() - 1));
        noise.y.push_back(s[i] / s[0]);
      }
      plot.series.push_back(noise);
    }

    std::printf("\nmean ‖W − U·V‖/‖W‖ over layers, by matrix kind:\n%-6s", "ρ");
    for (const auto& kc : colors) std::printf(" %7s", kc.first.c_str());
    std::printf("\n");
    for (int k = 0; k < 4; ++k) {
      std::printf("%-6g", kRatios[k]);
      for (const auto& kc : colors) std::printf(" %7.3f", mean_error[k][kc.first]);
      std::printf("\n");
    }
    if (!spectra || !summary || !plot.write(out_dir + "/spectra.svg")) {
      std::fprintf(stderr, "error: writing into %s failed\n", out_dir.c_str());
      return 1;
    }
    std::printf("\nwrote %s/spectra.csv, %s/summary.csv and %s/spectra.svg\n", out_dir.c_str(),
                out_dir.c_str(), out_dir.c_str());
  } catch (const lmshrink::error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
