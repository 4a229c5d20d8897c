#pragma once
// The examples' entry to the registry (lmshrink/models/registry.hpp, compiled once, in
// models.cpp): a teacher from a path, a checkpoint of any family, a tokenizer with the bundled
// files as defaults. The interface names are brought into namespace examples for the apps.
#include <lmshrink/models/model.hpp>
#include <memory>
#include <string>
#include <vector>

namespace examples {

using lmshrink::models::checked_linear_ratio;
using lmshrink::models::Decoder;
using lmshrink::models::Layer;
using lmshrink::models::Mat;
using lmshrink::models::Model;
using lmshrink::models::ModelShape;
using lmshrink::models::Net;
using lmshrink::models::Packed;
using lmshrink::models::TensorRef;
using lmshrink::models::TextCodec;

/// A teacher from a path: a llama2.c file, or a Hugging Face directory (config.json names the
/// family). lmshrink::error on anything else.
std::unique_ptr<Model> load_model(const std::string& path);
/// A checkpoint written by Model::save, of any family.
std::unique_ptr<Model> load_checkpoint(const std::string& path);
/// The same from the file's bytes already in memory (`path` names it in messages).
std::unique_ptr<Model> load_checkpoint(const std::vector<char>& bytes, const std::string& path);
/// The tokenizer for `model`: `path` when given (a llama2.c tokenizer file, or a directory with
/// GPT-2's vocab.json + merges.txt or encoder.json + vocab.bpe), else the tokenizer files in
/// the model's directory, else the bundled one of the family (examples/data/).
std::unique_ptr<TextCodec> load_codec(const Model& model, const std::string& model_path,
                                      const std::string& path);

}  // namespace examples
