// ModelSpec: a model as described by a Hugging Face config.json or a dmap model YAML.
//
// Accepted shapes of the description (all YAML or JSON):
//   1. a Hugging Face config.json: `model_type` plus the config fields at the top level;
//   2. a dmap model YAML: the same, plus optional `name` (and `checkpoint`);
//   3. the case/scenario form: {name, model_type, config: {...}, no_split_modules, tied_weights}.
// The config stays a YAML node; family builders read typed fields through ConfigView,
// which reports a missing or malformed field with the file and line of the config.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/quantization.h"

namespace dmap {

class ConfigView {
 public:
  ConfigView() = default;
  ConfigView(YAML::Node config, std::string file) : config_(std::move(config)), file_(std::move(file)) {}

  bool has(const std::string& key) const;  // present and not null
  // First key of `keys` that is present; a missing field is an InputError naming the first key.
  int64_t integer(std::initializer_list<const char*> keys) const;
  int64_t integer_or(std::initializer_list<const char*> keys, int64_t fallback) const;
  double number_or(std::initializer_list<const char*> keys, double fallback) const;
  bool boolean_or(std::initializer_list<const char*> keys, bool fallback) const;
  std::optional<std::string> string(const char* key) const;
  // Requires a positive integer (sizes, counts).
  int64_t positive(std::initializer_list<const char*> keys) const;
  int64_t positive_or(std::initializer_list<const char*> keys, int64_t fallback) const;

  const YAML::Node& node() const { return config_; }
  const std::string& file() const { return file_; }

 private:
  YAML::Node find(std::initializer_list<const char*> keys) const;
  YAML::Node config_;
  std::string file_;
};

struct GgufInfo;  // core/gguf_reader.h

struct ModelSpec {
  std::string name;        // display name ("" = derived from the file name)
  std::string model_type;  // "llama", "gpt2", ...
  std::string source;      // the file it came from (for error messages)
  ConfigView config;
  // Optional overrides given by a case/scenario; empty = the family's own values.
  std::optional<std::vector<std::string>> no_split_modules;
  std::optional<std::vector<std::pair<std::string, std::string>>> tied_weights;  // target -> source
  // The checkpoint's own dtype (config `torch_dtype` / `dtype`), if it says.
  std::optional<DType> checkpoint_dtype;
  // The checkpoint's quantization_config (config.json, or its text_config), possibly merged with
  // the one a user passes (scenario `quantization_config`, --quantization). nullopt: none.
  std::optional<QuantizationConfig> quantization;
  // A llama.cpp GGUF file type ("Q4_K_M"): the tensors are sized as that file stores them
  // (core/gguf.h). "" = the checkpoint's own tensors.
  std::string gguf_file_type;
  // A GGUF file given as the model (core/gguf_reader.h): its tensors' types and bytes size the tree.
  std::shared_ptr<const GgufInfo> gguf;
};

// Reads a model file (config.json, dmap model YAML, or a GGUF file: core/gguf_reader.h). `path`
// may also name a checkpoint folder that holds config.json.
ModelSpec load_model_spec(const std::string& path);

// Applies a quantization_config the user passes to from_pretrained (a scenario's
// `quantization_config`, the --quantization flag): on an unquantized checkpoint it is quantized
// while loading; on a quantized one, transformers' merge rule (core/quantization.h).
void set_user_quantization(ModelSpec& spec, const YAML::Node& node, const std::string& file);

// Builds a ModelSpec from an already parsed node (e.g. a scenario's inline `model:`).
ModelSpec model_spec_from_node(const YAML::Node& node, const std::string& file);

}  // namespace dmap
