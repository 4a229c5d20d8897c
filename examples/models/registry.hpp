#pragma once
// The families' entry points, for models.cpp (the only file that dispatches on a family).
#include <lmshrink/io/hf_checkpoint.hpp>
#include <lmshrink/io/llama2c.hpp>
#include <memory>
#include <string>

#include "model.hpp"

namespace examples {

std::unique_ptr<Model> make_llama_model(const lmshrink::Llama2cModel& m);
std::unique_ptr<Model> load_llama_checkpoint(const std::string& path);
std::unique_ptr<Model> make_gpt2_model(const lmshrink::Gpt2Model& m);
std::unique_ptr<Model> load_gpt2_checkpoint(const std::string& path);

}  // namespace examples
