// lmshrink_compress: building, training, pruning and packing one student.
#include <filesystem>
#include <fstream>

#include "../common/sharded_trainer.hpp"
#include <lmshrink/files.hpp>

#include "compress.hpp"

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
std::vector<int> ranks_for_budget(const examples::Model& w, double rho) {
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

Calibration collect_calibration(examples::Model& teacher, const std::vector<int>& train,
                                int length, int windows) {
  const int L = teacher.shape().n_layers, K = teacher.linear_kinds();
  Calibration calib(static_cast<std::size_t>(L), std::vector<lmshrink::GramAccumulator>(static_cast<std::size_t>(K)));
  const auto tnet = teacher.net(1, length);
  for (int l = 0; l < L; ++l)
    for (int k = 0; k < K; ++k) calib[std::size_t(l)][std::size_t(k)].reset(teacher.linear(l, k).in_features());
  for (int win = 0; win < windows; ++win) {
    tnet->forward(train.data() + std::size_t(win) * std::size_t(length));
    for (int l = 0; l < L; ++l)
      for (int k = 0; k < K; ++k) calib[std::size_t(l)][std::size_t(k)].add<float>(tnet->linear_input(l, k));
  }
  return calib;
}

void reconstruct_sequentially(examples::Model& teacher, examples::Model& student, const std::vector<int>& train,
                              int length, int windows, double damping, const LayerFit& fit) {
  const int L = student.shape().n_layers, K = student.linear_kinds();
  const auto snet = student.net(1, length);
  const auto tnet = teacher.net(1, length);
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

Result run_job(const Job& job, Shared& sh, int worker, int job_threads) {
  const Options& o = *sh.opt;
  const MethodInfo& method = info(job.method);
  const bool truncation = method.start == StudentStart::truncated;
  const std::vector<int>& keep = job.keep.empty() ? o.keep : job.keep;
  const Loss loss_kind = job.loss ? *job.loss : job.method == Method::trunc_lm ? Loss::lm : Loss::recipe;
  const bool kd = info(loss_kind).teacher;
  const std::vector<int>& train = job.train ? *job.train : *sh.train;
  const Calibration* calib = job.calib ? job.calib : sh.calib;
  const int steps = sh.steps;
  Result res;
  res.job = job;

  // The student.
  const std::unique_ptr<examples::Model> student =
      method.start == StudentStart::truncated ? sh.teacher->truncated(keep)
      : method.start == StudentStart::scratch ? sh.teacher->from_scratch(job.ratio, o.seed ^ 0x5c7a7c4ull)
                                              : sh.teacher->clone();
  examples::Model& w = *student;
  const int L = w.shape().n_layers, K = w.linear_kinds();
  const bool one_shot = o.prune_end == 0;
  lmshrink::PrunerOptions popt;
  popt.mode = one_shot ? lmshrink::MaskMode::persistent : o.mask_mode;
  popt.scope = o.allocation;
  popt.min_layer_keep = o.min_layer_keep;
  int prune_end_step = 0;  // the first step at which no mask changes any more
  if (!one_shot) {
    const int start = int(std::lround(o.prune_start * steps));
    const int end = std::max(start + 1, int(std::lround(o.prune_end * steps)));
    prune_end_step = end;
    if (end > steps)
      fail<lmshrink::value_error>("lmshrink_compress", "the pruning phase needs more steps than ", steps);
    popt.schedule.total_steps = steps;
    popt.schedule.initial_warmup = start;
    popt.schedule.final_warmup = steps - end;
    popt.schedule.mask_interval = std::max(1, std::min(10, steps / 10));
    popt.importance.window = popt.schedule.mask_interval;
  } else {
    popt.schedule.total_steps = 2;  // unused: one mask before training
  }
  bool prune = false;
  // Biases (GPT-2) are always kept: the weights' share is what makes the whole linear part,
  // biases included, keep job.ratio. Without biases it is job.ratio.
  double weights = 0, biases = 0;
  for (int l = 0; l < L; ++l)
    for (int k = 0; k < K; ++k) {
      weights += double(w.linear(l, k).out_features()) * double(w.linear(l, k).in_features());
      biases += double(w.linear(l, k).bias().size());
    }
  const double weight_ratio = biases == 0 ? job.ratio : (job.ratio * (weights + biases) - biases) / weights;
  if (method.has_ratio && !(weight_ratio > 0))
    fail<lmshrink::value_error>("lmshrink_compress", job_name(job), ": the biases alone are more than ratio ",
                                job.ratio, " of the linear layers");
  const bool elements = method.granularity == lmshrink::Granularity::elements;
  popt.granularity = method.granularity;
  // lowrank and oats fix their structure at initialisation: each layer's fit of a target weight
  // under calibration statistics, either the teacher's W under the teacher's inputs, or, with
  // --reconstruct sequential, block by block, the target that reproduces the teacher's outputs
  // from the inputs the compressed student feeds the layer.
  std::vector<int> ranks;
  std::vector<lmshrink::Index> entries;  // oats: S's live entries per layer
  double sparse_share = 0;
  const LayerFit fit_layer = [&](int l, int k, const lmshrink::RowMatrix<float>& target,
                                 const lmshrink::GramAccumulator& stats) {
    auto& layer = w.linear(l, k);
    if (method.init == LayerInit::sparse_plus_low_rank) {
      lmshrink::SparsePlusLowRankOptions so;
      so.rank = ranks[std::size_t(l * K + k)];
      so.sparse_entries = entries[std::size_t(l * K + k)];
      so.iterations = o.oats_iterations;
      so.low_rank = o.oats_fit;
      so.refit_values = o.oats_refit;
      const auto fit = lmshrink::sparse_plus_low_rank_init<float>(target, layer, so, stats);
      res.init_errors.push_back({w.linear_name(l, k), fit});
    } else {
      lmshrink::SvdInitOptions so;
      so.rank = ranks[std::size_t(l * K + k)];
      if (o.whitened) lmshrink::svd_init<float>(target, layer, so, stats);
      else lmshrink::svd_init<float>(target, layer, so);
      if (method.init == LayerInit::svd_low_rank_only) lmshrink::make_low_rank_only(layer);
    }
  };
  const auto fit_all = [&] {
    if (o.reconstruct && method.reconstructs) {
      reconstruct_sequentially(*sh.teacher, w, train, sh.length, std::min(o.calib_windows, sh.windows),
                               o.reconstruct_damping, fit_layer);
      return;
    }
    const lmshrink::GramAccumulator none;  // --init plain: the stats are not read
    for (int l = 0; l < L; ++l)
      for (int k = 0; k < K; ++k)
        fit_layer(l, k, w.linear(l, k).to_dense(), calib->empty() ? none : (*calib)[std::size_t(l)][std::size_t(k)]);
  };
  if (method.init == LayerInit::sparse_plus_low_rank) {
    // Data-aware S + L, one shot; S's mask stays fixed while distillation trains U, V and S's
    // live values. How the budget is split (--oats-allocation): the same share of U·V in every
    // matrix; S alone everywhere; U·V alone for attention and S alone for the MLP; or per
    // matrix, from calibration.
    const auto budget = lmshrink::Index(std::floor(weight_ratio * weights));
    if (o.oats_allocation == OatsAllocation::per_matrix) {
      std::vector<std::vector<lmshrink::StorageChoice>> table;
      lmshrink::StorageChoiceOptions so;
      so.fit.iterations = std::min(o.oats_iterations, 3);
      so.fit.low_rank = o.oats_fit;
      so.fit.refit_values = o.oats_refit;
      for (int l = 0; l < L; ++l)
        for (int k = 0; k < K; ++k)
          table.push_back(lmshrink::storage_choices<float>(w.linear(l, k).to_dense(),
                                                           (*calib)[std::size_t(l)][std::size_t(k)], so));
      const auto pick = lmshrink::allocate_storage(table, budget);
      for (std::size_t i = 0; i < table.size(); ++i) {
        ranks.push_back(int(table[i][pick[i]].rank));
        entries.push_back(table[i][pick[i]].sparse_entries);
      }
    } else if (o.oats_allocation == OatsAllocation::sparse) {
      for (int l = 0; l < L; ++l)
        for (int k = 0; k < K; ++k) {
          const auto& layer = w.linear(l, k);
          ranks.push_back(0);
          entries.push_back(lmshrink::Index(std::floor(weight_ratio * double(layer.out_features()) *
                                                       double(layer.in_features()))));
        }
    } else if (o.oats_allocation == OatsAllocation::attention_lr) {
      for (int l = 0; l < L; ++l)
        for (int k = 0; k < K; ++k) {
          const auto& layer = w.linear(l, k);
          const double size = double(layer.out_features()) * double(layer.in_features());
          if (w.attention_linear(k)) {
            const double r = weight_ratio * size / double(layer.out_features() + layer.in_features());
            ranks.push_back(std::max(1, int(std::floor(r))));
            entries.push_back(0);
          } else {
            ranks.push_back(0);
            entries.push_back(lmshrink::Index(std::floor(weight_ratio * size)));
          }
        }
    } else {
      ranks = ranks_for_budget(w, weight_ratio * o.lowrank_share);
      std::int64_t low = 0;
      for (int l = 0; l < L; ++l)
        for (int k = 0; k < K; ++k)
          low += ranks[std::size_t(l * K + k)] * (w.linear(l, k).out_features() + w.linear(l, k).in_features());
      sparse_share = weight_ratio - double(low) / weights;
      if (!(sparse_share > 0))
        fail<lmshrink::value_error>("lmshrink_compress", "oats at ratio ", job.ratio,
                                    " leaves no budget for S after the low-rank part; lower --lowrank-share");
      for (int l = 0; l < L; ++l)
        for (int k = 0; k < K; ++k)
          entries.push_back(lmshrink::Index(std::floor(sparse_share * double(w.linear(l, k).out_features()) *
                                                       double(w.linear(l, k).in_features()))));
    }
    // Whatever rounding left over goes to the matrices that have an S, within their size (the
    // uniform split keeps its own rounding, as the scaling runs measured it).
    if (o.oats_allocation != OatsAllocation::uniform) {
      std::int64_t spent = 0;
      for (int i = 0; i < L * K; ++i) {
        const auto& layer = w.linear(i / K, i % K);
        spent += ranks[std::size_t(i)] * (layer.out_features() + layer.in_features()) + entries[std::size_t(i)];
      }
      for (int i = 0; i < L * K && spent < budget; ++i) {
        const auto& layer = w.linear(i / K, i % K);
        if (entries[std::size_t(i)] == 0) continue;
        const auto add = std::min<std::int64_t>(layer.out_features() * layer.in_features() - entries[std::size_t(i)],
                                                budget - spent);
        entries[std::size_t(i)] += add;
        spent += add;
      }
    }
    fit_all();
  } else if (method.init == LayerInit::svd_then_prune_s || method.init == LayerInit::svd_low_rank_only) {
    const bool low_rank_only = method.init == LayerInit::svd_low_rank_only;
    const double rho = low_rank_only ? weight_ratio : weight_ratio * o.lowrank_share;
    ranks = ranks_for_budget(w, rho);
    fit_all();
    if (!low_rank_only) {
      std::int64_t low = 0;
      for (int l = 0; l < L; ++l)
        for (int k = 0; k < K; ++k) low += w.linear(l, k).rank() * (w.linear(l, k).out_features() + w.linear(l, k).in_features());
      sparse_share = weight_ratio - double(low) / weights;
      if (!(sparse_share > 0))
        fail<lmshrink::value_error>("lmshrink_compress", "LoSparse at ratio ", job.ratio,
                                    " leaves no budget for S after the low-rank part (",
                                    double(low) / weights, "); lower --lowrank-share");
      popt.schedule.final_keep = sparse_share;
      prune = true;
    }
  } else if (method.init == LayerInit::prune_all) {
    popt.schedule.final_keep = weight_ratio;
    prune = true;
  }
  lmshrink::Pruner<float> pruner(popt);
  examples::ShardedTrainer net(w, o.batch, sh.length, sh.shards, sh.team);
  if (prune) {
    for (int l = 0; l < L; ++l)
      for (int k = 0; k < K; ++k) {
        auto& layer = w.linear(l, k);
        pruner.add(w.linear_name(l, k), layer, net.linear_grad(l, k));
        // Data-aware: rows (or entries) ranked by their output energy until gradients can rank
        // them.
        const auto& stats = (*calib)[std::size_t(l)][std::size_t(k)];
        if (o.whitened)
          pruner.set_prior(l * K + k, elements ? lmshrink::element_output_energy<float>(layer.S(), stats)
                                               : lmshrink::row_output_energy<float>(layer.S(), stats));
      }
    if (one_shot) pruner.mask(popt.schedule.final_keep);
  }
  // Data parallel: every process starts from rank 0's student (the initialisation is
  // deterministic, so this only guarantees it) and prunes with the same state.
  sh.team->broadcast(w);
  if (prune) sh.team->check_identical(pruner);

  {
    const auto start = w.pack();
    res.val_init_score = evaluate(decoders_of(*start), *sh.val, sh.val_windows, sh.eval_len, job_threads, sh.team);
  }
  std::vector<std::vector<lmshrink::AdamW<float>>> opt(static_cast<std::size_t>(L));
  lmshrink::AdamWOptions ao;
  const double peak = peak_lr(o, job);
  ao.lr = peak;
  ao.weight_decay = 0;
  for (int l = 0; l < L; ++l)
    for (int k = 0; k < K; ++k) opt[std::size_t(l)].emplace_back(w.linear(l, k), ao);
  const std::vector<examples::TensorRef> params = w.plain_params();
  std::vector<lmshrink::TensorAdamW<float>> plain(params.size(), lmshrink::TensorAdamW<float>(ao));
  // Linear warm-up over the first 5 % of steps, then cosine decay to 10 % of the peak.
  lmshrink::WarmupCosine schedule;
  schedule.peak = peak;
  schedule.total_steps = steps;
  schedule.warmup_steps = std::max(1, steps / 20);

  // The teacher runs the same full-sequence forward, shard by shard, for its logits and block
  // outputs.
  std::vector<std::unique_ptr<examples::Net>> teacher;
  const bool layerwise = (loss_kind == Loss::recipe && o.hidden_weight > 0) || loss_kind == Loss::layerwise;
  const bool last_hidden = loss_kind == Loss::triple;
  std::vector<std::vector<const RowMat*>> teacher_blocks(std::size_t(net.shards()));
  for (int s = 0; s < net.shards(); ++s) {
    teacher.push_back(sh.teacher->net(net.shard(s).batch(), sh.length));
    if (layerwise || last_hidden)
      for (int l = 0; l < L; ++l)
        teacher_blocks[std::size_t(s)].push_back(&teacher.back()->block_output(truncation ? keep[std::size_t(l)] : l));
  }
  // Annealing-KD: phase 1 (MSE to the teacher's logits scaled by temp/τ_max, temp rising 1 → 10)
  // over the first half of the steps, hard labels after.
  lmshrink::AnnealingKdSchedule annealing;
  annealing.phase1_steps = std::max(1, steps / 2);
  const int curve_every = o.curve_points > 0 ? std::max(1, steps / o.curve_points) : 0;

  const int n = sh.length, B = o.batch;
  std::vector<int> inputs(std::size_t(B * n));
  Eigen::VectorXi targets(B * n);
  const auto t0 = std::chrono::steady_clock::now();
  for (int step = 0; step < steps; ++step) {
    for (int b = 0; b < B; ++b) {
      const int win = int((std::int64_t(step) * B + b) % sh.windows);
      const int* src = train.data() + std::size_t(win) * n;
      std::copy(src, src + n, inputs.begin() + b * n);
      for (int t = 0; t < n; ++t) targets[b * n + t] = src[t + 1];
    }
    const double loss = net.step(inputs.data(), job_threads, [&](int s, examples::Net& shard,
                                                                 const int* own, const RowMat& logits,
                                                                 RowMat& dlogits, std::vector<RowMat>& dblock) {
      const auto own_targets = targets.segment(net.first_sequence(s) * n, shard.batch() * n);
      if (!kd) return lmshrink::cross_entropy<float>(logits, own_targets, dlogits);
      const RowMat& teacher_logits = teacher[std::size_t(s)]->forward(own);
      lmshrink::LossOptions lo;
      double l = 0;
      switch (loss_kind) {
        case Loss::recipe: {
          lo.temperature = o.temperature;
          const bool masks_final = !prune || one_shot || step >= prune_end_step;
          l = lmshrink::soft_hard_loss<float>(logits, teacher_logits, own_targets, dlogits,
                                              masks_final ? o.recovery_kd_alpha : o.kd_alpha, lo);
          break;
        }
        case Loss::kl:
        case Loss::layerwise: l = lmshrink::kl_divergence<float>(logits, teacher_logits, dlogits, lo); break;
        case Loss::kl_ce:  // the classic mix: T = 2, α = 0.5
          lo.temperature = 2;
          l = lmshrink::soft_hard_loss<float>(logits, teacher_logits, own_targets, dlogits, 0.5, lo);
          break;
        case Loss::reverse_kl:
          l = lmshrink::reverse_kl_divergence<float>(logits, teacher_logits, dlogits, lo);
          break;
        case Loss::jsd: l = lmshrink::jsd_divergence<float>(logits, teacher_logits, dlogits, 0.5, lo); break;
        case Loss::annealing:
          l = lmshrink::annealing_kd_loss<float>(annealing, step, logits, teacher_logits, own_targets, dlogits, lo);
          break;
        case Loss::triple: {  // DistilGPT-2: 5·KL(T = 2) + 2·CE + 1·(1 − cos), last block
          const int last = L - 1;
          dblock.assign(std::size_t(L), RowMat());
          dblock[std::size_t(last)].resize(logits.rows(), w.shape().dim);
          l = lmshrink::distilgpt2_loss<float>(logits, teacher_logits, own_targets, shard.block_output(last),
                                               *teacher_blocks[std::size_t(s)][std::size_t(last)], dlogits,
                                               dblock[std::size_t(last)]).total;
          break;
        }
        case Loss::lm: break;  // returned above
      }
      if (layerwise)
        l += examples::layerwise_distillation(shard, L, teacher_blocks[std::size_t(s)], o.hidden_loss,
                                              o.hidden_weight, dblock);
      return l;
    });
    if (!std::isfinite(loss))
      fail<lmshrink::numeric_error>("lmshrink_compress", job_name(job), ": the loss is ", loss,
                                    " at step ", step, "; lower --lr");
    res.losses.push_back(float(loss));
    const double lr = lmshrink::warmup_cosine_lr(schedule, step);
    set_lr(opt, lr);
    for (int l = 0; l < L; ++l)
      for (int k = 0; k < K; ++k) opt[std::size_t(l)][std::size_t(k)].step(w.linear(l, k), net.linear_grad(l, k));
    const double lr_plain = lr * o.embed_lr_scale;
    if (lr_plain > 0)
      for (std::size_t i = 0; i < params.size(); ++i) {
        plain[i].set_lr(lr_plain);
        plain[i].step(params[i].data, net.plain_grads()[i].data(), params[i].size);
      }
    // Every process prunes from the same averaged gradients; their masks and importance
    // state are compared at every mask step.
    if (prune && !one_shot && pruner.after_optimizer_step(step).masked) sh.team->check_identical(pruner);
    if (curve_every > 0 && ((step + 1) % curve_every == 0 || step + 1 == steps)) {
      const auto now = w.pack();
      const double nll = evaluate(decoders_of(*now), *sh.val, sh.val_windows, sh.eval_len, job_threads, sh.team).nll;
      res.curve.push_back({std::int64_t(step + 1) * B * n, nll});
    }

    const long done = ++sh.steps_done;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    char text[160];
    std::snprintf(text, sizeof text, "%s step %d/%d loss %.4f %.1fk tok/s", job_name(job).c_str(),
                  step + 1, steps, loss, (step + 1) * double(B * n) / secs / 1e3);
    std::string line;
    {
      std::lock_guard<std::mutex> lock(sh.status_mutex);
      sh.status[std::size_t(worker)] = text;
      for (const auto& st : sh.status)
        if (!st.empty()) line += (line.empty() ? "" : " | ") + st;
    }
    sh.bar->update(double(done), line);
  }
  res.train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (sh.team->size() > 1) res.exchanged_per_step = sh.team->last_received_values() * std::int64_t(sizeof(float));
  res.final_loss = res.losses.back();

  // Final masks onto the layers (the reference pruning mode leaves them on the pruner).
  if (prune)
    for (lmshrink::Index i = 0; i < pruner.layers(); ++i) {
      auto& layer = w.linear(int(i) / K, int(i) % K);
      layer.set_row_mask(pruner.row_mask(i));
      if (elements) layer.set_element_mask(pruner.element_mask(i));
      layer.apply_masks();
    }
  res.rank_min = 1 << 30;
  for (int l = 0; l < L; ++l)
    for (int k = 0; k < K; ++k) {
      res.rank_min = std::min<int>(res.rank_min, int(w.linear(l, k).rank()));
      res.rank_max = std::max<int>(res.rank_max, int(w.linear(l, k).rank()));
    }
  res.parameters = w.parameters();
  res.linear_live = w.linear_parameters();
  res.linear_dense = sh.teacher->linear_dense_parameters();  // the teacher's linear weights
  // No row of the table may claim a ratio the model does not have.
  const double nominal = !method.has_ratio ? double(w.linear_dense_parameters()) / double(res.linear_dense) : job.ratio;
  const double kept = examples::checked_linear_ratio(job_name(job), res.linear_live, res.linear_dense, nominal);

  // Save, then score what was saved: the table describes the checkpoints on disk.
  if (sh.out_dir.empty())
    lmshrink::fail<lmshrink::state_error>("run_job", "Shared::out_dir is empty; set it to the folder "
                                                  "the run writes in");
  const std::string ckpt = sh.out_dir + "/checkpoints/" + file_stem(job) + ".safetensors";
  char ratio_text[32];
  std::snprintf(ratio_text, sizeof ratio_text, "%.4f", kept);
  // Rank 0 writes; every process then scores the saved file.
  if (sh.team->leader()) {
    w.save(ckpt, method.name, {{"lmshrink.method", method.name}, {"lmshrink.linear_ratio", ratio_text}});
    // A truncated student is a plain dense model: also exported for other programs (a llama2.c
    // file when that format can hold it, else a Hugging Face directory).
    if (truncation) w.export_dense(sh.out_dir + "/checkpoints/" + file_stem(job));
  }
  // Every rank scores rank 0's file: its bytes go to the others, whose own --out is never read
  // (it may be another machine's file system, or hold a stale checkpoint).
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
  res.sample = sample_text(*sh.codec, greedy(decoders, *sh.codec, o.sample_tokens, w.shape().seq_len));
  return res;
}

}  // namespace compress
