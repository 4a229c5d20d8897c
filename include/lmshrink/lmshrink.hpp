#pragma once
// Umbrella header: everything except opt-in adapters (lmshrink/xtensor.hpp).

#include "version.hpp"
#include "config.hpp"
#include "errors.hpp"
#include "types.hpp"
#include "low_rank_sparse_linear.hpp"
#include "svd_init.hpp"
#include "io/llama2c.hpp"
#include "schedule.hpp"
#include "importance.hpp"
#include "threshold.hpp"
#include "optim.hpp"
#include "pruner.hpp"
#include "compact.hpp"
#include "data_cleaning.hpp"
#include "truncation.hpp"
#include "distillation.hpp"
