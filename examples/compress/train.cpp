// lmshrink_compress: building, training, pruning and packing one student.
#include <filesystem>
#include <fstream>

#include "../common/llama_checkpoint.hpp"
#include "../common/llama_trainer.hpp"
#include "../common/sharded_trainer.hpp"
#include "compress.hpp"

namespace compress {
namespace {

// Adam on a plain tensor (embedding, gains), no weight decay: the same rule as lmshrink::AdamW.
struct TensorAdam {
  Eigen::VectorXf m, v;
  void step(float* p, const float* g, Eigen::Index n, double lr, long t) {
    if (m.size() != n) m.setZero(n), v.setZero(n);
    Eigen::Map<Eigen::VectorXf> P(p, n);
    Eigen::Map<const Eigen::VectorXf> G(g, n);
    m = 0.9f * m + 0.1f * G;
    v = 0.999f * v + 0.001f * G.cwiseProduct(G);
    const double bc1 = 1 - std::pow(0.9, double(t)), bc2 = 1 - std::pow(0.999, double(t));
    P.array() -= float(lr / bc1) * m.array() / (v.array().sqrt() / float(std::sqrt(bc2)) + 1e-8f);
  }
};

// Linear warm-up over the first 5 % of steps, then cosine decay to 10 % of the peak.
double learning_rate(double peak, int step, int steps) {
  const int warm = std::max(1, steps / 20);
  if (step < warm) return peak * (step + 1) / warm;
  const double f = double(step - warm) / std::max(1, steps - warm);
  return peak * (0.1 + 0.9 * 0.5 * (1 + std::cos(3.141592653589793 * f)));
}

}  // namespace

const std::vector<std::string> kLosses = {"recipe", "lm",         "kl",        "kl-ce", "triple",
                                          "layerwise", "annealing", "reverse-kl", "jsd"};

void check_loss(const std::string& loss) {
  if (std::find(kLosses.begin(), kLosses.end(), loss) == kLosses.end()) {
    std::string all;
    for (const auto& l : kLosses) all += (all.empty() ? "" : ", ") + l;
    fail<lmshrink::value_error>("lmshrink_compress", "unknown loss '", loss, "' (one of ", all, ")");
  }
}

// Methods without a ratio: truncation, and the uncompressed control.
bool ratio_free(const std::string& method) {
  return method == "trunc-kd" || method == "trunc-lm" || method == "dense";
}

std::string job_name(const Job& j) {
  if (ratio_free(j.method)) return j.method;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s %.2g", j.method.c_str(), j.ratio);
  return buf;
}

std::string file_stem(const Job& j) {
  if (!j.tag.empty()) return j.tag;
  if (ratio_free(j.method)) return j.method;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s_%.2f", j.method.c_str(), j.ratio);
  return buf;
}

namespace {

// Ranks whose low-rank parameters Σ r·(out + in) come closest to ρ·Σ out·in from below: the
// floor of each layer's ρ·out·in/(out + in), then one more rank for the layers with the largest
// remainders while the budget allows. (The per-layer ceil of the reference overshoots a 35-layer
// model's budget by 2 %.)
std::vector<int> ranks_for_budget(const examples::LlamaWeights<float>& w, double rho) {
  std::vector<int> ranks;
  std::vector<std::pair<double, std::size_t>> remainder;
  double budget = 0, used = 0;
  for (const auto& block : w.linear)
    for (const auto& layer : block) {
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
    const auto& layer = w.linear[i / examples::kLinearKinds][i % examples::kLinearKinds];
    const double cost = double(layer.out_features() + layer.in_features());
    if (rest > 0 && used + cost <= budget && ranks[i] < std::min(layer.out_features(), layer.in_features())) {
      ++ranks[i];
      used += cost;
    }
  }
  return ranks;
}

void set_lr(std::vector<std::array<lmshrink::AdamW<float>, examples::kLinearKinds>>& opt, double lr) {
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

Calibration collect_calibration(const lmshrink::Llama2cModel& teacher, const std::vector<int>& train,
                                int length, int windows) {
  const auto& c = teacher.config;
  Calibration calib;
  auto tw = examples::LlamaWeights<float>::from_model(teacher);
  examples::LlamaTrainer<float> tnet(tw, 1, length);
  calib.resize(std::size_t(c.n_layers));
  for (auto& block : calib)
    for (int k = 0; k < examples::kLinearKinds; ++k)
      block[std::size_t(k)].reset(tw.linear[0][std::size_t(k)].in_features());
  for (int win = 0; win < windows; ++win) {
    tnet.forward(train.data() + std::size_t(win) * std::size_t(length));
    for (int l = 0; l < c.n_layers; ++l)
      for (int k = 0; k < examples::kLinearKinds; ++k)
        calib[std::size_t(l)][std::size_t(k)].add<float>(tnet.linear_input(l, k));
  }
  return calib;
}

Result run_job(const Job& job, Shared& sh, int worker, int job_threads) {
  const Options& o = *sh.opt;
  const bool truncation = job.method == "trunc-kd" || job.method == "trunc-lm";
  const std::vector<int>& keep = job.keep.empty() ? o.keep : job.keep;
  const std::string loss_kind = !job.loss.empty() ? job.loss : job.method == "trunc-lm" ? "lm" : "recipe";
  check_loss(loss_kind);
  const bool kd = loss_kind != "lm";
  const std::vector<int>& train = job.train ? *job.train : *sh.train;
  const Calibration* calib = job.calib ? job.calib : sh.calib;
  const int steps = sh.steps;
  Result res;
  res.job = job;

  // The student.
  lmshrink::Llama2cModel base = truncation ? lmshrink::truncate_layers(*sh.teacher, keep) : *sh.teacher;
  auto w = examples::LlamaWeights<float>::from_model(base);
  const bool one_shot = o.prune_end == 0;
  lmshrink::PrunerOptions popt;
  popt.mode = one_shot ? lmshrink::MaskMode::persistent : o.mask_mode;
  popt.scope = o.allocation;
  popt.min_layer_keep = o.min_layer_keep;
  if (!one_shot) {
    const int start = int(std::lround(o.prune_start * steps));
    const int end = std::max(start + 1, int(std::lround(o.prune_end * steps)));
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
  if (job.method == "losparse" || job.method == "lowrank") {
    const double rho = job.method == "lowrank" ? job.ratio : job.ratio * o.lowrank_share;
    const std::vector<int> ranks = ranks_for_budget(w, rho);
    for (std::size_t l = 0; l < w.linear.size(); ++l)
      for (int k = 0; k < examples::kLinearKinds; ++k) {
        auto& layer = w.linear[l][std::size_t(k)];
        const lmshrink::RowMatrix<float> dense = layer.to_dense();
        lmshrink::SvdInitOptions so;
        so.rank = ranks[l * examples::kLinearKinds + std::size_t(k)];
        if (o.whitened) lmshrink::svd_init<float>(dense, layer, so, (*calib)[l][std::size_t(k)]);
        else lmshrink::svd_init<float>(dense, layer, so);
        if (job.method == "lowrank") lmshrink::make_low_rank_only(layer);
      }
    if (job.method == "losparse") {
      std::int64_t low = 0;
      for (const auto& block : w.linear)
        for (const auto& layer : block) low += layer.rank() * (layer.out_features() + layer.in_features());
      const double sparse_share = job.ratio - double(low) / double(w.linear_dense_parameters());
      if (!(sparse_share > 0))
        fail<lmshrink::value_error>("lmshrink_compress", "LoSparse at ratio ", job.ratio,
                                    " leaves no budget for S after the low-rank part (",
                                    double(low) / double(w.linear_dense_parameters()),
                                    "); lower --lowrank-share");
      popt.schedule.final_keep = sparse_share;
      prune = true;
    }
  } else if (job.method == "itp") {
    popt.schedule.final_keep = job.ratio;
    prune = true;
  }
  lmshrink::Pruner<float> pruner(popt);
  examples::ShardedTrainer<float> net(w, o.batch, sh.length, std::min(o.shards, o.batch));
  auto& g = net.grads();
  if (prune) {
    for (int l = 0; l < w.config.n_layers; ++l)
      for (int k = 0; k < examples::kLinearKinds; ++k) {
        auto& layer = w.linear[std::size_t(l)][std::size_t(k)];
        pruner.add("layers." + std::to_string(l) + "." + examples::linear_kind_name(k), layer,
                   g.linear[std::size_t(l)][std::size_t(k)]);
        // Data-aware: rows ranked by their output energy until gradients can rank them.
        if (o.whitened)
          pruner.set_prior(l * examples::kLinearKinds + k,
                           lmshrink::row_output_energy<float>(layer.S(), (*calib)[std::size_t(l)][std::size_t(k)]));
      }
    if (one_shot) pruner.mask(popt.schedule.final_keep);
  }

  {
    const auto start = examples::CompactLlama::pack(w);
    res.val_init_score = evaluate<examples::CompactView>(start, *sh.val, sh.val_windows, sh.eval_len, 1);
  }
  std::vector<std::array<lmshrink::AdamW<float>, examples::kLinearKinds>> opt;
  lmshrink::AdamWOptions ao;
  const double peak = peak_lr(o, job);
  ao.lr = peak;
  ao.weight_decay = 0;
  for (auto& block : w.linear)
    opt.push_back({lmshrink::AdamW<float>(block[0], ao), lmshrink::AdamW<float>(block[1], ao),
                   lmshrink::AdamW<float>(block[2], ao), lmshrink::AdamW<float>(block[3], ao),
                   lmshrink::AdamW<float>(block[4], ao), lmshrink::AdamW<float>(block[5], ao),
                   lmshrink::AdamW<float>(block[6], ao)});
  std::vector<TensorAdam> plain(3 + 2 * w.linear.size());

  // The teacher runs the same full-sequence forward, shard by shard, for its logits and block
  // outputs.
  auto teacher_w = examples::LlamaWeights<float>::from_model(*sh.teacher);
  std::vector<std::unique_ptr<examples::LlamaTrainer<float>>> teacher;
  const bool layerwise = (loss_kind == "recipe" && o.hidden_weight > 0) || loss_kind == "layerwise";
  const bool last_hidden = loss_kind == "triple";
  std::vector<std::vector<const RowMat*>> teacher_blocks(std::size_t(net.shards()));
  for (int s = 0; s < net.shards(); ++s) {
    teacher.push_back(std::make_unique<examples::LlamaTrainer<float>>(teacher_w, net.shard(s).batch(), sh.length));
    if (layerwise || last_hidden)
      for (int l = 0; l < w.config.n_layers; ++l)
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
    const double loss = net.step(inputs.data(), job_threads, [&](int s, examples::LlamaTrainer<float>& shard,
                                                                 const int* own, const RowMat& logits,
                                                                 RowMat& dlogits, std::vector<RowMat>& dblock) {
      const auto own_targets = targets.segment(net.first_sequence(s) * n, shard.batch() * n);
      if (!kd) return lmshrink::cross_entropy<float>(logits, own_targets, dlogits);
      const RowMat& teacher_logits = teacher[std::size_t(s)]->forward(own);
      lmshrink::LossOptions lo;
      double l = 0;
      if (loss_kind == "recipe") {
        lo.temperature = o.temperature;
        l = lmshrink::soft_hard_loss<float>(logits, teacher_logits, own_targets, dlogits, o.kd_alpha, lo);
      } else if (loss_kind == "kl" || loss_kind == "layerwise") {
        l = lmshrink::kl_divergence<float>(logits, teacher_logits, dlogits, lo);
      } else if (loss_kind == "kl-ce") {  // the classic mix: T = 2, α = 0.5
        lo.temperature = 2;
        l = lmshrink::soft_hard_loss<float>(logits, teacher_logits, own_targets, dlogits, 0.5, lo);
      } else if (loss_kind == "reverse-kl") {
        l = lmshrink::reverse_kl_divergence<float>(logits, teacher_logits, dlogits, lo);
      } else if (loss_kind == "jsd") {
        l = lmshrink::jsd_divergence<float>(logits, teacher_logits, dlogits, 0.5, lo);
      } else if (loss_kind == "annealing") {
        l = lmshrink::annealing_kd_loss<float>(annealing, step, logits, teacher_logits, own_targets, dlogits, lo);
      } else if (loss_kind == "triple") {  // DistilGPT-2: 5·KL(T = 2) + 2·CE + 1·(1 − cos), last block
        const int last = w.config.n_layers - 1;
        dblock.assign(std::size_t(w.config.n_layers), RowMat());
        dblock[std::size_t(last)].resize(logits.rows(), w.config.dim);
        l = lmshrink::distilgpt2_loss<float>(logits, teacher_logits, own_targets, shard.block_output(last),
                                             *teacher_blocks[std::size_t(s)][std::size_t(last)], dlogits,
                                             dblock[std::size_t(last)]).total;
      }
      if (layerwise)
        l += examples::layerwise_distillation<float>(shard, teacher_blocks[std::size_t(s)], o.hidden_loss,
                                                     o.hidden_weight, dblock);
      return l;
    });
    if (!std::isfinite(loss))
      fail<lmshrink::numeric_error>("lmshrink_compress", job_name(job), ": the loss is ", loss,
                                    " at step ", step, "; lower --lr");
    res.losses.push_back(float(loss));
    const double lr = learning_rate(peak, step, steps);
    set_lr(opt, lr);
    for (std::size_t l = 0; l < w.linear.size(); ++l)
      for (int k = 0; k < examples::kLinearKinds; ++k)
        opt[l][std::size_t(k)].step(w.linear[l][std::size_t(k)], g.linear[l][std::size_t(k)]);
    const long t = step + 1;
    const double lr_plain = lr * o.embed_lr_scale;
    if (lr_plain > 0) {
      plain[0].step(w.embedding.data(), g.embedding.data(), w.embedding.size(), lr_plain, t);
      plain[1].step(w.rms_final.data(), g.rms_final.data(), w.rms_final.size(), lr_plain, t);
      if (!w.config.shared_classifier)
        plain[2].step(w.classifier.data(), g.classifier.data(), w.classifier.size(), lr_plain, t);
      for (std::size_t l = 0; l < w.linear.size(); ++l) {
        plain[3 + 2 * l].step(w.rms_att[l].data(), g.rms_att[l].data(), w.rms_att[l].size(), lr_plain, t);
        plain[4 + 2 * l].step(w.rms_ffn[l].data(), g.rms_ffn[l].data(), w.rms_ffn[l].size(), lr_plain, t);
      }
    }
    if (prune && !one_shot) pruner.after_optimizer_step(step);
    if (curve_every > 0 && ((step + 1) % curve_every == 0 || step + 1 == steps)) {
      const auto now = examples::CompactLlama::pack(w);
      const double nll = evaluate<examples::CompactView>(now, *sh.val, sh.val_windows, sh.eval_len, 1).nll;
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
  res.final_loss = res.losses.back();

  // Final masks onto the layers (the reference pruning mode leaves them on the pruner).
  if (prune)
    for (lmshrink::Index i = 0; i < pruner.layers(); ++i) {
      auto& layer = w.linear[std::size_t(i / examples::kLinearKinds)][std::size_t(i % examples::kLinearKinds)];
      layer.set_row_mask(pruner.row_mask(i));
      layer.apply_masks();
    }
  res.rank_min = 1 << 30;
  for (const auto& block : w.linear)
    for (const auto& layer : block) {
      res.rank_min = std::min<int>(res.rank_min, int(layer.rank()));
      res.rank_max = std::max<int>(res.rank_max, int(layer.rank()));
    }
  res.parameters = w.parameters();
  res.linear_live = w.linear_parameters();
  for (int l = 0; l < sh.teacher->config.n_layers; ++l) {  // the teacher's linear weights
    const auto& t = *sh.teacher;
    const std::size_t L = std::size_t(l);
    res.linear_dense += t.wq[L].size() + t.wk[L].size() + t.wv[L].size() + t.wo[L].size() +
                        t.w1[L].size() + t.w2[L].size() + t.w3[L].size();
  }
  // No row of the table may claim a ratio the model does not have.
  const double nominal = ratio_free(job.method) ? double(w.linear_dense_parameters()) / double(res.linear_dense) : job.ratio;
  const double kept = examples::checked_linear_ratio(job_name(job), res.linear_live, res.linear_dense, nominal);

  // Save, then score what was saved: the table describes the checkpoints on disk.
  const std::string ckpt = o.out + "/checkpoints/" + file_stem(job) + ".safetensors";
  char ratio_text[32];
  std::snprintf(ratio_text, sizeof ratio_text, "%.4f", kept);
  examples::save_checkpoint(w, ckpt, job.method, {{"lmshrink.method", job.method},
                                                  {"lmshrink.linear_ratio", ratio_text}});
  // The truncated student is a plain dense model: also written for other programs, as a
  // llama2.c file when that format can hold it, else as a Hugging Face directory.
  if (truncation) {
    const lmshrink::Llama2cModel dense = w.to_model();
    if (examples::fits_llama2c(dense.config))
      lmshrink::write_llama2c(dense, o.out + "/checkpoints/" + file_stem(job) + ".bin");
    else
      lmshrink::write_hf_llama(dense, o.out + "/checkpoints/" + file_stem(job) + "_hf");
  }
  res.checkpoint = "checkpoints/" + file_stem(job) + ".safetensors";
  const auto loaded = examples::load_checkpoint(ckpt);
  res.compact = examples::CompactLlama::pack(loaded);
  res.bytes = res.compact.bytes();
  res.val_score = evaluate<examples::CompactView>(res.compact, *sh.val, sh.val_windows, sh.eval_len, 1);
  if (o.heldout)
    res.score = evaluate<examples::CompactView>(res.compact, *sh.eval, sh.eval_windows, sh.eval_len, 1);
  res.sample = sample_text(*sh.tok, greedy<examples::CompactView>(res.compact, o.sample_tokens));
  return res;
}

}  // namespace compress
