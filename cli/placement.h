// Which device map a command runs: a --device-map file, a --strategy (planner strategy, one
// device, or a scenario's hand-written map), or the scenario's own entry/strategy.
#pragma once

#include <string>

#include "cli/args.h"
#include "core/device_map.h"
#include "core/module_sizes.h"
#include "core/module_tree.h"
#include "core/scenario.h"

namespace dmap::cli {

struct MapOutcome {
  DeviceMap device_map;
  MaxMemory max_memory;
  std::string how;  // description for the table header
  ModuleSizes sizes;
  std::string refusal;  // the ValueError transformers' quantizer raises for this map ("" = none)
};

// --quantization '{"load_in_4bit": true, ...}' (the JSON of a quantization_config, or a file
// holding it): the config a user passes to from_pretrained, applied to `spec`.
void apply_quantization_flag(const Args& args, ModelSpec& spec);

// --dtype with a quantized checkpoint must be a float dtype (the load dtype of its unquantized
// modules); int4/int8/float8 are input errors.
void check_dtype_for_quantization(const std::optional<DType>& dtype, const ModelSpec& spec, const std::string& origin);

// Reads --strategy, --device-map (and the scenario's device_maps, max_memory, entry). A planner
// strategy needs max_memory (the scenario's or --max-memory); errors are InputErrors.
MapOutcome compute_map(const Args& args, Scenario& sc, const ModuleTree& tree);

}  // namespace dmap::cli
