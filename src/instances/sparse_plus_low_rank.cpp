// One explicit instantiation file of lmshrink::instances (docs/build.md): compiled once, with
// LMSHRINK_EXTERN_TEMPLATES defined, so that no other file compiles these instances again.
#include <lmshrink/sparse_plus_low_rank.hpp>

LMSHRINK_NAMESPACE_BEGIN
LMSHRINK_SPARSE_PLUS_LOW_RANK_INSTANCE(, float)
LMSHRINK_SPARSE_PLUS_LOW_RANK_INSTANCE(, double)
LMSHRINK_NAMESPACE_END
