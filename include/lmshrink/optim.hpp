#pragma once
// Reference optimizers over a LowRankSparseLinear's parameters, mask-aware: pruned entries of S
// (the layer's masks) keep a zero value and zero moments, so nothing regrows. With all-live layer
// masks (the reference pruning mode) they are plain SGD and AdamW (Loshchilov & Hutter).
//
//   lmshrink::AdamW<float> opt(layer, {/*lr=*/1e-3});
//   ... backward ...
//   opt.step(layer, grads);

#include <cmath>

#include "config.hpp"
#include "errors.hpp"
#include "low_rank_sparse_linear.hpp"
#include "types.hpp"

LMSHRINK_NAMESPACE_BEGIN

struct SgdOptions {
  double lr = 1e-2;
  double weight_decay = 0.0;  // decoupled: p ← p − lr·wd·p
};

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;  // decoupled, as AdamW
};

namespace detail {

template <class Layer, class Grads>
void check_grads_match(const char* where, const Layer& layer, const Grads& g) {
  check_shape(where, "grads.U", g.U, layer.U().rows(), layer.U().cols());
  check_shape(where, "grads.V", g.V, layer.V().rows(), layer.V().cols());
  check_shape(where, "grads.S", g.S, layer.S().rows(), layer.S().cols());
  if (g.bias.size() != layer.bias().size())
    fail<shape_error>(where, "grads.bias has ", g.bias.size(), " entries but ",
                      layer.bias().size(), " were expected");
}

/// Throws value_error unless lr > 0, beta1 and beta2 are in [0, 1), eps > 0 and weight_decay >= 0.
inline void check_adamw_options(const char* where, const AdamWOptions& o) {
  if (!(o.lr > 0) || !(o.beta1 >= 0 && o.beta1 < 1) || !(o.beta2 >= 0 && o.beta2 < 1) ||
      !(o.eps > 0) || !(o.weight_decay >= 0))
    fail<value_error>(where, "need lr > 0, beta1 and beta2 in [0, 1), eps > 0 and "
                      "weight_decay >= 0; got lr=", o.lr, " beta1=", o.beta1, " beta2=",
                      o.beta2, " eps=", o.eps, " weight_decay=", o.weight_decay);
}

}  // namespace detail

template <class Scalar_>
class Sgd {
 public:
  using Scalar = Scalar_;
  explicit Sgd(const SgdOptions& options = {}) : options_(options) {
    if (!(options.lr > 0) || !(options.weight_decay >= 0))
      detail::fail<value_error>("Sgd", "lr must be > 0 and weight_decay >= 0, got lr=",
                                options.lr, " weight_decay=", options.weight_decay);
  }
  void set_lr(double lr) { options_.lr = lr; }

  void step(LowRankSparseLinear<Scalar>& layer,
            const typename LowRankSparseLinear<Scalar>::Gradients& g) const {
    detail::check_grads_match("Sgd::step", layer, g);
    const Scalar lr = Scalar(options_.lr), decay = Scalar(1 - options_.lr * options_.weight_decay);
    layer.U() = decay * layer.U() - lr * g.U;
    layer.V() = decay * layer.V() - lr * g.V;
    layer.S() = decay * layer.S() - lr * g.S;
    if (layer.has_bias()) layer.bias() -= lr * g.bias;
    layer.apply_masks();
  }

 private:
  SgdOptions options_;
};

template <class Scalar_>
class AdamW {
 public:
  using Scalar = Scalar_;
  using Matrix = RowMatrix<Scalar>;

  AdamW(const LowRankSparseLinear<Scalar>& layer, const AdamWOptions& options = {})
      : options_(options) {
    detail::check_adamw_options("AdamW", options);
    mU_.setZero(layer.U().rows(), layer.U().cols());
    vU_ = mU_;
    mV_.setZero(layer.V().rows(), layer.V().cols());
    vV_ = mV_;
    mS_.setZero(layer.S().rows(), layer.S().cols());
    vS_ = mS_;
    mb_.setZero(layer.bias().size());
    vb_ = mb_;
  }
  void set_lr(double lr) { options_.lr = lr; }
  Index steps() const { return t_; }
  const Matrix& first_moment_S() const { return mS_; }
  const Matrix& second_moment_S() const { return vS_; }

  void step(LowRankSparseLinear<Scalar>& layer,
            const typename LowRankSparseLinear<Scalar>::Gradients& g) {
    static constexpr const char* where = "AdamW::step";
    detail::check_grads_match(where, layer, g);
    if (mS_.rows() != layer.S().rows() || mS_.cols() != layer.S().cols() ||
        mU_.cols() != layer.rank())
      detail::fail<shape_error>(where, "the optimizer was built for another layer shape");
    ++t_;
    const double bc1 = 1 - std::pow(options_.beta1, static_cast<double>(t_));
    const double bc2 = 1 - std::pow(options_.beta2, static_cast<double>(t_));
    update(layer.U(), g.U, mU_, vU_, bc1, bc2);
    update(layer.V(), g.V, mV_, vV_, bc1, bc2);
    update(layer.S(), g.S, mS_, vS_, bc1, bc2);
    if (layer.has_bias()) update(layer.bias(), g.bias, mb_, vb_, bc1, bc2);
    layer.zero_masked(mS_);
    layer.zero_masked(vS_);
    layer.apply_masks();
  }

 private:
  template <class P, class G, class M>
  void update(P& p, const G& g, M& m, M& v, double bc1, double bc2) const {
    const Scalar b1 = Scalar(options_.beta1), b2 = Scalar(options_.beta2);
    m = b1 * m + (1 - b1) * g;
    v = b2 * v + (1 - b2) * g.cwiseProduct(g);
    p *= Scalar(1 - options_.lr * options_.weight_decay);
    const Scalar step = Scalar(options_.lr / bc1), root_bc2 = Scalar(std::sqrt(bc2));
    p.array() -= step * m.array() / ((v.array().sqrt() / root_bc2) + Scalar(options_.eps));
  }

  AdamWOptions options_;
  Matrix mU_, vU_, mV_, vV_, mS_, vS_;
  Vector<Scalar> mb_, vb_;
  Index t_ = 0;
};

/// AdamW on a plain tensor (an embedding, a norm's gain or bias): the parameters a model has
/// besides its LowRankSparseLinear layers. Moments are sized on the first step; `data` and
/// `grad` hold `size` contiguous values. The moments' coefficients are 1 − β rounded once
/// (Scalar(1 − β1)), and weight decay is skipped when it is 0.
///
///   lmshrink::TensorAdamW<float> opt({/*lr=*/1e-3, 0.9, 0.999, 1e-8, /*weight_decay=*/0});
///   opt.set_lr(lr);  opt.step(embedding.data(), grad.data(), embedding.size());
template <class Scalar_>
class TensorAdamW {
 public:
  using Scalar = Scalar_;
  explicit TensorAdamW(const AdamWOptions& options = {}) : options_(options) {
    detail::check_adamw_options("TensorAdamW", options);
  }
  void set_lr(double lr) {
    if (!(lr > 0)) detail::fail<value_error>("TensorAdamW::set_lr", "lr must be > 0, got ", lr);
    options_.lr = lr;
  }
  Index steps() const { return t_; }

  void step(Scalar* data, const Scalar* grad, Index size) {
    static constexpr const char* where = "TensorAdamW::step";
    if (size < 0 || ((data == nullptr || grad == nullptr) && size > 0))
      detail::fail<value_error>(where, "a tensor of ", size, " values needs non-null data and grad");
    if (t_ == 0) {
      m_.setZero(size);
      v_.setZero(size);
    } else if (m_.size() != size) {
      detail::fail<shape_error>(where, "the tensor has ", size, " values but the optimizer's moments have ",
                                m_.size(), "; one TensorAdamW per tensor");
    }
    ++t_;
    Eigen::Map<Vector<Scalar>> p(data, size);
    Eigen::Map<const Vector<Scalar>> g(grad, size);
    const Scalar b1 = Scalar(options_.beta1), b2 = Scalar(options_.beta2);
    m_ = b1 * m_ + Scalar(1 - options_.beta1) * g;
    v_ = b2 * v_ + Scalar(1 - options_.beta2) * g.cwiseProduct(g);
    if (options_.weight_decay > 0) p *= Scalar(1 - options_.lr * options_.weight_decay);
    const double bc1 = 1 - std::pow(options_.beta1, double(t_)), bc2 = 1 - std::pow(options_.beta2, double(t_));
    p.array() -= Scalar(options_.lr / bc1) * m_.array() /
                 (v_.array().sqrt() / Scalar(std::sqrt(bc2)) + Scalar(options_.eps));
  }

 private:
  AdamWOptions options_;
  Vector<Scalar> m_, v_;
  Index t_ = 0;
};

LMSHRINK_NAMESPACE_END
