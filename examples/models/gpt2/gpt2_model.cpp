// Registers the GPT-2 family (gpt2_model.hpp) with the model layer.
#include "gpt2_model.hpp"

#include "../registry.hpp"

namespace examples {

std::unique_ptr<Model> make_gpt2_model(const lmshrink::Gpt2Model& m) {
  return std::make_unique<Gpt2TrainableModel>(Gpt2Weights<float>::from_model(m));
}

std::unique_ptr<Model> load_gpt2_checkpoint(const std::string& path) {
  return std::make_unique<Gpt2TrainableModel>(read_gpt2_checkpoint(path));
}

}  // namespace examples
