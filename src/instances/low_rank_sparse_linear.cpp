// One explicit instantiation file of lmshrink::instances (docs/build.md): compiled once, with
// LMSHRINK_EXTERN_TEMPLATES defined, so that no other file compiles these instances again.
#include <lmshrink/low_rank_sparse_linear.hpp>

LMSHRINK_NAMESPACE_BEGIN
LMSHRINK_LOW_RANK_SPARSE_LINEAR_INSTANCES()
LMSHRINK_NAMESPACE_END
