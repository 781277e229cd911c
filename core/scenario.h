// Scenario: what `dmap map` (and later `dmap simulate`) is asked about: a model, a dtype,
// memory caps and how the map is made. Every accelerate conformance case file is a valid
// scenario (its schema is a subset of this one).
//
// Schema (YAML):
//   model: <inline model description> | "path/to/model.yaml" | "path/to/config.json" | preset name
//   dtype: float16                      # load dtype (default: the checkpoint's torch_dtype)
//   max_memory: {0: "11.5GB", cpu: 64GiB, disk: ...}
//   no_split_module_classes: [LlamaDecoderLayer] | null   # null = None; absent = model's own
//   entry: infer_auto_device_map | from_pretrained           # default from_pretrained
//   strategy: auto | balanced | balanced_low_0 | sequential # default auto
//   pipeline: transformers_v5 | transformers_v4_accelerate  # default transformers_v5
//   device_maps: {my_split: {"model.layers.0": 0, "lm_head": "cpu", ...}}   # hand-written maps
//   expected: {...}                     # conformance cases only
#pragma once

#include <yaml-cpp/yaml.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/device_map.h"
#include "core/dtype.h"
#include "core/model_spec.h"

namespace dmap {

struct NamedDeviceMap {
  std::string name;
  std::vector<std::pair<std::string, Device>> entries;  // in file order
  std::vector<int> entry_lines;                         // each entry's line (1-based; 0 = unknown)
  int line = 0;  // where the map starts in the scenario file (1-based; 0 = unknown)
};

struct Scenario {
  std::string file;
  std::string id;
  ModelSpec model;
  std::optional<DType> dtype;
  std::optional<MaxMemory> max_memory;
  bool no_split_given = false;                       // key present in the file
  std::optional<std::vector<std::string>> no_split;  // nullopt with no_split_given = None
  std::string entry = "from_pretrained";
  std::string strategy = "auto";
  std::string pipeline = "transformers_v5";
  std::vector<NamedDeviceMap> device_maps;
  YAML::Node expected;  // undefined unless present
};

// `models_dir`: where preset model names are looked up (configs/models).
Scenario load_scenario(const std::string& path, const std::string& models_dir);

// Reads a max_memory mapping ({0: "10GiB", cpu: 1000}); errors name file and line.
MaxMemory parse_max_memory_node(const YAML::Node& node, const std::string& file);

// Reads a hand-written device map ({"model.layers.1": 0, "lm_head": "disk"}).
// `lines`, when given, receives each entry's line in the file (1-based; 0 = unknown).
std::vector<std::pair<std::string, Device>> parse_device_map_node(const YAML::Node& node, const std::string& file,
                                                                  std::vector<int>* lines = nullptr);

// Resolves a model reference: an existing path (absolute, or relative to `base_dir`), a
// checkpoint folder, or a preset name in `models_dir` (NAME.yaml).
ModelSpec resolve_model(const std::string& ref, const std::string& base_dir, const std::string& models_dir);

}  // namespace dmap
