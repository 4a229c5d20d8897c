// The examples' trainer for double, compiled once (docs/build.md): with LMSHRINK_EXTERN_TEMPLATES,
// no other file compiles LlamaTrainer<double>'s forward and backward.
#include "../llama_trainer.hpp"

template class examples::LlamaTrainer<double>;
