// One explicit instantiation file of the model tier (lmshrink_add_instances(... MODELS), docs/build.md):
// the Llama decoders of a packed and of a trained model, compiled once: with
// LMSHRINK_EXTERN_TEMPLATES, no other file compiles their forwards.
#include <lmshrink/models/llama/compact.hpp>

template class lmshrink::models::llama::KvDecoder<lmshrink::models::llama::CompactView>;
template class lmshrink::models::llama::SequenceDecoder<lmshrink::models::llama::CompactView>;
template class lmshrink::models::llama::KvDecoder<lmshrink::models::llama::WeightsView>;
template class lmshrink::models::llama::SequenceDecoder<lmshrink::models::llama::WeightsView>;
