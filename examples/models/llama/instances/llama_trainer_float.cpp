// The examples' trainer for float, compiled once (docs/build.md): with LMSHRINK_EXTERN_TEMPLATES,
// no other file compiles lmshrink::models::llama::Trainer<float>'s forward and backward.
#include <lmshrink/models/llama/trainer.hpp>

template class lmshrink::models::llama::Trainer<float>;
