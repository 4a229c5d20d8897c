// Compresses the seven weight matrices of one stories260K block with LoSparse: truncated-SVD
// initialization at ρ, then fine-tuning to reproduce each dense matrix's outputs while the pruner
// (Taylor importance, cubic schedule, one global threshold over the seven matrices) removes rows
// of S down to p_final. Inputs are synthetic Gaussian vectors, not real activations.
//
//   lmshrink_prune_block [--model stories260K.bin] [--layer 0] [--rho 0.2] [--keep 0.2]
//                        [--steps 300] [--mode reference|persistent]

#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <lmshrink/lmshrink.hpp>
#include <string>
#include <vector>
#include <lmshrink/models/llama/llama2c.hpp>

#ifndef LMSHRINK_DATA_DIR
#define LMSHRINK_DATA_DIR "examples/data"
#endif

using Matrix = lmshrink::RowMatrix<float>;
using Layer = lmshrink::LowRankSparseLinear<float>;

enum class Method { losparse, losparse_per_layer, itp, low_rank };

struct Result {
  const char* name;
  double ratio;
  long live;
  double error;  // mean relative output error on a held-out batch
  double compact_error;  // the same through the packed inference form
  double compact_kib;    // bytes the packed layers read per forward (values and indices)
};

// Fits each matrix's outputs with the chosen method and budget; prints progress if verbose.
static Result run(Method method, const std::vector<lmshrink::NamedWeight>& weights,
                  lmshrink::PrunerOptions opt, double rho, bool verbose) {
  const std::size_t n = weights.size();
  const int steps = static_cast<int>(opt.schedule.total_steps);
  std::vector<Layer> layers(n);
  for (std::size_t i = 0; i < n; ++i) {
    const Matrix& w = *weights[i].matrix;
    if (method == Method::itp) {
      layers[i] = lmshrink::make_dense_layer<float>(w);  // prune W itself to ρ + p_final
    } else {
      lmshrink::SvdInitOptions svd;
      svd.ratio = method == Method::low_rank ? std::min(1.0, rho + opt.schedule.final_keep) : rho;
      lmshrink::svd_init<float>(w, layers[i], svd);
      if (method == Method::low_rank) lmshrink::make_low_rank_only(layers[i]);
    }
  }
  if (method == Method::itp) {
    opt.schedule.final_keep = std::min(1.0, rho + opt.schedule.final_keep);
    // The dense layer starts at its own target, so its loss and every Taylor score |W∘∇W| are
    // exactly zero: nothing would ever fall below the threshold. ITP uses magnitude here.
    opt.importance.kind = lmshrink::ImportanceKind::magnitude;
  }
  if (method == Method::losparse_per_layer) opt.scope = lmshrink::ThresholdScope::per_layer;
  std::vector<Layer::Gradients> grads;
  std::vector<Layer::Cache> caches;
  std::vector<lmshrink::AdamW<float>> adams;
  for (std::size_t i = 0; i < n; ++i) {
    grads.push_back(layers[i].make_gradients());
    caches.push_back(layers[i].make_cache(256));
    adams.emplace_back(layers[i], lmshrink::AdamWOptions{2e-3, 0.9, 0.999, 1e-8, 0.0});
  }
  lmshrink::Pruner<float> pruner(opt);
  if (method != Method::low_rank)
    for (std::size_t i = 0; i < n; ++i) pruner.add(weights[i].name, layers[i], grads[i]);

  lmshrink::SplitMix64 rng(2026);
  const auto gaussian = [&](Eigen::Index rows, Eigen::Index cols) {
    Matrix m(rows, cols);
    for (Eigen::Index k = 0; k < m.size(); ++k) m.data()[k] = static_cast<float>(rng.normal());
    return m;
  };
  std::vector<Matrix> x_eval, y_eval;
  for (std::size_t i = 0; i < n; ++i) {
    x_eval.push_back(gaussian(256, weights[i].matrix->cols()));
    y_eval.push_back(x_eval[i] * weights[i].matrix->transpose());
  }
  const auto fit_error = [&] {
    double sum = 0;
    for (std::size_t i = 0; i < n; ++i) {
      Matrix y(256, weights[i].matrix->rows());
      layers[i].forward(x_eval[i], y, caches[i]);
      sum += (y - y_eval[i]).norm() / y_eval[i].norm();
    }
    return sum / static_cast<double>(n);
  };

  if (verbose) {
    std::printf("LoSparse: after SVD init, before pruning: mean relative output error %.4f\n\n",
                fit_error());
    std::printf("%6s %7s %9s", "step", "keep", "fit err");
    for (const auto& w : weights) std::printf(" %7s", w.name.substr(w.name.rfind('.') + 1).c_str());
    std::printf("   (live rows of S)\n");
  }
  for (int g = 0; g < steps; ++g) {
    for (std::size_t i = 0; i < n; ++i) {
      const Matrix x = gaussian(64, weights[i].matrix->cols());
      const Matrix target = x * weights[i].matrix->transpose();
      Matrix y(64, target.cols());
      layers[i].forward(x, y, caches[i]);
      const Matrix dy = (y - target) * (2.0f / 64.0f);
      grads[i].set_zero();
      layers[i].backward(x, dy, caches[i], grads[i]);
      adams[i].step(layers[i], grads[i]);
    }
    if (method == Method::low_rank) continue;
    const auto report = pruner.after_optimizer_step(g);
    const bool cubic_mask = report.masked && g <= steps - opt.schedule.final_warmup;
    if (verbose && (cubic_mask || g == steps - 1)) {
      std::printf("%6d %7.3f %9.4f", g, report.keep, fit_error());
      for (std::size_t i = 0; i < n; ++i) {
        const auto& rows = pruner.row_mask(static_cast<Eigen::Index>(i));
        std::printf(" %3ld/%-3ld", static_cast<long>((rows.array() != 0).count()),
                    static_cast<long>(rows.size()));
      }
      std::printf("\n");
    }
  }
  long live = 0, dense = 0;
  for (std::size_t i = 0; i < n; ++i) {
    // Remaining weights as in the paper: low-rank part plus live S entries (the pruner's masks
    // in reference mode, where S may hold regrown values between mask steps).
    const Layer& l = layers[i];
    long sparse = static_cast<long>(l.live_sparse_entries());
    if (method != Method::low_rank) {
      const auto& rows = pruner.row_mask(static_cast<Eigen::Index>(i));
      sparse = static_cast<long>((rows.array() != 0).count()) * static_cast<long>(l.in_features());
    }
    live += static_cast<long>(l.rank() * (l.out_features() + l.in_features())) + sparse;
    dense += static_cast<long>(l.out_features() * l.in_features());
  }
  // Pack for inference: the pruner's final row masks go onto the layers, and the compact form
  // drops the pruned rows.
  double compact_sum = 0, compact_bytes = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (method != Method::low_rank)
      layers[i].set_row_mask(pruner.row_mask(static_cast<Eigen::Index>(i)));
    // --8<-- [pack]
    const auto compact = lmshrink::CompactLinear<float>::pack(layers[i]);
    auto workspace = compact.make_workspace(256);
    Matrix y(256, compact.out_features());
    compact.forward(x_eval[i], y, workspace);
    // --8<-- [pack]
    compact_sum += (y - y_eval[i]).norm() / y_eval[i].norm();
    compact_bytes += static_cast<double>(compact.weight_bytes());
  }
  const char* names[] = {"LoSparse", "LoSparse, per-layer", "ITP (magnitude)",
                         "low-rank only"};
  return {names[static_cast<int>(method)], static_cast<double>(live) / static_cast<double>(dense),
          live, fit_error(), compact_sum / static_cast<double>(n), compact_bytes / 1024.0};
}

int main(int argc, char** argv) {
  std::string model_path = LMSHRINK_DATA_DIR "/stories260K.bin";
  int block = 0, steps = 300;
  double rho = 0.2, keep = 0.2;
  lmshrink::MaskMode mode = lmshrink::MaskMode::reference;
  for (int i = 1; i < argc; ++i) {
    const bool more = i + 1 < argc;
    if (!std::strcmp(argv[i], "--model") && more) model_path = argv[++i];
    else if (!std::strcmp(argv[i], "--layer") && more) block = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--rho") && more) rho = std::atof(argv[++i]);
    else if (!std::strcmp(argv[i], "--keep") && more) keep = std::atof(argv[++i]);
    else if (!std::strcmp(argv[i], "--steps") && more) steps = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--mode") && more) {
      const std::string m = argv[++i];
      if (m != "reference" && m != "persistent") {
        std::fprintf(stderr, "error: --mode is reference or persistent, got '%s'\n", m.c_str());
        return 2;
      }
      mode = m == "persistent" ? lmshrink::MaskMode::persistent : lmshrink::MaskMode::reference;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--model PATH] [--layer N] [--rho R] [--keep P] [--steps T] "
                   "[--mode reference|persistent]\n", argv[0]);
      return 2;
    }
  }
  try {
    auto model = lmshrink::models::llama::read_llama2c(model_path);
    if (block < 0 || block >= model.config.n_layers)
      throw lmshrink::value_error("[lmshrink.value] prune_block: --layer must be in [0, " +
                                  std::to_string(model.config.n_layers) + "), got " +
                                  std::to_string(block));
    std::vector<lmshrink::NamedWeight> weights;
    for (auto& w : model.linear_weights())
      if (w.name.rfind("layers." + std::to_string(block) + ".", 0) == 0) weights.push_back(w);

    lmshrink::PrunerOptions opt;
    opt.schedule.total_steps = steps;
    opt.schedule.initial_warmup = steps / 10;
    opt.schedule.final_warmup = steps * 3 / 10;
    opt.schedule.final_keep = keep;
    opt.schedule.mask_interval = 10;
    opt.importance.window = 10;
    opt.mode = mode;

    std::printf("block %d of %s: %zu matrices, ρ = %.2f, p_final = %.2f, %d steps, %s masks, "
                "synthetic Gaussian inputs\n\n",
                block, model_path.c_str(), weights.size(), rho, keep, steps,
                mode == lmshrink::MaskMode::persistent ? "persistent" : "reference");
    const Result losparse = run(Method::losparse, weights, opt, rho, true);
    // The baselines at the same budget ρ + p_final, with the same steps and optimizer.
    const Result per_layer = run(Method::losparse_per_layer, weights, opt, rho, false);
    const Result itp = run(Method::itp, weights, opt, rho, false);
    const Result low_rank = run(Method::low_rank, weights, opt, rho, false);
    double dense_kib = 0;
    for (const auto& w : weights) dense_kib += 4.0 * double(w.matrix->size()) / 1024.0;
    std::printf("\n%-20s %10s %8s %14s %14s %12s\n", "method", "remaining", "params",
                "output error", "packed error", "packed KiB");
    for (const auto* r : {&losparse, &per_layer, &itp, &low_rank})
      std::printf("%-20s %10.3f %8ld %14.4f %14.4f %12.1f\n", r->name, r->ratio,
                  static_cast<long>(r->live), r->error, r->compact_error, r->compact_kib);
    std::printf("%-20s %10.3f %8s %14s %14s %12.1f\n", "dense", 1.0, "", "", "", dense_kib);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
