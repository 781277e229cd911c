// What an executor needs to know about a placement: the device each unit of the model is mapped
// to (embed, each decoder layer, the final norm, lm_head), where each weight tensor is stored, and
// the execution semantics of offloaded units (DESIGN.md):
//   accelerate  cpu/disk units compute on the map's first GPU; before each leaf module's forward
//               its weight tensors are copied from pageable memory, one blocking copy per tensor
//               into a fresh allocation, freed after the leaf's forward
//   prefetch    the same units, their weights in pinned memory, copied a whole unit ahead on a
//               copy stream into one of two buffers, so the next unit's copy overlaps this one's
//               compute
//   in-place    cpu/disk units compute on the CPU backend; only activations cross the link
// Disk units are read from their file (the offload folder or the checkpoint) before each use.
// A map without GPUs runs on the CPU executor whatever the semantics.
//
// Example (built by map_placement from a DeviceMap: exec/map_placement.h):
//   Placement p{Semantics::kPrefetch, 0, {Device::gpu(0), Device::cpu(), ...}, {{"model.embed_tokens.weight",
//   Device::gpu(0)}, ...}};
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/device_map.h"
#include "core/semantics.h"

namespace dmap::exec {

// The execution semantics (core/semantics.h); the executor runs accelerate, prefetch and in-place
// (a map without GPUs runs on the CPU executor, whatever the semantics).
using dmap::Semantics;
using dmap::semantics_name;
// accelerate, prefetch or in-place; nullopt for anything else ("cpu" included).
std::optional<Semantics> parse_exec_semantics(const std::string& s);

struct Placement {
  Semantics semantics = Semantics::kAccelerate;
  int main_gpu = -1;  // where cpu/disk units compute under accelerate/prefetch: the map's first GPU (-1: none)
  // The map's device of each unit: [0] embed, [1 + l] layer l, [layers + 1] norm, [layers + 2] lm_head.
  std::vector<Device> units;
  std::map<std::string, Device> tensor_home;  // where each weight tensor is stored

  bool uses_gpu() const { return main_gpu >= 0; }
};

// Told about each module's work as an executor issues it (the CUPTI tracer tags the GPU work
// issued in between with the module; CPU-backend modules are reported as host ranges).
class ModuleObserver {
 public:
  virtual ~ModuleObserver() = default;
  virtual void begin(const std::string& module, int step) = 0;  // step -1 = prefill
  virtual void end() = 0;
  virtual void host_range(const std::string& module, int step, std::chrono::steady_clock::time_point start,
                          std::chrono::steady_clock::time_point end) = 0;
};

}  // namespace dmap::exec
