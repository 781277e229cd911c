// accelerate's `infer_auto_device_map` and `clean_device_map`, reproduced step by step
// (docs/ACCELERATE.md §3, §4). The same loop serves transformers v5's copy of it: the caller
// supplies the sizes (accelerate's or v5's rule) and the tie groups.
//
// Data flow: ModuleTree + ModuleSizes + MaxMemory (+ no-split classes, tie groups)
//            --infer_auto_device_map--> DeviceMap (cleaned unless asked otherwise)
//
// Example:
//   PlannerOptions opt;  opt.no_split = tree.no_split_modules;  opt.tie_groups = tree.tie_groups();
//   PlannerResult r = infer_auto_device_map(tree, sizes, caps, opt);
//   std::cout << device_map_to_pairs_json(r.device_map);
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "core/device_map.h"
#include "core/module_sizes.h"
#include "core/module_tree.h"

namespace dmap::strategies {

struct PlannerOptions {
  std::vector<std::string> no_split;                 // class names never split
  std::vector<std::vector<std::string>> tie_groups;  // tensor names sharing one object
  bool clean_result = true;                          // run clean_device_map at the end
  bool fallback_allocation = false;                  // accelerate's opt-in BFS fallback (§4.6)
};

struct PlannerResult {
  DeviceMap device_map;
  // Bits charged to each device by the planner's own bookkeeping (includes the reserve
  // added when it moved past a main device), in device order.
  std::vector<std::pair<Device, Bits>> used;
};

PlannerResult infer_auto_device_map(const ModuleTree& tree, const ModuleSizes& sizes, const MaxMemory& max_memory,
                                    const PlannerOptions& options);

// clean_device_map: merges sub-entries that all landed on one device into their parent,
// appended at the end; "" stands for the whole model. Siblings are visited in order of first
// appearance (Python visits a set, so only the order of appended merged entries can differ
// from a given Python run; the set of entries is identical).
void clean_device_map(DeviceMap& dm);

// get_max_layer_size over a list of items: (largest size, every name reaching it).
std::pair<Bits, std::vector<int>> max_layer_size(const ModuleTree& tree, const ModuleSizes& sizes,
                                                 const std::vector<int>& items, const std::vector<char>& no_split_node);

}  // namespace dmap::strategies
