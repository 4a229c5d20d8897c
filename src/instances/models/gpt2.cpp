// One explicit instantiation file of the model tier (lmshrink_add_instances(... MODELS), docs/build.md):
// GPT-2's trainer for float and the decoders of a packed and of a trained model, compiled once:
// with LMSHRINK_EXTERN_TEMPLATES, no other file compiles their forwards and backward.
#include <lmshrink/models/gpt2/decoder.hpp>
#include <lmshrink/models/gpt2/trainer.hpp>

template class lmshrink::models::gpt2::Trainer<float>;
template class lmshrink::models::gpt2::Decoder<lmshrink::models::gpt2::CompactView>;
template class lmshrink::models::gpt2::Decoder<lmshrink::models::gpt2::WeightsView>;
