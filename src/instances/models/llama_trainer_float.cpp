// One explicit instantiation file of the model tier (lmshrink_add_instances(... MODELS), docs/build.md):
// the Llama trainer for float, compiled once (docs/build.md): with LMSHRINK_EXTERN_TEMPLATES,
// no other file compiles lmshrink::models::llama::Trainer<float>'s forward and backward.
#include <lmshrink/models/llama/trainer.hpp>

template class lmshrink::models::llama::Trainer<float>;
