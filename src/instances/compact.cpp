// One explicit instantiation file of lmshrink::instances (docs/build.md): compiled once, with
// LMSHRINK_EXTERN_TEMPLATES defined, so that no other file compiles these instances again.
#include <lmshrink/compact.hpp>

LMSHRINK_NAMESPACE_BEGIN
LMSHRINK_COMPACT_LINEAR_INSTANCES()
LMSHRINK_NAMESPACE_END
