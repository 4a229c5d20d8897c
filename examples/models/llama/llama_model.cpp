// Registers the Llama family (llama_model.hpp) with the model layer.
#include "llama_model.hpp"

#include "../registry.hpp"

namespace examples {

std::unique_ptr<Model> make_llama_model(const lmshrink::Llama2cModel& m) {
  return std::make_unique<LlamaModel>(LlamaWeights<float>::from_model(m));
}

std::unique_ptr<Model> load_llama_checkpoint(const std::string& path) {
  return std::make_unique<LlamaModel>(read_llama_checkpoint(path));
}

}  // namespace examples
