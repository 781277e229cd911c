// From a device map to what the executor runs: the device of every weight tensor (accelerate's
// rule: a tensor goes where its nearest listed ancestor goes) and the Placement of whole units
// (exec/placement.h). Used by `dmap run` and the profiler alike.
//
// Example:
//   Placement p = map_placement(tree, dm, weights, cfg, Semantics::kPrefetch);  // InputError: a split layer
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "core/device_map.h"
#include "core/module_tree.h"
#include "exec/model.h"
#include "exec/placement.h"

namespace dmap::exec {

// The device of each executor tensor under `dm`, in the weights' order (InputError for a tensor
// the map leaves without a device).
std::vector<std::pair<std::string, Device>> tensor_devices(const ModuleTree& tree, const DeviceMap& dm,
                                                           const ModelWeights& weights);

// The executor's view of a placement: each unit's map device (a decoder layer must sit on one
// device: InputError otherwise), each tensor's home, the map's first GPU.
Placement map_placement(const ModuleTree& tree, const DeviceMap& dm, const ModelWeights& weights, const ExecConfig& cfg,
                        Semantics semantics);

}  // namespace dmap::exec
