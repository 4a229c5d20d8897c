#pragma once
// Umbrella header: every public header except the opt-in ones, which have dependencies or a
// tier of their own: lmshrink/xtensor.hpp (xtensor), lmshrink/mpi.hpp (MPI),
// lmshrink/openmp.hpp (OpenMP), lmshrink/onednn.hpp (oneDNN) and lmshrink/models/ (the model
// tier). tests' boundaries check keeps this list complete.

#include "version.hpp"
#include "config.hpp"
#include "errors.hpp"
#include "types.hpp"
#include "random.hpp"
#include "digest.hpp"
#include "files.hpp"
#include "low_rank_sparse_linear.hpp"
#include "calibration.hpp"
#include "svd_init.hpp"
#include "sparse_plus_low_rank.hpp"
#include "reconstruction.hpp"
#include "storage_allocation.hpp"
#include "io/safetensors.hpp"
#include "io/tokenizer.hpp"
#include "io/hf_checkpoint.hpp"
#include "io/gpt2_tokenizer.hpp"
#include "io/hf_tokenizer.hpp"
#include "io/sentencepiece.hpp"
#include "schedule.hpp"
#include "importance.hpp"
#include "threshold.hpp"
#include "optim.hpp"
#include "pruner.hpp"
#include "compact.hpp"
#include "data_cleaning.hpp"
#include "truncation.hpp"
#include "distillation.hpp"
