// One explicit instantiation file of lmshrink::instances (docs/build.md): compiled once, with
// LMSHRINK_EXTERN_TEMPLATES defined, so that no other file compiles these instances again.
#include <lmshrink/svd_init.hpp>

LMSHRINK_NAMESPACE_BEGIN
LMSHRINK_SVD_INIT_INSTANCE(, float, float)
LMSHRINK_SVD_INIT_INSTANCE(, double, float)
LMSHRINK_SVD_INIT_INSTANCE(, double, double)
LMSHRINK_SVD_WHITENED_INSTANCE(, float)
LMSHRINK_SVD_WHITENED_INSTANCE(, double)
LMSHRINK_WHITENING_INSTANCE()
LMSHRINK_NAMESPACE_END
