// The optimal search: a dynamic program over the chain of placement units (embedding,
// decoder layers, final norm, head) choosing for each unit where its weights live and how it
// runs — resident on a GPU, streamed to GPU 0 per forward (accelerate or prefetch), or
// computed in place on the CPU (weights in RAM or on disk) — minimising the workload's
// predicted time (prefill + every decode step) under every device's memory.
//
// Model (the simulator's, at unit granularity):
//   * GPUs are used in order (ids never decrease along the chain): a naive pipeline's time
//     does not depend on which GPU holds which block, only on the boundaries.
//   * Streaming (accelerate or prefetch; one of the two per placement) executes on GPU 0,
//     whose first unit (the embedding) is then resident there.
//   * Memory per GPU: runtime context + prefill workspace (+ logits) + resident weights + the
//     KV cache at the final context of the layers executing there + the streaming buffers
//     (one leaf for accelerate, two units for prefetch). This bounds the simulator's
//     per-phase peak from above, so every placement the search returns fits.
//   * Labels (memory on the open GPU, host bytes, time) are kept Pareto-optimal per state
//     (unit, open GPU, previous choice); exact, no memory rounding.
//
// Example:
//   OptimalResult r = optimal_search(cm, hw);
//   if (r.found) simulate(cm, hw, r.map, r.per_entry);
#pragma once

#include <string>
#include <vector>

#include "core/device_map.h"
#include "sim/cost_model.h"
#include "sim/hardware.h"
#include "sim/simulate.h"

namespace dmap::sim {

// How one chain unit is placed.
enum class UnitChoice { kResident, kStreamAccelerate, kStreamAccelerateDisk, kStreamPrefetch, kStreamPrefetchDisk,
                        kInPlaceCpu, kInPlaceDisk };

struct OptimalOptions {
  bool allow_accelerate = true;
  bool allow_prefetch = true;
  bool allow_in_place = true;
  bool allow_disk = true;
};

struct OptimalResult {
  bool found = false;
  double objective_s = 0;                 // predicted prefill + decode time under the DP's model
  std::vector<UnitChoice> choices;        // per chain unit
  std::vector<int> gpu;                   // per chain unit: GPU for resident units, -1 otherwise
  DeviceMap map;                          // one entry per chain unit
  std::vector<Semantics> per_entry;       // aligned with map.items()
  std::string label;                      // "gpu", "accelerate", "prefetch", "in-place", "prefetch+in-place", ...
  bool transformers_expressible = false;  // accelerate semantics can run it (no in-place, no prefetch)
  int gpu_layers = 0;                     // decoder layers resident on GPUs (llama.cpp -ngl)
  int cpu_layers = 0;
};

OptimalResult optimal_search(const CostModel& cm, const Hardware& hw, const OptimalOptions& options = {});

// The DP's own objective for a placement given per chain unit (for tests against brute force):
// +inf when the placement breaks the DP's memory rule or its structural rules.
double dp_objective(const CostModel& cm, const Hardware& hw, const std::vector<UnitChoice>& choices,
                    const std::vector<int>& gpu);

}  // namespace dmap::sim
