// The training step in the user's own loop: one real stories260K weight is replaced by a
// LowRankSparseLinear (ρ = 0.25 low-rank part, S holding the rest) and fine-tuned to reproduce
// the dense layer's outputs after S has been cut to its largest rows.
//
//   lmshrink_training_step [--model stories260K.bin] [--steps 200]

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <lmshrink/lmshrink.hpp>
#include <string>
#include <lmshrink/models/llama/llama2c.hpp>

#ifndef LMSHRINK_DATA_DIR
#define LMSHRINK_DATA_DIR "examples/data"
#endif

using Matrix = lmshrink::RowMatrix<float>;

// Squared error summed over features, averaged over tokens; writes dL/dy.
static float mse_loss(const Matrix& y, const Matrix& target, Matrix& dy) {
  const float tokens = static_cast<float>(y.rows());
  dy = (y - target) * (2.0f / tokens);
  return (y - target).squaredNorm() / tokens;
}

static void sgd_step(lmshrink::LowRankSparseLinear<float>& layer,
                     const lmshrink::LowRankSparseLinear<float>::Gradients& g, float lr) {
  layer.U() -= lr * g.U;
  layer.V() -= lr * g.V;
  layer.S() -= lr * g.S;  // pruned entries have zero gradient and stay zero
}

int main(int argc, char** argv) {
  std::string model_path = LMSHRINK_DATA_DIR "/stories260K.bin";
  int steps = 200;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--model") && i + 1 < argc) model_path = argv[++i];
    else if (!std::strcmp(argv[i], "--steps") && i + 1 < argc) steps = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: %s [--model PATH] [--steps N]\n", argv[0]);
      return 2;
    }
  }
  try {
    // --8<-- [setup]
    auto model = lmshrink::models::llama::read_llama2c(model_path);
    const Matrix& w = model.w1[0];  // (172, 64): FFN gate of the first block
    lmshrink::LowRankSparseLinear<float> layer;
    lmshrink::SvdInitOptions opt;
    opt.ratio = 0.25;                 // r = ceil(ρ·out·in/(out + in))
    const auto init = lmshrink::svd_init<float>(w, layer, opt);  // U·V + S = W
    // --8<-- [setup]

    // Keep the 25 % of S's rows with the largest norm (a stand-in for the pruner).
    const Eigen::VectorXf row_norms = layer.S().rowwise().norm();
    Eigen::VectorXf sorted = row_norms;
    std::sort(sorted.data(), sorted.data() + sorted.size());
    const float cut = sorted[static_cast<Eigen::Index>(0.75 * (sorted.size() - 1))];
    lmshrink::RowMask keep = (row_norms.array() >= cut).cast<std::uint8_t>();
    layer.set_row_mask(keep);
    std::printf("w1[0] %ldx%ld -> rank %ld (‖W−UV‖/‖W‖ = %.3f), %ld of %ld rows of S kept: "
                "%ld of %ld parameters\n",
                static_cast<long>(w.rows()), static_cast<long>(w.cols()),
                static_cast<long>(init.rank), init.relative_error,
                static_cast<long>(layer.live_rows()), static_cast<long>(w.rows()),
                static_cast<long>(layer.live_parameters()),
                static_cast<long>(layer.dense_parameters()));

    const Eigen::Index tokens = 64;
    auto cache = layer.make_cache(tokens);
    auto grads = layer.make_gradients();
    Matrix y(tokens, w.rows()), dy(tokens, w.rows());
    lmshrink::SplitMix64 rng(7);
    // A fixed held-out batch measures the fit before and after training.
    Matrix x_eval(256, w.cols()), y_eval(256, w.rows()), dy_eval(256, w.rows());
    for (Eigen::Index i = 0; i < x_eval.size(); ++i)
      x_eval.data()[i] = static_cast<float>(rng.normal());
    const Matrix target_eval = x_eval * w.transpose();
    auto eval_cache = layer.make_cache(256);
    const auto held_out = [&] {
      layer.forward(x_eval, y_eval, eval_cache);
      return mse_loss(y_eval, target_eval, dy_eval);
    };
    const float before = held_out();
    for (int step = 0; step < steps; ++step) {
      Matrix x(tokens, w.cols());
      for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.normal());
      const Matrix target = x * w.transpose();  // the dense layer's output
      // --8<-- [training-step]
      layer.forward(x, y, cache);
      const float loss = mse_loss(y, target, dy);  // any loss: its value and dL/dy
      grads.set_zero();
      layer.backward(x, dy, cache, grads);         // accumulates into grads
      sgd_step(layer, grads, 0.01f);               // the trainer's own optimizer
      // --8<-- [training-step]
      if (step % 50 == 0 || step == steps - 1) std::printf("step %4d  loss %.5f\n", step, loss);
    }
    const float after = held_out();
    std::printf("held-out loss %.4f -> %.4f (%.1f %% lower)\n", before, after,
                100.0 * (1.0 - after / before));
    return after < before ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
