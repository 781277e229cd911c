// The entry points users reach accelerate's planner through (docs/ACCELERATE.md §6):
//   * infer_auto_device_map called directly (accelerate sizes on a float32 skeleton, `dtype`);
//   * from_pretrained(device_map="auto"|"balanced"|"balanced_low_0"|"sequential") in
//     transformers v5 (v5 sizes, v5 get_balanced_memory) and in transformers 4.x, which is also
//     accelerate's own load_checkpoint_and_dispatch (accelerate sizes and balancing).
// Plus the maps that need no planning: cpu, one device, disk, and hand-written maps.
//
// Example:
//   PlanRequest req;  req.tree = &tree;  req.entry = Entry::kFromPretrained;
//   req.strategy = Strategy::kAuto;  req.dtype = DType::kFloat16;
//   req.max_memory = parse_max_memory_flag("0=10GiB,cpu=64GiB", "--max-memory");
//   PlanResult r = plan_device_map(req);
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/device_map.h"
#include "core/module_sizes.h"
#include "core/module_tree.h"
#include "core/scenario.h"

namespace dmap::strategies {

enum class Entry { kInferAutoDeviceMap, kFromPretrained };
enum class Pipeline {
  kTransformersV5,  // current transformers
  kTransformersV4,  // transformers 4.x == accelerate's load_checkpoint_and_dispatch
};
enum class Strategy { kAuto, kBalanced, kBalancedLow0, kSequential };

std::optional<Strategy> parse_strategy(const std::string& s);
std::string strategy_name(Strategy s);
std::optional<Pipeline> parse_pipeline(const std::string& s);  // v5|v4|accelerate|transformers_v5|...
std::string pipeline_name(Pipeline p);

struct PlanRequest {
  const ModuleTree* tree = nullptr;
  Entry entry = Entry::kFromPretrained;
  Pipeline pipeline = Pipeline::kTransformersV5;
  Strategy strategy = Strategy::kAuto;  // from_pretrained only
  // infer_auto_device_map: the `dtype` argument (nullopt = tensors' own float32).
  // from_pretrained: the load dtype (torch_dtype); required.
  std::optional<DType> dtype;
  MaxMemory max_memory;              // the user's caps
  bool user_gave_max_memory = true;  // false: caps came from the hardware, not the user
  // infer_auto_device_map: the classes passed (nullopt = None). from_pretrained: nullopt
  // means the model's own `_no_split_modules`.
  std::optional<std::vector<std::string>> no_split;
  std::vector<std::pair<std::string, DType>> special_dtypes;  // accelerate sizing only
  bool fallback_allocation = false;
  // RAM accelerate would see as available when max_memory has no "cpu" key (it then uses
  // 80% of it). nullopt: read MemAvailable from /proc/meminfo.
  std::optional<Bytes> host_available_bytes;
};

struct PlanResult {
  DeviceMap device_map;
  MaxMemory balanced_max_memory;   // after get_balanced_memory (or normalisation)
  MaxMemory effective_max_memory;  // what the planner was given
  ModuleSizes sizes;               // the sizes the planner used
  std::vector<std::pair<Device, Bits>> used;
  // The ValueError transformers' quantizer raises for this map (validate_environment), "" if none:
  // from_pretrained refuses to load it.
  std::string refusal;
};

PlanResult plan_device_map(const PlanRequest& req);

// accelerate's get_max_memory for an explicit dict: order, and "cpu" added at 80% of the
// available RAM when missing.
MaxMemory normalize_max_memory(const MaxMemory& user, std::optional<Bytes> host_available_bytes);

// {"": device}: the whole model on one device (device_map="cpu", 0, "cuda:1", "disk").
DeviceMap whole_model_map(Device d);

// Hand-written maps {"model.layers.1": 0, "lm_head": "disk", ...}. Every key must name a
// module or tensor of the tree ("" = everything); every parameter and persistent buffer must
// be covered by its nearest listed ancestor. Violations are InputErrors naming the module (and
// its line in `origin`, from `lines`, when known).
DeviceMap validate_manual_map(const ModuleTree& tree, const std::vector<std::pair<std::string, Device>>& entries,
                              const std::string& origin, const std::vector<int>& lines = {});

// The request a scenario describes. Defaults: entry from_pretrained, strategy auto, pipeline
// v5; dtype = the scenario's, else (from_pretrained v5) the checkpoint's torch_dtype as v5's
// default dtype="auto" does, else float32 (transformers 4.x default; infer_auto_device_map
// without dtype sizes the float32 skeleton).
PlanRequest plan_request_for(const Scenario& s, const ModuleTree& tree);

// The quantizer's validate_environment(device_map=dm) for a quantized tree: the message of the
// ValueError transformers raises (bitsandbytes with cpu/disk in the map without
// llm_int8_enable_fp32_cpu_offload; fp8/fbgemm_fp8/mxfp4 quantizing while loading with cpu/disk
// in it), "" when it accepts the map (or the tree is not quantized).
std::string quantizer_refusal(const ModuleTree& tree, const DeviceMap& dm);

// The device a node lands on under `dm` (core/module_tree.h).
using dmap::device_of;

}  // namespace dmap::strategies
