// lmshrink_compress: building, training, pruning and packing one student.
#include <lmshrink/io/hf_directory.hpp>
#include <exception>
#include <filesystem>
#include <fstream>

#include "runtime/sharded_trainer.hpp"
#include <lmshrink/files.hpp>

#include "compress.hpp"
#include "training.hpp"

namespace compress {

std::string job_name(const Job& j) {
  if (!info(j.method).has_ratio) return name(j.method);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s %.2g", label(j).c_str(), j.ratio);
  return buf;
}

std::string file_stem(const Job& j) {
  if (!j.tag.empty()) return j.tag;
  if (!info(j.method).has_ratio) return name(j.method);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s_%.2f", label(j).c_str(), j.ratio);
  return buf;
}

namespace {

// Ranks whose low-rank parameters Σ r·(out + in) come closest to ρ·Σ out·in from below: the
// floor of each layer's ρ·out·in/(out + in), then one more rank for the layers with the largest
// remainders while the budget allows. (The per-layer ceil of the reference overshoots a 35-layer
// model's budget by 2 %.)
std::vector<int> ranks_for_budget(const lmshrink::models::Model& w, double rho) {
  std::vector<int> ranks;
  std::vector<std::pair<double, std::size_t>> remainder;
  double budget = 0, used = 0;
  const int K = w.linear_kinds();
  for (int l = 0; l < w.shape().n_layers; ++l)
    for (int k = 0; k < K; ++k) {
      const auto& layer = w.linear(l, k);
      const double out = double(layer.out_features()), in = double(layer.in_features());
      const double exact = rho * out * in / (out + in);
      const int r = std::max(1, int(std::floor(exact)));
      ranks.push_back(r);
      remainder.push_back({exact - r, ranks.size() - 1});
      budget += rho * out * in;
      used += r * (out + in);
    }
  std::stable_sort(remainder.begin(), remainder.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  for (const auto& [rest, i] : remainder) {
    const auto& layer = w.linear(int(i) / K, int(i) % K);
    const double cost = double(layer.out_features() + layer.in_features());
    if (rest > 0 && used + cost <= budget && ranks[i] < std::min(layer.out_features(), layer.in_features())) {
      ++ranks[i];
      used += cost;
    }
  }
  return ranks;
}

void set_lr(std::vector<std::vector<lmshrink::AdamW<float>>>& opt, double lr) {
  for (auto& block : opt)
    for (auto& o : block) o.set_lr(lr);
}

}  // namespace

double peak_lr(const Options& o, const Job& job) {
  if (job.lr > 0) return job.lr;
  for (const auto& [m, lr] : o.method_lr)
    if (m == job.method) return lr;
  return o.lr;
}

void reconstruct_sequentially(lmshrink::models::Model& teacher, lmshrink::models::Model& student, const std::vector<int>& train,
                              int length, int windows, double damping, const LayerFit& fit) {
  const int L = student.shape().n_layers, K = student.linear_kinds();
  const auto snet = student.net(1, length, lmshrink::models::NetMode::forward_only);
  const auto tnet = teacher.net(1, length, lmshrink::models::NetMode::forward_only);
  const auto window = [&](int win) { return train.data() + std::size_t(win) * std::size_t(length); };
  snet->forward(window(0));
  for (int l = 0; l < L; ++l) {
    // The block's stages in forward order: layers that read the same input are one stage
    // (Llama: wq wk wv | wo | w1 w3 | w2), each fitted once the stages before it are final.
    std::vector<std::vector<int>> stages;
    std::vector<const void*> inputs;
    for (int k = 0; k < K; ++k) {
      const void* in = &snet->linear_input(l, k);
      const auto at = std::find(inputs.begin(), inputs.end(), in);
      if (at == inputs.end()) {
        inputs.push_back(in);
        stages.push_back({k});
      } else {
        stages[std::size_t(at - inputs.begin())].push_back(k);
      }
    }
    for (const auto& stage : stages) {
      std::vector<lmshrink::InputPairAccumulator> pairs(stage.size());
      for (std::size_t i = 0; i < stage.size(); ++i) pairs[i].reset(student.linear(l, stage[i]).in_features());
      for (int win = 0; win < windows; ++win) {
        snet->forward(window(win));
        tnet->forward(window(win));
        for (std::size_t i = 0; i < stage.size(); ++i)
          pairs[i].add<float>(snet->linear_input(l, stage[i]), tnet->linear_input(l, stage[i]));
      }
      for (std::size_t i = 0; i < stage.size(); ++i) {
        const int k = stage[i];
        fit(l, k, lmshrink::reconstruction_target<float>(teacher.linear(l, k).to_dense(), pairs[i], damping),
            pairs[i].student());
      }
    }
  }
}

namespace {

// ---- The stages of one student (run_job at the end composes them). ----

/// The student's linear budget. Biases (GPT-2) are always kept: the weights' share is what makes
/// the whole linear part, biases included, keep the job's ratio. Without biases it is the ratio.
struct Budget {
  double weights = 0, biases = 0;
  double weight_ratio = 0;  // of the weights alone
};

Budget linear_budget(const lmshrink::models::Model& w, const Job& job) {
  Budget b;
  for (int l = 0; l < w.shape().n_layers; ++l)
    for (int k = 0; k < w.linear_kinds(); ++k) {
      b.weights += double(w.linear(l, k).out_features()) * double(w.linear(l, k).in_features());
      b.biases += double(w.linear(l, k).bias().size());
    }
  b.weight_ratio = b.biases == 0 ? job.ratio : (job.ratio * (b.weights + b.biases) - b.biases) / b.weights;
  if (info(job.method).has_ratio && !(b.weight_ratio > 0))
    fail<lmshrink::value_error>("lmshrink_compress", job_name(job), ": the biases alone are more than ratio ",
                                job.ratio, " of the linear layers");
  return b;
}

/// The pruner's options: --prune-start/--prune-end as a cubic schedule over `steps`, or one mask
/// before training (--prune-end 0). `prune_end_step`: the first step at which no mask changes.
lmshrink::PrunerOptions pruner_options(const Options& o, const MethodInfo& method, int steps,
                                       int& prune_end_step) {
  lmshrink::PrunerOptions popt;
  const bool one_shot = o.prune_end == 0;
  popt.mode = one_shot ? lmshrink::MaskMode::persistent : o.mask_mode;
  popt.scope = o.allocation;
  popt.min_layer_keep = o.min_layer_keep;
  popt.granularity = method.granularity;
  prune_end_step = 0;
  if (one_shot) {
    popt.schedule.total_steps = 2;  // unused: one mask before training
    return popt;
  }
  const auto start_of = [&](int n) { return int(std::lround(o.prune_start * n)); };
  const auto end_of = [&](int n) { return std::max(start_of(n) + 1, int(std::lround(o.prune_end * n))); };
  const auto interval_of = [](int n) { return std::max(1, std::min(10, n / 10)); };
  // The final ratio is reached by the first mask step at or after the phase's end (schedule.hpp:
  // step `end` masks when it falls on the interval, every later step masks); it must come
  // before the last step.
  const auto reaches_final = [&](int n) {
    const int e = end_of(n);
    return e <= n - 2 || (e <= n - 1 && e % interval_of(n) == 0);
  };
  const int start = start_of(steps);
  const int end = end_of(steps);
  prune_end_step = end;
  const bool prunes = method.init == LayerInit::prune_all || method.init == LayerInit::svd_then_prune_s;
  if (end > steps || (prunes && !reaches_final(steps))) {
    int enough = steps + 1;
    while (enough < (1 << 24) && !reaches_final(enough)) ++enough;
    const std::string fix = enough < (1 << 24) ? "at least " + std::to_string(enough) + " steps at these fractions, or "
                                               : std::string();
    fail<lmshrink::value_error>("lmshrink_compress", "the pruning phase (--prune-start ", o.prune_start, ", --prune-end ",
                                o.prune_end, ") of ", steps, " steps ends at step ", end,
                                " with no mask step left to reach the final ratio; ", method.name, " needs ", fix,
                                "an earlier --prune-end");
  }
  popt.schedule.total_steps = steps;
  popt.schedule.initial_warmup = start;
  popt.schedule.final_warmup = steps - end;
  popt.schedule.mask_interval = interval_of(steps);
  popt.importance.window = popt.schedule.mask_interval;
  return popt;
}

/// Each linear layer's rank and live entries of S, in (block, kind) order.
struct LayerShapes {
  std::vector<int> ranks;
  std::vector<lmshrink::Index> entries;
};

/// Runs fit(l, k) for every linear layer on `threads` threads, the costliest first (an SVD costs
/// out·in·min(out, in)). Each fit reads its own layer and writes its own slots, so the results
/// are the same bits on any number of threads. The first failing layer's error is rethrown.
void for_each_layer(const lmshrink::models::Model& w, int threads, const std::function<void(int, int)>& fit) {
  const int L = w.shape().n_layers, K = w.linear_kinds(), n = L * K;
  const auto count = static_cast<std::size_t>(n);
  std::vector<double> cost(count);
  for (int i = 0; i < n; ++i) {
    const double out = double(w.linear(i / K, i % K).out_features()), in = double(w.linear(i / K, i % K).in_features());
    cost[std::size_t(i)] = out * in * std::min(out, in);
  }
  std::vector<int> order(count);
  for (int i = 0; i < n; ++i) order[std::size_t(i)] = i;
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return cost[std::size_t(a)] > cost[std::size_t(b)]; });
  std::vector<std::exception_ptr> errors(count);
#pragma omp parallel for schedule(dynamic, 1) num_threads(std::max(1, threads)) if (threads > 1)
  for (int j = 0; j < n; ++j) {
    const int i = order[std::size_t(j)];
    try {
      fit(i / K, i % K);
    } catch (...) {
      errors[std::size_t(i)] = std::current_exception();
    }
  }
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
}

/// The share of the weights left for S once layers of `ranks` are paid for; a value_error when
/// none is.
double sparse_share_after_low_rank(const lmshrink::models::Model& w, const std::vector<int>& ranks, const Budget& b,
                                   const Job& job) {
  std::int64_t low = 0;
  const int K = w.linear_kinds();
  for (int l = 0; l < w.shape().n_layers; ++l)
    for (int k = 0; k < K; ++k)
      low += ranks[std::size_t(l * K + k)] * (w.linear(l, k).out_features() + w.linear(l, k).in_features());
  const double sparse_share = b.weight_ratio - double(low) / b.weights;
  if (!(sparse_share > 0))
    fail<lmshrink::value_error>("lmshrink_compress", job_name(job), " leaves no budget for S after the low-rank part (",
                                double(low) / b.weights, " of the weights); lower --lowrank-share");
  return sparse_share;
}

/// oats: how --oats-allocation splits the budget between U·V and S, per matrix.
LayerShapes oats_shapes(const Options& o, const lmshrink::models::Model& w, const Calibration& calib, const Budget& b,
                        const Job& job, int threads) {
  const int L = w.shape().n_layers, K = w.linear_kinds();
  const auto size = [&](int l, int k) { return double(w.linear(l, k).out_features()) * double(w.linear(l, k).in_features()); };
  const auto budget = lmshrink::Index(std::floor(b.weight_ratio * b.weights));
  LayerShapes p;
  switch (o.oats_allocation) {
    case OatsAllocation::per_matrix: {  // each matrix's budget and split chosen from calibration
      std::vector<std::vector<lmshrink::StorageChoice>> table(std::size_t(L * K));
      for_each_layer(w, threads, [&](int l, int k) {
        const auto& layer = w.linear(l, k);
        lmshrink::StorageChoiceOptions so;
        so.fit.iterations = std::min(o.oats_iterations, 3);
        so.fit.low_rank = o.oats_fit;
        so.fit.refit_values = o.oats_refit;
        so.fit.svd_method = svd_method(o, layer.out_features(), layer.in_features());
        table[std::size_t(l * K + k)] = lmshrink::storage_choices<float>(layer.to_dense(), calib.at(l, k), so);
      });
      const auto pick = lmshrink::allocate_storage(table, budget);
      for (std::size_t i = 0; i < table.size(); ++i) {
        p.ranks.push_back(int(table[i][pick[i]].rank));
        p.entries.push_back(table[i][pick[i]].sparse_entries);
      }
      break;
    }
    case OatsAllocation::sparse:  // S alone everywhere
      for (int l = 0; l < L; ++l)
        for (int k = 0; k < K; ++k) {
          p.ranks.push_back(0);
          p.entries.push_back(lmshrink::Index(std::floor(b.weight_ratio * size(l, k))));
        }
      break;
    case OatsAllocation::attention_lr:  // U·V alone for attention, S alone for the MLP
      for (int l = 0; l < L; ++l)
        for (int k = 0; k < K; ++k) {
          const auto& layer = w.linear(l, k);
          if (w.attention_linear(k)) {
            const double r = b.weight_ratio * size(l, k) / double(layer.out_features() + layer.in_features());
            p.ranks.push_back(std::max(1, int(std::floor(r))));
            p.entries.push_back(0);
          } else {
            p.ranks.push_back(0);
            p.entries.push_back(lmshrink::Index(std::floor(b.weight_ratio * size(l, k))));
          }
        }
      break;
    case OatsAllocation::uniform: {  // every matrix --lowrank-share in U·V
      p.ranks = ranks_for_budget(w, b.weight_ratio * o.lowrank_share);
      const double sparse_share = sparse_share_after_low_rank(w, p.ranks, b, job);
      for (int l = 0; l < L; ++l)
        for (int k = 0; k < K; ++k) p.entries.push_back(lmshrink::Index(std::floor(sparse_share * size(l, k))));
      return p;  // keeps its own rounding, as the scaling runs measured it
    }
  }
  // Whatever rounding left over goes to the matrices that have an S, within their size.
  std::int64_t spent = 0;
  for (int i = 0; i < L * K; ++i) {
    const auto& layer = w.linear(i / K, i % K);
    spent += p.ranks[std::size_t(i)] * (layer.out_features() + layer.in_features()) + p.entries[std::size_t(i)];
  }
  for (int i = 0; i < L * K && spent < budget; ++i) {
    if (p.entries[std::size_t(i)] == 0) continue;
    const auto add = std::min<std::int64_t>(std::int64_t(size(i / K, i % K)) - p.entries[std::size_t(i)], budget - spent);
    p.entries[std::size_t(i)] += add;
    spent += add;
  }
  return p;
}

/// The student's layers as the method starts them, and what training prunes: S's final share
/// of the weights (0: nothing is pruned). lowrank and oats fix their structure here: each
/// layer's fit of a target weight under calibration statistics, either the teacher's W under
/// the teacher's inputs, or, with --reconstruct sequential, block by block, the target that
/// reproduces the teacher's outputs from the inputs the compressed student feeds the layer.
double initialise_layers(const Job& job, const Shared& sh, const std::vector<int>& train, const Calibration* calib,
                         lmshrink::models::Model& w, const Budget& b, int threads, Result& res) {
  const Options& o = *sh.opt;
  const MethodInfo& method = info(job.method);
  const int L = w.shape().n_layers, K = w.linear_kinds();
  LayerShapes shapes;
  std::vector<std::optional<lmshrink::SparsePlusLowRankResult>> oats_fits(std::size_t(L * K));
  const LayerFit fit_layer = [&](int l, int k, const lmshrink::RowMatrix<float>& target,
                                 const lmshrink::GramAccumulator& stats) {
    auto& layer = w.linear(l, k);
    const lmshrink::SvdMethod svd = svd_method(o, target.rows(), target.cols());
    if (method.init == LayerInit::sparse_plus_low_rank) {
      lmshrink::SparsePlusLowRankOptions so;
      so.rank = shapes.ranks[std::size_t(l * K + k)];
      so.sparse_entries = shapes.entries[std::size_t(l * K + k)];
      so.iterations = o.oats_iterations;
      so.low_rank = o.oats_fit;
      so.refit_values = o.oats_refit;
      so.svd_method = svd;
      oats_fits[std::size_t(l * K + k)] = lmshrink::sparse_plus_low_rank_init<float>(target, layer, so, stats);
    } else {
      lmshrink::SvdInitOptions so;
      so.rank = shapes.ranks[std::size_t(l * K + k)];
      so.method = svd;
      if (o.whitened) lmshrink::svd_init<float>(target, layer, so, stats);
      else lmshrink::svd_init<float>(target, layer, so);
      if (method.init == LayerInit::svd_low_rank_only) lmshrink::make_low_rank_only(layer);
    }
  };
  const auto fit_all = [&] {
    if (o.reconstruct && method.reconstructs) {
      reconstruct_sequentially(*sh.teacher, w, train, sh.length, std::min(o.calib_windows, sh.windows),
                               o.reconstruct_damping, fit_layer);
    } else {
      const lmshrink::GramAccumulator none;  // --init plain: the stats are not read
      for_each_layer(w, threads, [&](int l, int k) {
        fit_layer(l, k, w.linear(l, k).to_dense(), calib->empty() ? none : calib->at(l, k));
      });
    }
    for (int i = 0; i < L * K; ++i)
      if (oats_fits[std::size_t(i)]) res.init_errors.push_back({w.linear_name(i / K, i % K), *oats_fits[std::size_t(i)]});
  };
  switch (method.init) {
    case LayerInit::none: return 0;
    case LayerInit::prune_all: return b.weight_ratio;
    case LayerInit::sparse_plus_low_rank:  // data-aware S + L, one shot; S's mask stays fixed
      shapes = oats_shapes(o, w, *calib, b, job, threads);
      fit_all();
      return 0;
    case LayerInit::svd_low_rank_only:
      shapes.ranks = ranks_for_budget(w, b.weight_ratio);
      fit_all();
      return 0;
    case LayerInit::svd_then_prune_s:
      shapes.ranks = ranks_for_budget(w, b.weight_ratio * o.lowrank_share);
      fit_all();
      return sparse_share_after_low_rank(w, shapes.ranks, b, job);
  }
  return 0;
}

/// Registers every layer with the pruner, its rows (or entries) ranked by their output energy
/// until gradients can rank them (data-aware), and masks once when pruning is one-shot.
void attach_layers(lmshrink::Pruner<float>& pruner, const lmshrink::PrunerOptions& popt, const Options& o,
                   lmshrink::models::Model& w, examples::ShardedTrainer& net, const Calibration* calib) {
  const int L = w.shape().n_layers, K = w.linear_kinds();
  const bool elements = popt.granularity == lmshrink::Granularity::elements;
  for (int l = 0; l < L; ++l)
    for (int k = 0; k < K; ++k) {
      auto& layer = w.linear(l, k);
      pruner.add(w.linear_name(l, k), layer, net.linear_grad(l, k));
      if (o.whitened)
        pruner.set_prior(l * K + k, elements ? lmshrink::element_output_energy<float>(layer.S(), calib->at(l, k))
                                             : lmshrink::row_output_energy<float>(layer.S(), calib->at(l, k)));
    }
  if (o.prune_end == 0) pruner.mask(popt.schedule.final_keep);
}

}  // namespace

Optimizers::Optimizers(lmshrink::models::Model& w, double peak, int steps) : params(w.plain_params()) {
  lmshrink::AdamWOptions ao;
  ao.lr = peak;
  ao.weight_decay = 0;
  linear.resize(std::size_t(w.shape().n_layers));
  for (int l = 0; l < w.shape().n_layers; ++l)
    for (int k = 0; k < w.linear_kinds(); ++k) linear[std::size_t(l)].emplace_back(w.linear(l, k), ao);
  plain.assign(params.size(), lmshrink::TensorAdamW<float>(ao));
  schedule.peak = peak;
  schedule.total_steps = steps;
  schedule.warmup_steps = std::max(1, steps / 20);
}

void Optimizers::step(int at, double embed_lr_scale, lmshrink::models::Model& w, examples::ShardedTrainer& net) {
  const double lr = lmshrink::warmup_cosine_lr(schedule, at);
  set_lr(linear, lr);
  for (std::size_t l = 0; l < linear.size(); ++l)
    for (std::size_t k = 0; k < linear[l].size(); ++k)
      linear[l][k].step(w.linear(int(l), int(k)), net.linear_grad(int(l), int(k)));
  const double lr_plain = lr * embed_lr_scale;
  if (lr_plain > 0)
    for (std::size_t i = 0; i < params.size(); ++i) {
      plain[i].set_lr(lr_plain);
      plain[i].step(params[i].data, net.plain_grads()[i].data, params[i].size);
    }
}

Distillation::Distillation(const Shared& sh, Loss loss_, examples::ShardedTrainer& net, const lmshrink::models::Model& w,
                           const std::vector<int>* keep_)
    : o(sh.opt), loss(loss_), shared_outputs(sh.teacher_outputs), blocks(w.shape().n_layers), dim(w.shape().dim),
      length(sh.length) {
  layerwise = layerwise_loss(*o, loss);
  for (int l = 0; l < blocks; ++l) keep.push_back(keep_ ? (*keep_)[std::size_t(l)] : l);
  if (layerwise || loss == Loss::triple) teacher_blocks_read = *std::max_element(keep.begin(), keep.end()) + 1;
  teacher_blocks.assign(std::size_t(net.shards()), std::vector<const RowMat*>(std::size_t(blocks), nullptr));
  // A teacher's net keeps only its logits and block outputs (NetMode::outputs).
  for (int s = 0; s < net.shards(); ++s)
    teacher.push_back(sh.teacher->net(net.shard(s).batch(), sh.length, lmshrink::models::NetMode::outputs));
  annealing.phase1_steps = std::max(1, sh.steps / 2);
}

double Distillation::operator()(int s, int step, bool masks_final, lmshrink::models::Net& shard, const int* tokens,
                                const RowMat& logits, const Eigen::Ref<const Eigen::VectorXi>& targets, RowMat& dlogits,
                                std::vector<RowMat>& dblock) {
  if (!info(loss).teacher) return lmshrink::cross_entropy<float>(logits, targets, dlogits);
  examples::TeacherOutputCache& cache = shared_outputs ? *shared_outputs : own_outputs;
  const auto outputs = cache.outputs(*teacher[std::size_t(s)], tokens, std::int64_t(shard.batch()) * length,
                                     teacher_blocks_read);
  const RowMat& teacher_logits = outputs.logits();
  if (teacher_blocks_read > 0)
    for (int l = 0; l < blocks; ++l)
      teacher_blocks[std::size_t(s)][std::size_t(l)] = &outputs.block(keep[std::size_t(l)]);
  lmshrink::LossOptions lo;
  double l = 0;
  switch (loss) {
    case Loss::recipe:
      lo.temperature = o->temperature;
      l = lmshrink::soft_hard_loss<float>(logits, teacher_logits, targets, dlogits,
                                          masks_final ? o->recovery_kd_alpha : o->kd_alpha, lo);
      break;
    case Loss::kl:
    case Loss::layerwise: l = lmshrink::kl_divergence<float>(logits, teacher_logits, dlogits, lo); break;
    case Loss::kl_ce:  // the classic mix: T = 2, α = 0.5
      lo.temperature = 2;
      l = lmshrink::soft_hard_loss<float>(logits, teacher_logits, targets, dlogits, 0.5, lo);
      break;
    case Loss::reverse_kl: l = lmshrink::reverse_kl_divergence<float>(logits, teacher_logits, dlogits, lo); break;
    case Loss::jsd: l = lmshrink::jsd_divergence<float>(logits, teacher_logits, dlogits, 0.5, lo); break;
    case Loss::annealing:
      l = lmshrink::annealing_kd_loss<float>(annealing, step, logits, teacher_logits, targets, dlogits, lo);
      break;
    case Loss::triple: {  // DistilGPT-2: 5·KL(T = 2) + 2·CE + 1·(1 − cos), last block
      const int last = blocks - 1;
      dblock.assign(std::size_t(blocks), RowMat());
      dblock[std::size_t(last)].resize(logits.rows(), dim);
      l = lmshrink::distilgpt2_loss<float>(logits, teacher_logits, targets, shard.block_output(last),
                                           *teacher_blocks[std::size_t(s)][std::size_t(last)], dlogits,
                                           dblock[std::size_t(last)]).total;
      break;
    }
    case Loss::lm: break;  // returned above
  }
  if (layerwise)
    l += examples::layerwise_distillation(shard, blocks, teacher_blocks[std::size_t(s)], o->hidden_loss,
                                          o->hidden_weight, dblock);
  return l;
}

StepOutcome training_step(int step, const int* inputs, const Eigen::VectorXi& targets, bool masks_final,
                          examples::ShardedTrainer& net, Distillation& distill, Optimizers& opt, double embed_lr_scale,
                          lmshrink::models::Model& w, lmshrink::Pruner<float>* pruner, int threads, StepTimes* times) {
  using Clock = std::chrono::steady_clock;
  const int n = net.length();
  if (times && times->loss.size() != std::size_t(net.shards())) times->loss.assign(std::size_t(net.shards()), 0.0);
  StepOutcome out;
  out.loss = net.step(inputs, threads, [&](int s, lmshrink::models::Net& shard, const int* own, const RowMat& logits,
                                           RowMat& dlogits, std::vector<RowMat>& dblock) {
    const lmshrink::models::ProfileScope timed(times ? &times->loss[std::size_t(s)] : nullptr);
    return distill(s, step, masks_final, shard, own, logits, targets.segment(net.first_sequence(s) * n, shard.batch() * n),
                   dlogits, dblock);
  });
  if (!std::isfinite(out.loss)) return out;
  auto t = Clock::now();
  opt.step(step, embed_lr_scale, w, net);
  if (times) times->optimizer += std::chrono::duration<double>(Clock::now() - t).count();
  if (pruner) {
    t = Clock::now();
    out.masked = pruner->after_optimizer_step(step).masked;
    if (times) times->pruner += std::chrono::duration<double>(Clock::now() - t).count();
  }
  return out;
}

namespace {

/// The progress line of a worker: this student's step, loss and speed beside the others'.
void report_step(Shared& sh, const Job& job, int worker, int step, double loss, double tokens_per_s) {
  const long done = ++sh.steps_done;
  char text[160];
  std::snprintf(text, sizeof text, "%s step %d/%d loss %.4f %.1fk tok/s", job_name(job).c_str(), step + 1, sh.steps,
                loss, tokens_per_s / 1e3);
  std::string line;
  {
    std::lock_guard<std::mutex> lock(sh.status_mutex);
    sh.status[std::size_t(worker)] = text;
    for (const auto& st : sh.status)
      if (!st.empty()) line += (line.empty() ? "" : " | ") + st;
  }
  sh.bar->update(double(done), line);
}

/// The training loop: each step's batch from the generated stream, the loss over the shards,
/// AdamW, the pruner's masks (`pruner` null: nothing is pruned), the validation curve and the
/// progress line; losses, curve and timing into `res`.
void train_student(const Job& job, Shared& sh, const std::vector<int>& train, lmshrink::models::Model& w,
                   examples::ShardedTrainer& net, Distillation& distill, Optimizers& opt,
                   lmshrink::Pruner<float>* pruner, int prune_end_step, int worker, int job_threads, Result& res) {
  const Options& o = *sh.opt;
  const bool one_shot = o.prune_end == 0;
  const int curve_every = o.curve_points > 0 ? std::max(1, sh.steps / o.curve_points) : 0;
  const int n = sh.length, B = o.batch;
  std::vector<int> inputs(std::size_t(B * n));
  Eigen::VectorXi targets(B * n);
  const auto t0 = std::chrono::steady_clock::now();
  for (int step = 0; step < sh.steps; ++step) {
    for (int b = 0; b < B; ++b) {
      const int* src = train.data() + std::size_t((std::int64_t(step) * B + b) % sh.windows) * n;
      std::copy(src, src + n, inputs.begin() + b * n);
      for (int t = 0; t < n; ++t) targets[b * n + t] = src[t + 1];
    }
    const bool masks_final = !pruner || one_shot || step >= prune_end_step;
    const StepOutcome outcome = training_step(step, inputs.data(), targets, masks_final, net, distill, opt,
                                              o.embed_lr_scale, w, one_shot ? nullptr : pruner, job_threads);
    const double value = outcome.loss;
    if (!std::isfinite(value))
      fail<lmshrink::numeric_error>("lmshrink_compress", job_name(job), ": the loss is ", value, " at step ", step,
                                    "; lower --lr");
    res.losses.push_back(float(value));
    // Every process prunes from the same averaged gradients; their masks and importance state
    // are compared at every mask step.
    if (outcome.masked) sh.team->check_identical(*pruner);
    if (curve_every > 0 && ((step + 1) % curve_every == 0 || step + 1 == sh.steps))
      res.curve.push_back({std::int64_t(step + 1) * B * n,
                           evaluate(decoders_of(*w.pack()), *sh.val, sh.val_windows, sh.eval_len, job_threads, sh.team).nll});
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    report_step(sh, job, worker, step, value, (step + 1) * double(B * n) / secs);
  }
  res.train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (sh.team->size() > 1) res.exchanged_per_step = sh.team->last_received_values() * std::int64_t(sizeof(float));
  res.final_loss = res.losses.back();
}

/// Final masks onto the layers (the reference pruning mode leaves them on the pruner): from here
/// the layers own them.
void hand_masks_to_layers(const lmshrink::Pruner<float>& pruner, lmshrink::models::Model& w) {
  const int K = w.linear_kinds();
  for (lmshrink::Index i = 0; i < pruner.layers(); ++i) {
    auto& layer = w.linear(int(i) / K, int(i) % K);
    layer.set_row_mask(pruner.row_mask(i));
    if (pruner.options().granularity == lmshrink::Granularity::elements) layer.set_element_mask(pruner.element_mask(i));
    layer.apply_masks();
  }
}

/// Counts for the table; no row may claim a ratio the model does not have.
double account(const Job& job, const Shared& sh, const lmshrink::models::Model& w, Result& res) {
  res.rank_min = 1 << 30;
  for (int l = 0; l < w.shape().n_layers; ++l)
    for (int k = 0; k < w.linear_kinds(); ++k) {
      res.rank_min = std::min<int>(res.rank_min, int(w.linear(l, k).rank()));
      res.rank_max = std::max<int>(res.rank_max, int(w.linear(l, k).rank()));
    }
  res.parameters = w.parameters();
  res.linear_live = w.linear_parameters();
  res.linear_dense = sh.teacher->linear_dense_parameters();  // the teacher's linear weights
  const double nominal =
      !info(job.method).has_ratio ? double(w.linear_dense_parameters()) / double(res.linear_dense) : job.ratio;
  return lmshrink::models::checked_linear_ratio(job_name(job), res.linear_live, res.linear_dense, nominal);
}

/// Saves the student (rank 0), then scores what was saved: the table describes the checkpoints
/// on disk. Every rank scores rank 0's file: its bytes go to the others, whose own --out is never
/// read (it may be another machine's file system, or hold a stale checkpoint).
void save_and_score(const Job& job, Shared& sh, const lmshrink::models::Model& w, double kept, int job_threads, Result& res) {
  const Options& o = *sh.opt;
  if (sh.out_dir.empty())
    lmshrink::fail<lmshrink::state_error>("run_job", "Shared::out_dir is empty; set it to the folder "
                                                  "the run writes in");
  const std::string ckpt = sh.out_dir + "/checkpoints/" + file_stem(job) + ".safetensors";
  char ratio_text[32];
  std::snprintf(ratio_text, sizeof ratio_text, "%.4f", kept);
  if (sh.team->leader()) {
    const char* method = name(job.method);
    w.save(ckpt, method, {{"lmshrink.method", method}, {"lmshrink.linear_ratio", ratio_text}});
    // A truncated student is a plain dense model: also exported for other programs (a llama2.c
    // file when that format can hold it, else a Hugging Face directory).
    // A teacher's tokenizer files go along, so that the export can be used as it stands.
    if (info(job.method).start == StudentStart::truncated) {
      const std::string exported = w.export_dense(sh.out_dir + "/checkpoints/" + file_stem(job));
      std::error_code ec;
      if (std::filesystem::is_directory(o.model, ec) && std::filesystem::is_directory(exported, ec))
        lmshrink::copy_hf_companion_files(o.model, exported);
    }
  }
  std::vector<char> saved;
  if (sh.team->leader())
    saved = lmshrink::read_file_bytes("lmshrink_compress", ckpt, 0, "a checkpoint", std::int64_t(1) << 40,
                                      "more than a checkpoint may have");
  sh.team->broadcast_bytes(saved);
  res.checkpoint = "checkpoints/" + file_stem(job) + ".safetensors";
  const auto loaded = examples::load_checkpoint(saved, o.out + "/" + res.checkpoint);
  res.compact = loaded->pack();
  res.bytes = res.compact->bytes();
  res.index_bytes = res.compact->index_bytes();
  const DecoderFactory decoders = decoders_of(*res.compact);
  res.val_score = evaluate(decoders, *sh.val, sh.val_windows, sh.eval_len, job_threads, sh.team);
  if (o.heldout) res.score = evaluate(decoders, *sh.eval, sh.eval_windows, sh.eval_len, job_threads, sh.team);
  res.sample = sample_text(*sh.codec, greedy(decoders, *sh.codec, o.sample_tokens, sh.context));
}

}  // namespace

StudentFootprint student_footprint(const Options& o, const Job& job, const lmshrink::models::Model& teacher) {
  const MethodInfo& method = info(job.method);
  const int L = teacher.shape().n_layers, K = teacher.linear_kinds();
  StudentFootprint f;
  std::int64_t plain = 0;
  for (const auto& t : const_cast<lmshrink::models::Model&>(teacher).plain_params()) plain += t.size;
  const std::vector<int>& keep = job.keep.empty() ? o.keep : job.keep;
  f.blocks = method.start == StudentStart::truncated ? int(keep.size()) : L;
  const double block_share = double(f.blocks) / double(L);
  std::int64_t values = 0, s_values = 0, dense = 0;
  std::vector<int> ranks;
  const Budget b = info(job.method).has_ratio ? linear_budget(teacher, job) : Budget{};
  if (method.init == LayerInit::svd_low_rank_only) ranks = ranks_for_budget(teacher, b.weight_ratio);
  if (method.init == LayerInit::svd_then_prune_s ||
      (method.init == LayerInit::sparse_plus_low_rank && o.oats_allocation == OatsAllocation::uniform))
    ranks = ranks_for_budget(teacher, b.weight_ratio * o.lowrank_share);
  // Where the pruner's masks live while the student trains. Reference mode zeroes pruned rows
  // of S on mask steps but leaves every row live on the layers (they regrow in between, as
  // LoSparse's code does), so S trains as a dense product; persistent masks, and masks set once
  // before training (--prune-end 0), are the layers' own, and pruned rows cost nothing.
  const bool prunes = method.init == LayerInit::prune_all || method.init == LayerInit::svd_then_prune_s;
  const bool one_shot = o.prune_end == 0;
  const bool masks_on_layers = prunes && (one_shot || o.mask_mode == lmshrink::MaskMode::persistent);
  double linear_work = 0;
  for (int l = 0; l < L; ++l)
    for (int k = 0; k < K; ++k) {
      const auto& layer = teacher.linear(l, k);
      const std::int64_t out = layer.out_features(), in = layer.in_features(), size = out * in;
      const int r = ranks.empty() ? 0 : ranks[std::size_t(l * K + k)];
      dense += size;
      values += r * (out + in) + layer.bias().size();
      const bool holds_s = method.init != LayerInit::svd_low_rank_only;
      if (holds_s) s_values += size;
      f.rank_sum += r;
      // Pruned rows scatter S's live (persistent) or non-zero (reference) rows: gathered.
      if (holds_s && prunes && method.granularity == lmshrink::Granularity::rows) {
        ++f.gather_layers;
        f.gather_in += in;
      }
      // Training FLOPs: U·V, and S's live rows. Rows pruned during training (persistent masks):
      // on average half way between all and the final share; pruned once before training: the
      // final share; element masks keep every row. Reference masks leave every row live.
      double s_rows = holds_s ? 1.0 : 0.0;
      if (masks_on_layers && method.granularity == lmshrink::Granularity::rows) {
        const double final_rows = method.init == LayerInit::prune_all
                                      ? b.weight_ratio
                                      : std::max(0.0, b.weight_ratio * (1 - o.lowrank_share));
        s_rows = one_shot ? final_rows : 0.5 * (1 + final_rows);
      }
      if (method.start == StudentStart::scratch) s_rows = job.ratio;
      linear_work += double(r) * double(out + in) + s_rows * double(size);
      const bool element_mask = holds_s && method.granularity == lmshrink::Granularity::elements &&
                                method.init != LayerInit::none && (masks_on_layers || !prunes);
      if (l == 0) f.block.push_back({r, s_rows, element_mask});
    }
  if (method.start == StudentStart::scratch) s_values = std::int64_t(job.ratio * double(s_values));
  f.linear_flops = block_share * linear_work / double(dense);
  f.weight_ratio = b.weight_ratio;
  const std::int64_t trainable = std::int64_t(block_share * double(values + s_values)) + plain;
  f.weights = 4 * trainable;
  f.gradients = 4 * trainable;
  f.optimizer = 8 * trainable;
  if (method.granularity == lmshrink::Granularity::elements && method.init != LayerInit::none)
    f.weights += s_values;  // the element mask, a byte per entry of S
  f.prunes = prunes;
  if (f.prunes) {
    // ImportanceTracker's moving average and window mean (its uncertainty, and the score matrix
    // that needs, stay off: β2 = 1, as the reference), the element mask the pruner keeps; per
    // element group a score record and a prior (element granularity).
    f.pruner = s_values * (4 * 2 + 1);
    if (method.granularity == lmshrink::Granularity::elements) f.pruner += s_values * (24 + 8);
  }
  return f;
}

void check_job(const Options& o, const Job& job, const lmshrink::models::Model& teacher, int steps) {
  const MethodInfo& method = info(job.method);
  const Budget budget = linear_budget(teacher, job);
  int prune_end_step = 0;
  pruner_options(o, method, steps, prune_end_step);
  if (method.init == LayerInit::svd_then_prune_s ||
      (method.init == LayerInit::sparse_plus_low_rank && o.oats_allocation == OatsAllocation::uniform))
    sparse_share_after_low_rank(teacher, ranks_for_budget(teacher, budget.weight_ratio * o.lowrank_share), budget, job);
}

Result run_job(const Job& job, Shared& sh, int worker, int job_threads) {
  const Options& o = *sh.opt;
  const MethodInfo& method = info(job.method);
  const std::vector<int>& keep = job.keep.empty() ? o.keep : job.keep;
  const std::vector<int>& train = job.train ? *job.train : *sh.train;
  const Calibration* calib = job.calib ? job.calib : sh.calib;
  Result res;
  res.job = job;

  // 1. The student, its layers initialised, and what training prunes.
  const std::unique_ptr<lmshrink::models::Model> student =
      method.start == StudentStart::truncated ? sh.teacher->truncated(keep)
      : method.start == StudentStart::scratch ? sh.teacher->from_scratch(job.ratio, o.seed ^ 0x5c7a7c4ull)
                                              : sh.teacher->clone();
  lmshrink::models::Model& w = *student;
  const auto init_start = std::chrono::steady_clock::now();
  const Budget budget = linear_budget(w, job);
  int prune_end_step = 0;
  lmshrink::PrunerOptions popt = pruner_options(o, method, sh.steps, prune_end_step);
  const double pruned_to = initialise_layers(job, sh, train, calib, w, budget, job_threads, res);
  res.init_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - init_start).count();
  const bool prune = pruned_to > 0;
  if (prune) popt.schedule.final_keep = pruned_to;
  // The run's calibration statistics are freed once the last student has read them: after its
  // initialisation, or once its pruner has its priors. (A 1.1B model's are 7.8 GB.)
  const auto done_with_calibration = [&] {
    if (!job.calib && sh.calib_readers && --*sh.calib_readers == 0) sh.owned_calib->clear();
  };
  if (!prune) done_with_calibration();
  {  // the training state, freed before the student is saved and scored
    lmshrink::Pruner<float> pruner(popt);
    examples::ShardedTrainer net(w, o.batch, sh.length, sh.shards, sh.team,
                                 sh.recompute ? lmshrink::models::NetMode::recompute : lmshrink::models::NetMode::training);
    if (prune) {
      attach_layers(pruner, popt, o, w, net, calib);
      done_with_calibration();
    }
    // Data parallel: every process starts from rank 0's student (the initialisation is
    // deterministic, so this only guarantees it) and prunes with the same state.
    sh.team->broadcast(w);
    if (prune) sh.team->check_identical(pruner);
    res.val_init_score = evaluate(decoders_of(*w.pack()), *sh.val, sh.val_windows, sh.eval_len, job_threads, sh.team);

    // 2. Training: distillation from the teacher, AdamW, masks on the pruner's schedule.
    const Loss loss = job_loss(job);
    Distillation distill(sh, loss, net, w, method.start == StudentStart::truncated ? &keep : nullptr);
    Optimizers opt(w, peak_lr(o, job), sh.steps);
    train_student(job, sh, train, w, net, distill, opt, prune ? &pruner : nullptr, prune_end_step, worker, job_threads, res);

    // 3. The layers own the final masks; the student is counted, saved and scored as saved.
    if (prune) hand_masks_to_layers(pruner, w);
  }
  save_and_score(job, sh, w, account(job, sh, w, res), job_threads, res);
  return res;
}

}  // namespace compress
