// The examples' trainer for float, compiled once (docs/build.md): with LMSHRINK_EXTERN_TEMPLATES,
// no other file compiles LlamaTrainer<float>'s forward and backward.
#include "../llama_trainer.hpp"

template class examples::LlamaTrainer<float>;
