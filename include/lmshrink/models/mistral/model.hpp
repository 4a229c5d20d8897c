#pragma once
// The Mistral family: Hugging Face "mistral" directories (Mistral 7B and its fine-tunes), on
// Llama's graph (see mistral/hf.hpp for what the sliding window becomes). Its own: its
// config.json keys and directory (hf.hpp), and its Model's name and export.
//
//   std::unique_ptr<lmshrink::models::Model> teacher =
//       lmshrink::models::mistral::make_model(lmshrink::models::mistral::read_hf("Mistral-7B-v0.1"));
//
// The registry (registry.hpp) recognises it by model_type "mistral" and by checkpoints marked
// "mistral/1".
#include <memory>
#include <string>

#include "../../io/safetensors.hpp"
#include "../llama/model.hpp"
#include "hf.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace models {
namespace mistral {

/// A dense Mistral model exported for the model tier's apps: a Hugging Face directory.
inline std::string export_dense(const lmshrink::models::llama::DenseModel& dense, const std::string& stem) {
  mistral::write_hf(dense, stem + "_hf");
  return stem + "_hf";
}

inline llama::Variant variant() { return {"mistral", &export_dense}; }

/// A models::Model of family "mistral" from a dense model.
inline std::unique_ptr<models::Model> make_model(const lmshrink::models::llama::DenseModel& m) {
  if (m.config.qkv_bias)
    lmshrink::fail<lmshrink::value_error>("mistral::make_model", "the model has q/k/v biases; a Mistral model has none");
  return std::make_unique<llama::Model>(llama::Weights<float>::from_model(m), variant());
}

/// A checkpoint written by a Mistral Model's save ("lmshrink.checkpoint: mistral/1").
inline std::unique_ptr<models::Model> read_checkpoint(const lmshrink::SafeTensors& st, const std::string& path) {
  return std::make_unique<llama::Model>(llama::read_checkpoint(st, path, "mistral"), variant());
}

}  // namespace mistral
}  // namespace models
LMSHRINK_NAMESPACE_END
