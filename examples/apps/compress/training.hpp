#pragma once
// One training step of a student, as the main job runs it and bench_train times it: the loss
// over the batch's shards (the teacher's forward, distillation, the student's backward), AdamW
// on every parameter, and the pruner's masks.
//
//   compress::Distillation distill(shared, Loss::recipe, net, student, nullptr);
//   compress::Optimizers opt(student, peak_lr, steps);
//   for (int step = 0; step < steps; ++step)
//     training_step(step, inputs, targets, masks_final, net, distill, opt, 1.0, student, &pruner, threads);

#include <Eigen/Core>
#include <memory>
#include <vector>

#include "compress.hpp"
#include "runtime/sharded_trainer.hpp"
#include "runtime/teacher_outputs.hpp"

namespace compress {

/// AdamW for every linear layer and plain tensor, and the learning-rate schedule: linear
/// warm-up over the first 5 % of steps, then cosine decay to 10 % of the peak.
struct Optimizers {
  std::vector<std::vector<lmshrink::AdamW<float>>> linear;
  std::vector<lmshrink::models::TensorRef> params;
  std::vector<lmshrink::TensorAdamW<float>> plain;
  lmshrink::WarmupCosine schedule;

  Optimizers(lmshrink::models::Model& w, double peak, int steps);
  /// One update at step `at` from the batch's gradients; plain tensors at embed_lr_scale of the rate.
  void step(int at, double embed_lr_scale, lmshrink::models::Model& w, examples::ShardedTrainer& net);
};

/// What the training loss needs besides the student's logits: the teacher's nets (one per
/// shard, the same full-sequence forward), the blocks whose outputs it compares, the schedules.
/// The teacher's outputs come from sh.teacher_outputs when the run shares them (the same bits
/// as the shard's own teacher net), else from that net.
struct Distillation {
  const Options* o = nullptr;
  Loss loss = Loss::recipe;
  bool layerwise = false;  // the layer-wise loss on every block
  std::vector<std::unique_ptr<lmshrink::models::Net>> teacher;
  examples::TeacherOutputCache* shared_outputs = nullptr;  // the run's, or null: own_outputs
  examples::TeacherOutputCache own_outputs{0};             // keeps nothing: the net answers
  std::vector<int> keep;                                   // the teacher block of each student block
  int teacher_blocks_read = 0;                             // the teacher's first blocks the loss reads
  std::vector<std::vector<const RowMat*>> teacher_blocks;  // [shard][student block], this step's
  // Annealing-KD: phase 1 (MSE to the teacher's logits scaled by temp/τ_max, temp rising 1 → 10)
  // over the first half of the steps, hard labels after.
  lmshrink::AnnealingKdSchedule annealing;
  int blocks = 0, dim = 0, length = 0;

  /// Reads sh.opt, sh.teacher, sh.teacher_outputs, sh.length and sh.steps. keep: the teacher block of each student
  /// block (truncation), or null.
  Distillation(const Shared& sh, Loss loss, examples::ShardedTrainer& net, const lmshrink::models::Model& w,
               const std::vector<int>* keep);

  /// The loss of shard `s` at `step` and its gradients (dlogits, dblock); `masks_final`: no mask
  /// changes any more (--recovery-kd-alpha applies).
  double operator()(int s, int step, bool masks_final, lmshrink::models::Net& shard, const int* tokens,
                    const RowMat& logits, const Eigen::Ref<const Eigen::VectorXi>& targets, RowMat& dlogits,
                    std::vector<RowMat>& dblock);
};

/// Wall seconds a step spends outside the nets' forward and backward, added up over steps.
struct StepTimes {
  std::vector<double> loss;  // per shard: the loss callback (the teacher's forward in it)
  double optimizer = 0, pruner = 0;
};

struct StepOutcome {
  double loss = 0;      // the batch's mean loss (not finite: no update was made)
  bool masked = false;  // the pruner changed its masks
};

/// Forward, loss and backward over the batch (inputs and targets: batch·n tokens), then AdamW
/// and the pruner's step (`pruner` null: none). `times`, when given, adds what each part took.
StepOutcome training_step(int step, const int* inputs, const Eigen::VectorXi& targets, bool masks_final,
                          examples::ShardedTrainer& net, Distillation& distill, Optimizers& opt, double embed_lr_scale,
                          lmshrink::models::Model& w, lmshrink::Pruner<float>* pruner, int threads,
                          StepTimes* times = nullptr);

}  // namespace compress
